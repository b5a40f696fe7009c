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

The numpy functions here convert between those external conventions and ``R``; the
torch versions used in batched code live in :mod:`cryofield.so3`.
"""

from __future__ import annotations

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


def relion_euler_to_matrix(euler_deg: np.ndarray) -> np.ndarray:
    """Rotation matrices from RELION Euler angles.

    Parameters
    ----------
    euler_deg : ndarray, shape (..., 3)
        ``(rot, tilt, psi)`` in degrees (``_rlnAngleRot``, ``_rlnAngleTilt``,
        ``_rlnAnglePsi``), ZYZ.

    Returns
    -------
    ndarray, shape (..., 3, 3), float64
        ``R`` mapping the volume frame to the image frame (RELION's matrix ``A``).
    """
    a, b, g = np.moveaxis(np.deg2rad(np.asarray(euler_deg, dtype=np.float64)), -1, 0)
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    rows = [
        [cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb],
        [-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb],
        [sb * ca, sb * sa, cb],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def matrix_to_relion_euler(rot: np.ndarray) -> np.ndarray:
    """RELION Euler angles from rotation matrices; the inverse of :func:`relion_euler_to_matrix`.

    Parameters
    ----------
    rot : ndarray, shape (..., 3, 3)
        Rotation matrices ``R``.

    Returns
    -------
    ndarray, shape (..., 3), float64
        ``(rot, tilt, psi)`` in degrees, ``tilt`` in ``[0, 180]``. At the gimbal poles
        (``tilt`` 0 or 180) ``rot`` is set to 0 and the whole in-plane angle goes to ``psi``.
    """
    r = np.asarray(rot, dtype=np.float64)
    tilt = np.arccos(np.clip(r[..., 2, 2], -1.0, 1.0))
    sin_tilt = np.sqrt(r[..., 2, 0] ** 2 + r[..., 2, 1] ** 2)
    regular = sin_tilt > 1e-6
    rot_angle = np.where(regular, np.arctan2(r[..., 2, 1], r[..., 2, 0]), 0.0)
    psi = np.where(
        regular,
        np.arctan2(r[..., 1, 2], -r[..., 0, 2]),
        # tilt ~ 0: R ~ Rz(rot + psi); tilt ~ 180: R ~ diag(-1, 1, -1) Rz(rot - psi)
        np.where(r[..., 2, 2] > 0, np.arctan2(r[..., 0, 1], r[..., 0, 0]),
                 np.arctan2(r[..., 0, 1], -r[..., 0, 0])),
    )
    return np.rad2deg(np.stack([rot_angle, tilt, psi], axis=-1))


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrices from rotation vectors (axis times angle in radians), Rodrigues' formula.

    Parameters
    ----------
    rotvec : ndarray, shape (..., 3)

    Returns
    -------
    ndarray, shape (..., 3, 3), float64
        ``exp([v]_x)``, the active rotation about ``v / |v|`` by ``|v|`` radians.
    """
    v = np.asarray(rotvec, dtype=np.float64)
    theta = np.linalg.norm(v, axis=-1)[..., None, None]
    k = np.zeros(v.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    k = k - np.swapaxes(k, -1, -2)
    small = theta < 1e-8
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    return np.eye(3) + a * k + b * (k @ k)


def cryosparc_pose_to_matrix(pose: np.ndarray) -> np.ndarray:
    """``R`` from cryoSPARC's ``alignments3D/pose`` rotation vectors, shape (..., 3) -> (..., 3, 3)."""
    return np.swapaxes(rotvec_to_matrix(pose), -1, -2)
