import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cryofield import conventions
from cryofield.so3 import (
    cryosparc_pose_to_matrix,
    euler_to_matrix,
    geodesic_distance,
    matrix_to_cryosparc_pose,
    matrix_to_euler,
    matrix_to_quaternion,
    matrix_to_rotvec,
    quaternion_to_matrix,
    random_rotations,
    rotvec_to_matrix,
)


@pytest.fixture
def rots():
    special = Rotation.from_rotvec([[0, 0, 0], [math.pi, 0, 0], [0, math.pi, 0], [math.pi / math.sqrt(2)] * 2 + [0],
                                    [1e-9, 0, 0]]).as_matrix()
    return torch.from_numpy(np.concatenate([Rotation.random(300, random_state=0).as_matrix(), special]))


def test_euler_agrees_with_conventions_and_round_trips(rots):
    euler = matrix_to_euler(rots)
    np.testing.assert_allclose(euler.numpy(), conventions.matrix_to_relion_euler(rots.numpy()), atol=1e-9)
    # within 1e-6 of the gimbal pole, tilt is taken as exactly 0 (error at most sin(tilt))
    torch.testing.assert_close(euler_to_matrix(euler), rots, atol=1e-6, rtol=0)
    torch.testing.assert_close(euler_to_matrix(euler)[:300], rots[:300], atol=1e-10, rtol=0)
    np.testing.assert_allclose(euler_to_matrix(euler).numpy(), conventions.relion_euler_to_matrix(euler.numpy()),
                               atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quaternion_round_trip_including_180_degrees(rots, dtype):
    r = rots.to(dtype)
    q = matrix_to_quaternion(r)
    assert (q[:, 0] >= 0).all()
    torch.testing.assert_close(quaternion_to_matrix(q), r, atol=1e-5 if dtype == torch.float32 else 1e-10, rtol=0)
    expected = Rotation.from_matrix(rots.numpy()).as_quat(canonical=True)[:, [3, 0, 1, 2]]
    np.testing.assert_allclose(np.abs((q.double().numpy() * expected).sum(1)), 1, atol=1e-5)


def test_rotvec_and_cryosparc(rots):
    v = matrix_to_rotvec(rots)
    torch.testing.assert_close(rotvec_to_matrix(v), rots, atol=1e-10, rtol=0)
    pose = matrix_to_cryosparc_pose(rots)
    torch.testing.assert_close(cryosparc_pose_to_matrix(pose), rots, atol=1e-10, rtol=0)
    np.testing.assert_allclose(cryosparc_pose_to_matrix(pose).numpy(),
                               conventions.cryosparc_pose_to_matrix(pose.numpy()), atol=1e-12)


def test_geodesic_distance(rots):
    angles = torch.rand(len(rots), dtype=torch.float64) * math.pi
    axes = torch.nn.functional.normalize(torch.randn(len(rots), 3, dtype=torch.float64), dim=-1)
    turned = rots @ rotvec_to_matrix(axes * angles[:, None])
    torch.testing.assert_close(geodesic_distance(rots, turned), angles, atol=1e-7, rtol=0)


def test_random_rotations_are_uniform():
    r = random_rotations(20000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(r @ r.transpose(-1, -2), torch.eye(3, dtype=r.dtype).expand_as(r), atol=1e-12, rtol=0)
    assert torch.allclose(torch.det(r), torch.ones(len(r), dtype=r.dtype))
    # Haar measure: each column uniform on the sphere (mean 0), and the angle has density (1 - cos t) / pi
    assert r.mean(0).abs().max() < 0.02
    angle = geodesic_distance(torch.eye(3, dtype=r.dtype), r)
    assert abs(angle.mean().item() - (math.pi / 2 + 2 / math.pi)) < 0.02
