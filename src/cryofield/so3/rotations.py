"""Rotations in torch: RELION Euler angles, matrices, quaternions, rotation vectors.

Every matrix is ``R`` of :mod:`cryofield.conventions` (volume frame to image frame).
Quaternions are ``(w, x, y, z)`` with ``w >= 0``, and ``q`` stands for the active rotation
matrix ``R``. The numpy functions used by the I/O layer live in
:mod:`cryofield.conventions` and agree with these to rounding.
"""

from __future__ import annotations

import math

import torch


def euler_to_matrix(euler_deg: torch.Tensor) -> torch.Tensor:
    """``R`` from RELION ``(rot, tilt, psi)`` in degrees, (..., 3) -> (..., 3, 3)."""
    a, b, g = torch.deg2rad(euler_deg).unbind(-1)
    ca, sa, cb, sb, cg, sg = a.cos(), a.sin(), b.cos(), b.sin(), g.cos(), g.sin()
    rows = [
        torch.stack([cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb], -1),
        torch.stack([-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb], -1),
        torch.stack([sb * ca, sb * sa, cb], -1),
    ]
    return torch.stack(rows, -2)


def matrix_to_euler(rot: torch.Tensor) -> torch.Tensor:
    """RELION ``(rot, tilt, psi)`` in degrees from ``R``, (..., 3, 3) -> (..., 3); tilt in [0, 180]."""
    tilt = torch.arccos(rot[..., 2, 2].clamp(-1, 1))
    regular = torch.hypot(rot[..., 2, 0], rot[..., 2, 1]) > 1e-6
    rot_angle = torch.where(regular, torch.atan2(rot[..., 2, 1], rot[..., 2, 0]), torch.zeros_like(tilt))
    pole = torch.where(rot[..., 2, 2] > 0, torch.atan2(rot[..., 0, 1], rot[..., 0, 0]),
                       torch.atan2(rot[..., 0, 1], -rot[..., 0, 0]))
    psi = torch.where(regular, torch.atan2(rot[..., 1, 2], -rot[..., 0, 2]), pole)
    return torch.rad2deg(torch.stack([rot_angle, tilt, psi], -1))


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from quaternions ``(w, x, y, z)`` (normalised here), (..., 4) -> (..., 3, 3)."""
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return torch.stack(rows, -2)


def matrix_to_quaternion(rot: torch.Tensor) -> torch.Tensor:
    """Quaternions ``(w, x, y, z)``, ``w >= 0``, from rotation matrices, (..., 3, 3) -> (..., 4).

    Uses the largest of the four diagonal combinations (Shepperd's method), so it is
    accurate at every angle, 180 degrees included.
    """
    m = rot
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = torch.stack([
        torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - trace, m[..., 0, 1] + m[..., 1, 0],
                     m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - trace,
                     m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                     1 + 2 * m[..., 2, 2] - trace], -1),
    ], -2)  # (..., 4, 4): row i is 4 q_i q
    diag = torch.stack([1 + trace, 1 + 2 * m[..., 0, 0] - trace, 1 + 2 * m[..., 1, 1] - trace,
                        1 + 2 * m[..., 2, 2] - trace], -1)
    best = diag.argmax(-1, keepdim=True)
    q = torch.take_along_dim(candidates, best[..., None], dim=-2).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def rotvec_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``exp([v]_x)`` from rotation vectors (radians), (..., 3) -> (..., 3, 3)."""
    angle = rotvec.norm(dim=-1, keepdim=True)
    half = angle / 2
    # sin(half) / angle, with its limit 1/2 at 0
    scale = torch.where(angle > 1e-8, torch.sin(half) / angle.clamp_min(1e-30), 0.5 - angle**2 / 48)
    return quaternion_to_matrix(torch.cat([torch.cos(half), rotvec * scale], -1))


def matrix_to_rotvec(rot: torch.Tensor) -> torch.Tensor:
    """Rotation vectors (axis times angle in [0, pi]) from matrices, (..., 3, 3) -> (..., 3)."""
    q = matrix_to_quaternion(rot)
    sin_half = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, q[..., :1])
    scale = torch.where(sin_half > 1e-12, angle / sin_half.clamp_min(1e-30), 2.0 + 0 * angle)
    return q[..., 1:] * scale


def cryosparc_pose_to_matrix(pose: torch.Tensor) -> torch.Tensor:
    """``R`` from cryoSPARC ``alignments3D/pose`` rotation vectors, (..., 3) -> (..., 3, 3)."""
    return rotvec_to_matrix(pose).transpose(-1, -2)


def matrix_to_cryosparc_pose(rot: torch.Tensor) -> torch.Tensor:
    """CryoSPARC ``alignments3D/pose`` rotation vectors from ``R``, (..., 3, 3) -> (..., 3)."""
    return matrix_to_rotvec(rot.transpose(-1, -2))


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
