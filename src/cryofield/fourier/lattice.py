"""Coordinate lattices, masks, soft windows and radial shells, all centred at ``D//2``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def centered_coords(size: int, *, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """``i - size//2`` for ``i`` in ``0..size-1``, shape (size,)."""
    return torch.arange(size, dtype=dtype, device=device) - size // 2


def lattice(size: int, ndim: int = 2, *, normalized: bool = True, dtype: torch.dtype = torch.float32,
            device: torch.device | str | None = None) -> torch.Tensor:
    """A centred grid of coordinates.

    Parameters
    ----------
    size : int
        ``D``.
    ndim : {2, 3}
    normalized : bool
        Divide by ``D``: frequencies in cycles per pixel, in ``[-0.5, 0.5)``. Otherwise
        pixel (or cycles-per-box) units ``i - D//2``.

    Returns
    -------
    Tensor, shape (D, D, 2) or (D, D, D, 3)
        Last axis ``(x, y)`` or ``(x, y, z)``; array axes ``[y, x]`` or ``[z, y, x]``.
    """
    c = centered_coords(size, dtype=dtype, device=device)
    if normalized:
        c = c / size
    grids = torch.meshgrid(*([c] * ndim), indexing="ij")  # (z,) y, x
    return torch.stack(grids[::-1], dim=-1)


def radius(size: int, ndim: int = 2, *, dtype: torch.dtype = torch.float32,
           device: torch.device | str | None = None) -> torch.Tensor:
    """Distance from the centre in pixels, shape (D,)*ndim."""
    return lattice(size, ndim, normalized=False, dtype=dtype, device=device).norm(dim=-1)


def ball_mask(size: int, radius_px: float | None = None, ndim: int = 2,
              device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean circle (2D) or sphere (3D) of ``radius_px`` (default ``D//2``), shape (D,)*ndim."""
    r = size // 2 if radius_px is None else radius_px
    return radius(size, ndim, dtype=torch.float64, device=device) <= r


def soft_ball_mask(size: int, radius_px: float, width_px: float, ndim: int = 2, *,
                   dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """A ball of ``radius_px`` whose edge falls from 1 to 0 as a raised cosine over ``width_px``.

    Returns
    -------
    Tensor, shape (D,)*ndim, values in [0, 1]
    """
    r = radius(size, ndim, dtype=torch.float64, device=device)
    if width_px <= 0:
        return (r <= radius_px).to(dtype)
    t = ((r - radius_px) / width_px).clamp(0, 1)
    return (0.5 * (1 + torch.cos(math.pi * t))).to(dtype)


def shell_index(size: int, ndim: int = 2, device: torch.device | str | None = None) -> torch.Tensor:
    """Radial shell of each sample: ``round(|k|)`` in cycles per box, shape (D,)*ndim, int64.

    Shell ``s`` holds frequency ``s / D`` cycles per pixel; shells ``0 .. D//2`` cover the
    inscribed circle or sphere, larger indices the corners.
    """
    return torch.round(radius(size, ndim, dtype=torch.float64, device=device)).long()


def radial_sum(values: torch.Tensor, shells: torch.Tensor, n_shells: int) -> torch.Tensor:
    """Sum ``values`` (..., *lattice) per shell; returns (..., n_shells), shells past it dropped."""
    flat_shells = shells.reshape(-1)
    keep = flat_shells < n_shells
    flat = values.reshape(values.shape[: values.dim() - shells.dim()] + (-1,))[..., keep]
    out = flat.new_zeros(flat.shape[:-1] + (n_shells,))
    return out.index_add_(-1, flat_shells[keep], flat)


def sample_trilinear(volumes: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Trilinear values of 3-D lattices at points given in ``grid_sample``'s normalised coordinates.

    ``F.grid_sample(mode="bilinear", padding_mode="zeros", align_corners=True)`` for any
    arrangement of points, using every CPU thread for a single lattice: PyTorch's 3-D
    ``grid_sample`` on a CPU gives each lattice a thread, not each point, so one lattice
    would be interpolated on one core. Its points are split into pieces (two per thread)
    against a stride-0 view of the same lattice; the values are bit-identical, and
    gradients flow to ``grid`` as through ``grid_sample``.

    Parameters
    ----------
    volumes : Tensor, shape (N, C, L, L, L)
        ``C`` channels per lattice, array axes ``[z, y, x]``.
    grid : Tensor, shape (N, ..., 3)
        ``(x, y, z)`` of each point, -1 and 1 at the first and last lattice points (zero
        outside).

    Returns
    -------
    Tensor, shape (N, C, ...)
    """
    n, shape = grid.shape[0], grid.shape[1:-1]
    points = grid.reshape(n, -1, 3)
    count = points.shape[1]
    pieces = 2 * torch.get_num_threads() if volumes.device.type == "cpu" and n == 1 and count >= 4096 else 1
    if pieces == 1:
        out = F.grid_sample(volumes, points[:, None, None], mode="bilinear", padding_mode="zeros",
                            align_corners=True)  # (N, C, 1, 1, P)
        return out.reshape(n, volumes.shape[1], *shape)
    per = -(-count // pieces)
    points = F.pad(points[0], (0, 0, 0, per * pieces - count))
    out = F.grid_sample(volumes.expand(pieces, -1, -1, -1, -1), points.view(pieces, 1, 1, per, 3),
                        mode="bilinear", padding_mode="zeros", align_corners=True)  # (pieces, C, 1, 1, per)
    out = out.reshape(pieces, -1, per).transpose(0, 1).reshape(volumes.shape[1], -1)[:, :count]
    return out.reshape(1, volumes.shape[1], *shape)
