"""Coordinate lattices, masks, soft windows and radial shells, all centred at ``D//2``."""

from __future__ import annotations

import math

import torch


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
