import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryofield.conventions import (
    cryosparc_pose_to_matrix,
    matrix_to_relion_euler,
    relion_euler_to_matrix,
    rotvec_to_matrix,
)


def test_relion_matrix_is_transpose_of_active_zyz(rng):
    euler = rng.uniform(-180, 180, (50, 3))
    euler[:, 1] = rng.uniform(0, 180, 50)
    expected = Rotation.from_euler("ZYZ", euler, degrees=True).as_matrix().transpose(0, 2, 1)
    np.testing.assert_allclose(relion_euler_to_matrix(euler), expected, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_euler_round_trip(rng, dtype):
    rot = Rotation.random(200, random_state=1).as_matrix().astype(dtype)
    back = relion_euler_to_matrix(matrix_to_relion_euler(rot))
    np.testing.assert_allclose(back, rot, atol=1e-5 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("tilt", [0.0, 180.0])
def test_euler_round_trip_at_gimbal_poles(tilt):
    rot = relion_euler_to_matrix(np.array([[30.0, tilt, 70.0], [-100.0, tilt, 5.0]]))
    np.testing.assert_allclose(relion_euler_to_matrix(matrix_to_relion_euler(rot)), rot, atol=1e-10)


def test_rotvec_matches_scipy_including_small_and_pi(rng):
    vecs = np.concatenate([rng.normal(size=(50, 3)), [[0, 0, 0], [1e-10, 0, 0], [np.pi, 0, 0]]])
    np.testing.assert_allclose(rotvec_to_matrix(vecs), Rotation.from_rotvec(vecs).as_matrix(), atol=1e-12)


def test_cryosparc_pose_is_transposed_exponential(rng):
    pose = rng.normal(size=(5, 3))
    np.testing.assert_allclose(cryosparc_pose_to_matrix(pose),
                               Rotation.from_rotvec(pose).inv().as_matrix(), atol=1e-12)
