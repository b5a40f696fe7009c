"""Every convention cryofield shares with RELION, cryoSPARC and cryoDRGN, in one place.

Arrays
    Volumes are indexed ``[z, y, x]`` and images ``[y, x]``. The coordinate of array
    index ``i`` along an axis of length ``D`` is ``i - D // 2``; frequencies on a
    ``D x D`` lattice are ``k / D`` in ``[-0.5, 0.5)`` cycles per pixel.

Rotations
    A rotation matrix ``R`` (3x3) maps the volume frame to the image frame: an image is
    the projection of the rotated volume, ``X(r) = integral V(R^T r) dz``, so its
    Fourier transform is the central slice ``V^(R^T (kx, ky, 0))``. RELION's ZYZ Euler
    angles ``(rot, tilt, psi)`` give RELION's own matrix ``A``, which *is* ``R``; a
    cryoSPARC ``alignments3D/pose`` rotation vector ``v`` gives ``R = exp([v]_x)^T``.

Shifts
    Shifts are stored in Angstrom with RELION's sign: the particle's centre sits at
    ``-shift`` from the box centre (RELION's ``_rlnOriginX/YAngst``). cryoSPARC's
    ``alignments3D/shift`` (pixels) has the same sign; cryoDRGN's legacy ``trans`` is the
    same shift as a fraction of the box.

CTF
    ``-w cos(gamma) + sqrt(1 - w^2) sin(gamma)`` with
    ``gamma = 2 pi (-0.5 df lambda k^2 + 0.25 Cs lambda^3 k^4) - phase_shift`` and
    astigmatic defocus ``df = 0.5 (dfU + dfV + (dfU - dfV) cos(2 (theta - angle)))``,
    optionally times the envelope ``exp(-B k^2 / 4)``. Defocus in Angstrom, Cs in mm,
    voltage in kV, angles in degrees in metadata.

Contrast
    Stored particle images carry the microscope's sign, ``X = -(CTF * P)`` for a
    positive density ``P``.

Each conversion is written once, for numpy arrays and torch tensors alike: a numpy input
is computed in float64 and returns numpy; a torch tensor keeps its dtype, device and
autograd graph. This module never imports torch; it uses the torch module that made the
tensor. :mod:`cryofield.so3` re-exports the same functions under its own names.
"""

from __future__ import annotations

import sys
from types import ModuleType

import numpy as np

#: Column order of :meth:`cryofield.io.ParticleTable.ctf_array` (cryoDRGN's layout).
CTF_COLUMNS: tuple[str, ...] = (
    "box_size_px",
    "pixel_size_angstrom",
    "defocus_u_angstrom",
    "defocus_v_angstrom",
    "defocus_angle_deg",
    "voltage_kv",
    "cs_mm",
    "amplitude_contrast",
    "phase_shift_deg",
)


def _namespace(x) -> tuple[ModuleType, object]:
    """``(xp, x)``: torch and the tensor for a torch tensor, else numpy and ``x`` as a float64 array."""
    if type(x).__module__.split(".")[0] == "torch":
        return sys.modules["torch"], x
    return np, np.asarray(x, dtype=np.float64)


def _norm(x):
    """Euclidean norm over the last axis, kept as an axis of length 1."""
    if isinstance(x, np.ndarray):
        return np.linalg.norm(x, axis=-1, keepdims=True)
    return x.norm(dim=-1, keepdim=True)


def relion_euler_to_matrix(euler_deg):
    """Rotation matrices from RELION Euler angles.

    Parameters
    ----------
    euler_deg : ndarray or Tensor, shape (..., 3)
        ``(rot, tilt, psi)`` in degrees (``_rlnAngleRot``, ``_rlnAngleTilt``,
        ``_rlnAnglePsi``), ZYZ.

    Returns
    -------
    ndarray (float64) or Tensor (the input's dtype), shape (..., 3, 3)
        ``R`` mapping the volume frame to the image frame (RELION's matrix ``A``).
    """
    xp, euler = _namespace(euler_deg)
    radians = xp.deg2rad(euler)
    a, b, g = radians[..., 0], radians[..., 1], radians[..., 2]
    ca, sa, cb, sb, cg, sg = xp.cos(a), xp.sin(a), xp.cos(b), xp.sin(b), xp.cos(g), xp.sin(g)
    rows = [
        xp.stack([cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb], -1),
        xp.stack([-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb], -1),
        xp.stack([sb * ca, sb * sa, cb], -1),
    ]
    return xp.stack(rows, -2)


def matrix_to_relion_euler(rot):
    """RELION Euler angles from rotation matrices; the inverse of :func:`relion_euler_to_matrix`.

    Parameters
    ----------
    rot : ndarray or Tensor, shape (..., 3, 3)
        Rotation matrices ``R``.

    Returns
    -------
    ndarray (float64) or Tensor, shape (..., 3)
        ``(rot, tilt, psi)`` in degrees, ``tilt`` in ``[0, 180]``. At the gimbal poles
        (``tilt`` 0 or 180) ``rot`` is set to 0 and the whole in-plane angle goes to ``psi``.
    """
    xp, r = _namespace(rot)
    tilt = xp.arccos(xp.clip(r[..., 2, 2], -1.0, 1.0))
    regular = xp.hypot(r[..., 2, 0], r[..., 2, 1]) > 1e-6
    rot_angle = xp.where(regular, xp.arctan2(r[..., 2, 1], r[..., 2, 0]), 0.0)
    # tilt ~ 0: R ~ Rz(rot + psi); tilt ~ 180: R ~ diag(-1, 1, -1) Rz(rot - psi)
    pole = xp.where(r[..., 2, 2] > 0, xp.arctan2(r[..., 0, 1], r[..., 0, 0]), xp.arctan2(r[..., 0, 1], -r[..., 0, 0]))
    psi = xp.where(regular, xp.arctan2(r[..., 1, 2], -r[..., 0, 2]), pole)
    return xp.rad2deg(xp.stack([rot_angle, tilt, psi], -1))


