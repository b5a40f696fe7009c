"""Uniform SO(3) grids (HEALPix directions times in-plane angles) and in-plane shift grids.

The SO(3) grid at ``level`` is the product of the HEALPix pixel centres at
``nside = 2**level`` (NESTED order, Gorski et al. 2005, ApJ 622, 759) and
``n_psi = 6 * 2**level`` in-plane angles; flat index ``pixel * n_psi + j``. Each point is
``R`` of :mod:`cryofield.conventions` for RELION Euler angles ``(rot, tilt, psi) =
(phi, theta, psi_j)``, so all the in-plane angles of one pixel share a viewing direction and
differ by a rotation about the image z axis. Refining a point replaces it by its 8 children
at ``level + 1``: the 4 nested sub-pixels times the 2 halves of its in-plane interval.

Layer 1: numpy and torch only.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from cryofield.so3.rotations import euler_to_matrix

__all__ = ["grid_resolution_deg", "grid_size", "healpix_pix2ang_nest", "shift_grid", "so3_children", "so3_grid"]

# Ring number of each base face's southmost vertex, in units of nside, and its longitude in units of pi/4.
_FACE_RING = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4], dtype=np.int64)
_FACE_PHI = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7], dtype=np.int64)


def _check_nside(nside: int) -> int:
    nside = int(nside)
    if nside < 1 or nside & (nside - 1):
        raise ValueError(f"nside must be a power of 2 for the NESTED scheme, got {nside}")
    return nside


def healpix_pix2ang_nest(nside: int, ipix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spherical coordinates of HEALPix pixel centres in the NESTED scheme.

    Follows Gorski et al. (2005): the nested index is split into a base face (0..11) and
    the de-interleaved ``(x, y)`` position inside it, which give the ring index
    ``i = 1 .. 4 nside - 1`` and the position along the ring. Polar-cap rings
    (``i < nside``) have ``z = 1 - i^2 / (3 nside^2)`` and ``4 i`` pixels; equatorial rings
    have ``z = 4/3 - 2 i / (3 nside)`` and ``4 nside`` pixels, every second ring shifted by
    half a pixel; the south cap mirrors the north.

    Parameters
    ----------
    nside : int
        HEALPix resolution, a power of 2; the sphere has ``12 * nside**2`` pixels.
    ipix : np.ndarray
        Integer pixel indices, any shape ``(...)``, in ``[0, 12 * nside**2)``.

    Returns
    -------
    theta : np.ndarray
        Colatitude in radians, in ``(0, pi)``, shape ``(...)``, float64.
    phi : np.ndarray
        Longitude in radians, in ``[0, 2 pi)``, shape ``(...)``, float64.
    """
    nside = _check_nside(nside)
    ipix = np.asarray(ipix)
    if not np.issubdtype(ipix.dtype, np.integer):
        raise TypeError(f"pixel indices must be integers, got {ipix.dtype}")
    ipix = ipix.astype(np.int64)
    npface = nside * nside
    if ipix.size and (ipix.min() < 0 or ipix.max() >= 12 * npface):
        raise ValueError(f"pixel indices must lie in [0, {12 * npface}) for nside {nside}")
    face, ipf = np.divmod(ipix, npface)
    # de-interleave: x from the even bits of the in-face index, y from the odd bits
    ix = np.zeros_like(ipf)
    iy = np.zeros_like(ipf)
    for bit in range(nside.bit_length() - 1):
        ix |= ((ipf >> (2 * bit)) & 1) << bit
        iy |= ((ipf >> (2 * bit + 1)) & 1) << bit

    ring = _FACE_RING[face] * nside - ix - iy - 1  # 1 .. 4 nside - 1, north to south
    north, south = ring < nside, ring > 3 * nside
    nr = np.where(north, ring, np.where(south, 4 * nside - ring, nside))  # pixels per ring / 4
    kshift = np.where(north | south, 0, (ring - nside) & 1)  # equatorial rings alternate
    jp = (_FACE_PHI[face] * nr + ix - iy + 1 + kshift) // 2  # 1-based position along the ring
    jp = np.where(jp > 4 * nside, jp - 4 * nside, jp)
    jp = np.where(jp < 1, jp + 4 * nside, jp)
    phi = (jp - (kshift + 1) * 0.5) * (0.5 * np.pi / nr)

    # polar caps: 1 - z = nr^2 / (3 nside^2) = 2 sin^2(theta / 2), accurate near the poles
    cap = 2 * np.arcsin(np.minimum(nr / (math.sqrt(6.0) * nside), 1.0))
    z_equator = (2 * nside - ring) * (2.0 / (3 * nside))
    theta = np.where(north, cap, np.where(south, np.pi - cap, np.arccos(np.clip(z_equator, -1, 1))))
    return theta, phi


