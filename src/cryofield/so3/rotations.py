"""Rotations in torch: sampling, distances, the stage tilt, the S2 x S2 parameterisation.

Every matrix is ``R`` of :mod:`cryofield.conventions` (volume frame to image frame). The
conversions between conventions (RELION Euler angles, cryoSPARC poses, rotation vectors,
quaternions ``(w, x, y, z)`` with ``w >= 0``) are defined once there, for numpy and torch
alike; this module re-exports them under the names batched code uses.
"""

from __future__ import annotations

import math

import torch

from cryofield.conventions import (
    cryosparc_pose_to_matrix,
    matrix_to_cryosparc_pose,
    matrix_to_quaternion,
    matrix_to_rotvec,
    quaternion_to_matrix,
    rotvec_to_matrix,
)
from cryofield.conventions import matrix_to_relion_euler as matrix_to_euler
from cryofield.conventions import relion_euler_to_matrix as euler_to_matrix

__all__ = ["cryosparc_pose_to_matrix", "euler_to_matrix", "geodesic_distance", "matrix_to_cryosparc_pose",
           "matrix_to_euler", "matrix_to_quaternion", "matrix_to_rotvec", "quaternion_to_matrix", "random_rotations",
           "rotation_about_x", "rotvec_to_matrix", "s2s2_to_matrix"]


def random_rotations(n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` rotations drawn uniformly (Haar measure) from normalised Gaussian quaternions, (n, 3, 3)."""
    q = torch.randn(n, 4, generator=generator, dtype=dtype, device=device)
    return quaternion_to_matrix(q)


def geodesic_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in radians of ``a^T b``, in [0, pi], broadcasting (..., 3, 3) pairs -> (...)."""
    rel = a.transpose(-1, -2) @ b
    cos = (rel[..., 0, 0] + rel[..., 1, 1] + rel[..., 2, 2] - 1) / 2
    skew = torch.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0],
                        rel[..., 1, 0] - rel[..., 0, 1]], -1)
    return torch.atan2(skew.norm(dim=-1) / 2, cos)  # stable near 0 and pi, unlike arccos


def rotation_about_x(angle_deg: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The active rotation by ``angle_deg`` about the x axis, (3, 3)."""
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    return torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=dtype)


def s2s2_to_matrix(six: torch.Tensor) -> torch.Tensor:
    """Rotations from two 3-vectors each (the S2 x S2 parameterisation), (..., 6) -> (..., 3, 3).

    The first vector's direction is the first column; the second, made orthogonal to it
    (Gram-Schmidt), the second column; their cross product the third. Continuous and onto
    SO(3), so a network can output it (the seed's pose-VAE baseline, section 5.6.3).
    """
    a, b = six[..., :3], six[..., 3:]
    e1 = torch.nn.functional.normalize(a, dim=-1)
    e2 = torch.nn.functional.normalize(b - (e1 * b).sum(-1, keepdim=True) * e1, dim=-1)
    return torch.stack([e1, e2, torch.linalg.cross(e1, e2)], -1)


def matrix_to_s2s2(rotations: torch.Tensor) -> torch.Tensor:
    """The S2 x S2 form of rotations, their first two columns: (..., 3, 3) -> (..., 6).

    The inverse of :func:`s2s2_to_matrix` on rotations.
    """
    return rotations[..., :, :2].transpose(-1, -2).reshape(*rotations.shape[:-2], 6)