def relion_tilt_matrix(x_tilt_deg, y_tilt_deg, z_rot_deg):
    """A tilt image's rotation in RELION 5's tomography: ``R_f = Rz(ZRot) Ry(YTilt) Rx(XTilt)``.

    Active right-handed rotations about the tomogram's axes (``_rlnTomoXTilt``,
    ``_rlnTomoYTilt``, ``_rlnTomoZRot``; RELION's ``Tomogram::setProjectionMatrix``): the
    volume frame of the tomogram to the frame of the tilt image. ``Ry(theta)`` alone is a
    stage tilt about y.

    Parameters
    ----------
    x_tilt_deg, y_tilt_deg, z_rot_deg : ndarray or Tensor, shape (...)
        Degrees.

    Returns
    -------
    ndarray (float64) or Tensor (the input's dtype), shape (..., 3, 3)
    """
    xp, x = _namespace(x_tilt_deg)
    _, y = _namespace(y_tilt_deg)
    _, z = _namespace(z_rot_deg)

    def about(axis: int, deg):
        c, s = xp.cos(xp.deg2rad(deg)), xp.sin(xp.deg2rad(deg))
        one, zero = xp.ones_like(c), xp.zeros_like(c)
        rows = {0: [[one, zero, zero], [zero, c, -s], [zero, s, c]],
                1: [[c, zero, s], [zero, one, zero], [-s, zero, c]],
                2: [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[axis]
        return xp.stack([xp.stack(row, -1) for row in rows], -2)

    return about(2, z) @ about(1, y) @ about(0, x)


def quaternion_to_matrix(q):
    """Rotation matrices from quaternions ``(w, x, y, z)`` (normalised here), (..., 4) -> (..., 3, 3).

    ``q`` stands for the active rotation ``R`` of :func:`rotvec_to_matrix`.
    """
    xp, q = _namespace(q)
    q = q / _norm(q)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        xp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        xp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        xp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return xp.stack(rows, -2)


def matrix_to_quaternion(rot):
    """Quaternions ``(w, x, y, z)``, ``w >= 0``, from rotation matrices, (..., 3, 3) -> (..., 4).

    Uses the largest of the four diagonal combinations (Shepperd's method), so it is
    accurate at every angle, 180 degrees included.
    """
    xp, m = _namespace(rot)
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # row i is 4 q_i q; the largest q_i^2 (the diagonal) gives the best-conditioned row
    candidates = [
        xp.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                  m[..., 1, 0] - m[..., 0, 1]], -1),
        xp.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - trace, m[..., 0, 1] + m[..., 1, 0],
                  m[..., 0, 2] + m[..., 2, 0]], -1),
        xp.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - trace,
                  m[..., 1, 2] + m[..., 2, 1]], -1),
        xp.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                  1 + 2 * m[..., 2, 2] - trace], -1),
    ]
    best = xp.stack([c[..., i] for i, c in enumerate(candidates)], -1).argmax(-1)[..., None]
    q = candidates[3]
    for i in (2, 1, 0):
        q = xp.where(best == i, candidates[i], q)
    q = q / _norm(q)
    return xp.where(q[..., :1] < 0, -q, q)


def rotvec_to_matrix(rotvec):
    """Rotation matrices from rotation vectors (axis times angle in radians).

    Parameters
    ----------
    rotvec : ndarray or Tensor, shape (..., 3)

    Returns
    -------
    ndarray (float64) or Tensor, shape (..., 3, 3)
        ``exp([v]_x)``, the active rotation about ``v / |v|`` by ``|v|`` radians, through the
        quaternion ``(cos(|v|/2), sin(|v|/2) v / |v|)`` (exact at small angles).
    """
    xp, v = _namespace(rotvec)
    angle = _norm(v)
    half = angle / 2
    # sin(half) / angle, with its limit 1/2 at 0
    scale = xp.where(angle > 1e-8, xp.sin(half) / xp.where(angle > 1e-8, angle, 1.0), 0.5 - angle**2 / 48)
    return quaternion_to_matrix(xp.concatenate([xp.cos(half), v * scale], -1))


def matrix_to_rotvec(rot):
    """Rotation vectors (axis times angle in ``[0, pi]``, radians) from matrices, (..., 3, 3) -> (..., 3)."""
    xp, _ = _namespace(rot)
    q = matrix_to_quaternion(rot)
    sin_half = _norm(q[..., 1:])
    angle = 2 * xp.arctan2(sin_half, q[..., :1])
    scale = xp.where(sin_half > 1e-12, angle / xp.where(sin_half > 1e-12, sin_half, 1.0), 2.0 + 0 * angle)
    return q[..., 1:] * scale


def cryosparc_pose_to_matrix(pose):
    """``R`` from cryoSPARC's ``alignments3D/pose`` rotation vectors, (..., 3) -> (..., 3, 3): ``exp([v]_x)^T``."""
    return rotvec_to_matrix(pose).swapaxes(-1, -2)


def matrix_to_cryosparc_pose(rot):
    """CryoSPARC ``alignments3D/pose`` rotation vectors from ``R``, (..., 3, 3) -> (..., 3)."""
    _, r = _namespace(rot)
    return matrix_to_rotvec(r.swapaxes(-1, -2))
