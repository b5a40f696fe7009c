import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryofield.conventions import (
    cryosparc_pose_to_matrix,
    matrix_to_relion_euler,
    relion_euler_to_matrix,
    relion_tilt_matrix,
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


CONVERSIONS = [
    ("relion_euler_to_matrix", lambda rng: rng.uniform(-180, 180, (50, 3))),
    ("matrix_to_relion_euler", lambda rng: Rotation.random(50, random_state=2).as_matrix()),
    ("rotvec_to_matrix", lambda rng: np.concatenate([rng.normal(size=(50, 3)), [[0, 0, 0], [np.pi, 0, 0]]])),
    ("matrix_to_rotvec", lambda rng: Rotation.random(50, random_state=3).as_matrix()),
    ("cryosparc_pose_to_matrix", lambda rng: rng.normal(size=(50, 3))),
    ("matrix_to_cryosparc_pose", lambda rng: Rotation.random(50, random_state=4).as_matrix()),
    ("quaternion_to_matrix", lambda rng: rng.normal(size=(50, 4))),
    ("matrix_to_quaternion", lambda rng: Rotation.random(50, random_state=5).as_matrix()),
]


@pytest.mark.parametrize("name, make", CONVERSIONS, ids=[c[0] for c in CONVERSIONS])
def test_numpy_and_torch_forms_are_one_definition(name, make, rng):
    """Each convention is written once: numpy in, numpy (float64) out; torch in, torch out, same values."""
    import torch

    import cryofield.conventions as conventions
    import cryofield.so3 as so3

    convert = getattr(conventions, name)
    x = make(rng)
    numpy_out = convert(x)
    torch_out = convert(torch.from_numpy(x))
    assert isinstance(numpy_out, np.ndarray) and numpy_out.dtype == np.float64
    assert isinstance(torch_out, torch.Tensor) and torch_out.dtype == torch.float64
    np.testing.assert_allclose(torch_out.numpy(), numpy_out, atol=1e-12)
    # the torch names in cryofield.so3 are the same functions
    renamed = {"relion_euler_to_matrix": "euler_to_matrix", "matrix_to_relion_euler": "matrix_to_euler"}
    torch_name = renamed.get(name, name)
    assert getattr(so3, torch_name) is convert
    # float32 tensors stay float32 and differentiable
    t = torch.from_numpy(x).float().requires_grad_()
    out = convert(t)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert torch.isfinite(t.grad).all()


def test_relion_tilt_matrix_is_active_zyx(rng):
    """RELION 5's R_f = Rz(ZRot) Ry(YTilt) Rx(XTilt): scipy's extrinsic xyz, numpy and torch alike."""
    import torch

    x, y, z = rng.uniform(-60, 60, (3, 5))
    expected = Rotation.from_euler("xyz", np.stack([x, y, z], 1), degrees=True).as_matrix()
    np.testing.assert_allclose(relion_tilt_matrix(x, y, z), expected, atol=1e-12)
    np.testing.assert_allclose(relion_tilt_matrix(*(torch.from_numpy(a) for a in (x, y, z))).numpy(), expected,
                               atol=1e-12)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))  # a stage tilt of +30 degrees about y
    np.testing.assert_allclose(relion_tilt_matrix(0.0, 30.0, 0.0), [[c, 0, s], [0, 1, 0], [-s, 0, c]], atol=1e-15)