def grid_size(level: int) -> int:
    """Number of rotations in the SO(3) grid at ``level``: ``72 * 8**level``.

    Parameters
    ----------
    level : int
        Grid level, ``>= 0`` (0 -> 72, 1 -> 576, 2 -> 4608, 3 -> 36864).

    Returns
    -------
    int
        ``12 * nside**2`` directions times ``n_psi = 6 * 2**level`` in-plane angles.
    """
    _check_level(level)
    return 72 * 8**level


def grid_resolution_deg(level: int) -> float:
    """Nominal angular spacing of the SO(3) grid at ``level`` in degrees: ``60 / 2**level``.

    This is the in-plane step ``360 / n_psi``, and about the HEALPix pixel size
    ``sqrt(4 pi / (12 nside^2))``; it halves at each level.

    Parameters
    ----------
    level : int
        Grid level, ``>= 0``.

    Returns
    -------
    float
        Degrees (60 at level 0, 30 at level 1, 15 at level 2).
    """
    _check_level(level)
    return 60.0 / 2**level


def _check_level(level: int) -> None:
    if int(level) != level or level < 0:
        raise ValueError(f"grid level must be a non-negative integer, got {level}")


@functools.lru_cache(maxsize=16)
def _pixel_angles_deg(level: int) -> np.ndarray:
    """``(12 nside^2, 2)`` float64 array of ``(phi, theta)`` in degrees of the nested pixels at ``level``."""
    nside = 2**level
    theta, phi = healpix_pix2ang_nest(nside, np.arange(12 * nside * nside))
    out = np.rad2deg(np.stack([phi, theta], -1))
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=32)
def _pixel_angles(level: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`_pixel_angles_deg` as a tensor, kept: searches ask for the same levels again and again."""
    return torch.tensor(_pixel_angles_deg(level), dtype=dtype, device=device)


def _as_index_tensor(indices: torch.Tensor, size: int, what: str) -> torch.Tensor:
    idx = torch.as_tensor(indices)
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise TypeError(f"{what} must be integers, got {idx.dtype}")
    idx = idx.long()
    # checked on the CPU only: on a GPU the check would wait for the device at every call of a search
    if idx.device.type == "cpu" and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= size):
        raise IndexError(f"{what} must lie in [0, {size})")
    return idx


def so3_grid(level: int, indices: torch.Tensor | None = None, *, dtype: torch.dtype = torch.float32,
             device: torch.device | str | None = None) -> torch.Tensor:
    """Rotation matrices of the uniform SO(3) grid at ``level``.

    The grid is the HEALPix directions at ``nside = 2**level`` (NESTED order) times
    ``n_psi = 6 * 2**level`` in-plane angles ``psi_j = (j + 0.5) * 360 / n_psi`` degrees;
    flat index ``pixel * n_psi + j``. Each matrix is ``R`` (volume frame to image frame)
    of the RELION Euler angles ``(rot, tilt, psi) = (phi, theta, psi_j - s phi)`` of the
    pixel centre ``(theta, phi)``, computed with :func:`cryofield.so3.euler_to_matrix`,
    where ``s`` is 1 on the four northern HEALPix base faces, -1 on the four southern ones
    and 0 on the equatorial ones: Euler angles are singular at the poles (a change of
    ``phi`` at fixed ``psi`` turns the volume about z by the whole change), and the offset
    keeps every child within 0.75 grid spacings of its parent.

    Parameters
    ----------
    level : int
        Grid level, ``>= 0``; the grid has :func:`grid_size` ``(level) = 72 * 8**level``
        rotations with spacing about :func:`grid_resolution_deg` ``(level)`` degrees.
    indices : torch.Tensor, optional
        Integer flat indices, any shape ``(...)``, in ``[0, grid_size(level))``; all
        rotations in flat order when omitted.
    dtype : torch.dtype, optional
        Floating dtype of the result (computed in float64, then cast). Default float32.
    device : torch.device or str, optional
        Device of the result; default the device of ``indices``, else the CPU.

    Returns
    -------
    torch.Tensor
        ``(grid_size(level), 3, 3)``, or ``(..., 3, 3)`` for ``indices`` of shape ``(...)``.
    """
    n = grid_size(level)
    n_psi = 6 * 2**level
    if device is None:
        device = indices.device if isinstance(indices, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    idx = torch.arange(n, device=device) if indices is None else _as_index_tensor(indices, n, "indices").to(device)
    work = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    angles = _pixel_angles(level, work, device)
    pixel, j = torch.div(idx, n_psi, rounding_mode="floor"), torch.remainder(idx, n_psi)
    psi = (j.to(work) + 0.5) * (360.0 / n_psi)
    # near a pole (rot, tilt, psi) is singular: R -> Rz(psi + rot) at tilt 0 and Rz(psi - rot) Ry(180) at tilt
    # 180; offsetting psi by -/+ rot on the polar faces keeps neighbouring pixels' rotations close
    face = torch.div(pixel, 4**level, rounding_mode="floor")
    rot = angles[pixel][..., 0]
    psi = psi - torch.where(face < 4, rot, torch.where(face >= 8, -rot, torch.zeros_like(rot)))
    euler = torch.cat([angles[pixel], psi[..., None]], -1)  # (..., 3): rot, tilt, psi in degrees
    return euler_to_matrix(euler).to(dtype)


def so3_children(indices: torch.Tensor, level: int) -> torch.Tensor:
    """Flat indices at ``level + 1`` of the 8 children of flat indices at ``level``.

    The children of ``pixel * n_psi + j`` are the nested sub-pixels ``4 pixel + a``
    (``a = 0..3``) times the in-plane angles ``2 j + b`` (``b = 0, 1``) of the next level,
    in the order ``a * 2 + b``. The children of all the points of a level enumerate the next
    level exactly once.

    Parameters
    ----------
    indices : torch.Tensor
        Integer flat indices at ``level``, any shape ``(...)``, in ``[0, grid_size(level))``.
    level : int
        Level of ``indices``, ``>= 0``.

    Returns
    -------
    torch.Tensor
        int64 flat indices at ``level + 1``, shape ``(..., 8)``, on the device of ``indices``.
    """
    idx = _as_index_tensor(indices, grid_size(level), "indices")
    n_psi = 6 * 2**level
    pixel, j = torch.div(idx, n_psi, rounding_mode="floor"), torch.remainder(idx, n_psi)
    sub = torch.arange(4, device=idx.device)
    half = torch.arange(2, device=idx.device)
    child_pixel = 4 * pixel[..., None, None] + sub[:, None]  # (..., 4, 1)
    child_psi = 2 * j[..., None, None] + half  # (..., 1, 2)
    return (child_pixel * (2 * n_psi) + child_psi).reshape(*idx.shape, 8)


def shift_grid(extent_px: float, n: int, centers: torch.Tensor | None = None, *, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Centred ``n x n`` grid of in-plane translations, optionally around given centres.

    The points along each axis are ``(i - (n - 1) / 2) * spacing`` for ``i = 0 .. n - 1``
    with ``spacing = 2 * extent_px / n``, so the grid spans ``[-extent_px, extent_px]``
    with each point at the centre of its ``spacing``-wide cell. Points are ordered with
    ``x`` fastest: point ``iy * n + ix`` is ``(x[ix], y[iy])``. The next level of a search
    uses ``extent_px / 2``: half the extent and half the spacing around each kept point.

    Parameters
    ----------
    extent_px : float
        Half-width of the grid in pixels, ``>= 0``.
    n : int
        Points per axis, ``>= 1``.
    centers : torch.Tensor, optional
        Centres ``(..., 2)`` as ``(x, y)`` in pixels; the grid is added to each.
    dtype : torch.dtype, optional
        Floating dtype; default the dtype of ``centers`` if floating, else float32.
    device : torch.device or str, optional
        Device; default the device of ``centers``, else the CPU.

    Returns
    -------
    torch.Tensor
        Translations ``(x, y)`` in pixels, shape ``(n * n, 2)``, or ``(..., n * n, 2)``
        with ``centers``.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    if not extent_px >= 0:
        raise ValueError(f"extent_px must be >= 0, got {extent_px}")
    n = int(n)
    if dtype is None:
        dtype = centers.dtype if centers is not None and centers.dtype.is_floating_point else torch.float32
    if device is None:
        device = centers.device if centers is not None else None
    spacing = 2.0 * float(extent_px) / n
    axis = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * spacing  # tiny: built on the CPU
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1).to(device=device, dtype=dtype)
    if centers is None:
        return grid
    centers = torch.as_tensor(centers, device=device).to(dtype)
    if centers.shape[-1:] != (2,):
        raise ValueError(f"centers must have shape (..., 2), got {tuple(centers.shape)}")
    return centers[..., None, :] + grid
