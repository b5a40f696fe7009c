"""Rigid alignment of one map onto another: rotation, translation and hand.

A map ``B`` is brought onto a reference ``A`` by the transform

    ``B'(x) = B_h(R^T (x - t))``,

with ``x`` the coordinates ``(x, y, z)`` in pixels about the box centre (index ``D//2``),
``B_h`` either ``B`` or its mirror :func:`cryofield.metrics.flip_hand` ``(B)``, ``R`` an active
rotation about the box centre and ``t`` a translation in pixels (the content of ``B`` moves
by ``+t``).

The search runs coarse to fine: an exhaustive scan of the SO(3) grid
(:func:`cryofield.so3.so3_grid`) on Fourier-cropped maps, with the best translation of each
rotation found at once by FFT cross-correlation; then the children of the best grid points
at finer levels; then a local optimisation (L-BFGS on a rotation vector and a translation)
of the Pearson correlation on larger maps, and last on the full map (or a cap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cryofield.conventions import matrix_to_relion_euler
from cryofield.fourier import crop_center, fft_center, ifft_center, lattice, sample_trilinear, soft_ball_mask
from cryofield.metrics.maps import flip_hand
from cryofield.so3 import so3_children, so3_grid

__all__ = ["VolumeAlignment", "align_volumes", "apply_alignment", "map_correlation", "rotate_volume"]


@dataclass(frozen=True)
class VolumeAlignment:
    """The rigid transform that best maps a volume onto a reference.

    Attributes
    ----------
    rotation : ndarray, shape (3, 3), float64
        ``R``, the active rotation applied to the (possibly mirrored) moving map about the
        box centre.
    shift_px : ndarray, shape (3,), float64
        ``t`` as ``(x, y, z)`` in pixels of the full map, applied after the rotation.
    hand : str
        ``"same"``, or ``"flipped"`` when the moving map is mirrored first
        (:func:`cryofield.metrics.flip_hand`).
    correlation_before : float
        Pearson correlation of the two maps as given, over the whole box.
    correlation_after : float
        Pearson correlation of the reference and the transformed map, over the whole box.
    """

    rotation: np.ndarray
    shift_px: np.ndarray
    hand: str
    correlation_before: float
    correlation_after: float

    @property
    def euler_deg(self) -> np.ndarray:
        """``R`` as RELION Euler angles ``(rot, tilt, psi)`` in degrees, shape (3,)."""
        return matrix_to_relion_euler(self.rotation)

    @property
    def angle_deg(self) -> float:
        """Rotation angle of ``R`` in degrees, in ``[0, 180]``."""
        return math.degrees(math.acos(float(np.clip((np.trace(self.rotation) - 1) / 2, -1, 1))))


def _source_grid(rotations: torch.Tensor, shifts_px: torch.Tensor, points: torch.Tensor, size: int) -> torch.Tensor:
    """``grid_sample`` coordinates of ``R^T (x - t)`` for points ``x`` of a ``size`` box, (B, P, 3)."""
    # row vectors: (x - t)^T R == (R^T (x - t))^T; x^T R for all rotations as one matrix product
    n = len(rotations)
    source = (points @ rotations.permute(1, 0, 2).reshape(3, 3 * n)).reshape(-1, n, 3).transpose(0, 1)
    source = source - (shifts_px[:, None, :] @ rotations)
    return (source + size // 2) * (2.0 / (size - 1)) - 1.0  # align_corners=True


def rotate_volume(volume: torch.Tensor, rotations: torch.Tensor, shifts_px: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate and translate a map by trilinear interpolation: ``out(x) = V(R^T (x - t))``.

    Parameters
    ----------
    volume : Tensor, shape (D, D, D)
        Map ``[z, y, x]``, origin at index ``D//2``.
    rotations : Tensor, shape (3, 3) or (B, 3, 3)
        Active rotations about the origin.
    shifts_px : Tensor, shape (3,) or (B, 3), optional
        ``(x, y, z)`` translations in pixels, applied after the rotation (default 0).

    Returns
    -------
    Tensor, shape (D, D, D) or (B, D, D, D), dtype of ``volume``
        Zero where ``R^T (x - t)`` falls outside the box.
    """
    single = rotations.dim() == 2
    rotations = rotations.reshape(-1, 3, 3).to(volume)
    shifts_px = torch.zeros(len(rotations), 3) if shifts_px is None else shifts_px
    shifts_px = shifts_px.reshape(-1, 3).to(volume).expand(len(rotations), 3)
    size = volume.shape[-1]
    points = lattice(size, 3, normalized=False, dtype=volume.dtype, device=volume.device).reshape(-1, 3)
    grid = _source_grid(rotations, shifts_px, points, size)  # (B, D^3, 3)
    out = sample_trilinear(volume[None, None], grid[None]).reshape(len(rotations), size, size, size)
    return out[0] if single else out


def map_correlation(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Pearson correlation of two maps of the same shape over all voxels."""
    a = torch.as_tensor(a).to(torch.float64).reshape(-1)
    b = torch.as_tensor(b).to(torch.float64).reshape(-1)
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-300))


def _downsample(volume: torch.Tensor, size: int) -> torch.Tensor:
    """Fourier-crop a ``D^3`` map to ``size^3`` (the same physical box, coarser pixels)."""
    if size >= volume.shape[-1]:
        return volume
    return ifft_center(crop_center(fft_center(volume, 3), size, 3), 3).real.to(volume.dtype)


def _apply(volume: torch.Tensor, hand: str, rotation: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    return rotate_volume(flip_hand(volume) if hand == "flipped" else volume, rotation, shift_px)


def apply_alignment(volume: torch.Tensor | np.ndarray, alignment: VolumeAlignment) -> torch.Tensor:
    """Transform a map (the moving map of :func:`align_volumes`) onto the reference.

    Parameters
    ----------
    volume : Tensor or ndarray, shape (D, D, D)
    alignment : VolumeAlignment

    Returns
    -------
    Tensor, shape (D, D, D), dtype of ``volume``
        ``B_h(R^T (x - t))``, trilinear, zero outside the box.
    """
    volume = torch.as_tensor(volume)
    return _apply(volume, alignment.hand, torch.from_numpy(alignment.rotation), torch.from_numpy(alignment.shift_px))


class _Scorer:
    """Best FFT translation and normalised cross-correlation of many rotations at one box size."""

    def __init__(self, reference: torch.Tensor, moving: torch.Tensor, size: int, batch_size: int):
        self.size = size
        self.batch_size = batch_size
        a = _downsample(reference, size)
        self.moving = _downsample(moving, size)[None, None].float()
        self.a_ft = torch.fft.rfftn((a - a.mean()).float(), dim=(-3, -2, -1))
        points = lattice(size, 3, normalized=False, dtype=torch.float32, device=reference.device).reshape(-1, 3)
        self.inside = torch.nonzero(points.norm(dim=-1) <= size / 2)[:, 0]  # the masked map lives in the ball
        self.points = points[self.inside]

    def __call__(self, rotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (B,) and best shifts (B, 3) in pixels of this box for rotations (B, 3, 3)."""
        size, scores, shifts = self.size, [], []
        zero = torch.zeros(1, 3, device=self.points.device)
        for start in range(0, len(rotations), self.batch_size):
            r = rotations[start:start + self.batch_size].float()
            grid = _source_grid(r, zero.expand(len(r), 3), self.points, size)
            values = sample_trilinear(self.moving, grid[None])[0, 0]  # (B, P)
            rotated = values.new_zeros(len(r), size**3)
            rotated[:, self.inside] = values
            rotated = rotated.reshape(-1, size, size, size)
            # sum_x A(x) B_R(x - t) for every t: irfft(A^ conj(B_R^)); A has zero mean
            cc = torch.fft.irfftn(self.a_ft * torch.fft.rfftn(rotated, dim=(-3, -2, -1)).conj(),
                                  s=(size,) * 3, dim=(-3, -2, -1)).reshape(len(r), -1)
            n = values.shape[1]
            norm = (values.square().sum(1) - values.sum(1).square() / n).clamp_min(1e-30).sqrt()
            best, where = cc.max(1)
            index = torch.stack([where // size**2, (where // size) % size, where % size], -1)  # z, y, x
            index = torch.where(index > size // 2, index - size, index)  # wrap to signed shifts
            scores.append(best / norm)
            shifts.append(index.flip(-1).float())  # (x, y, z)
        return torch.cat(scores), torch.cat(shifts)


def _refine(reference: torch.Tensor, moving: torch.Tensor, size: int, rotation: torch.Tensor,
            shift_px: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """L-BFGS on ``R = exp([w]_x) R0`` and ``t`` maximising the Pearson correlation at box ``size``.

    The maps and the interpolation are float32; the parameters and the transform float64.
    Returns ``R`` (3, 3) and ``t`` (3,) in pixels of the full box, float64.
    """
    full = reference.shape[-1]
    scale = size / full
    a = _downsample(reference, size).float()
    b = _downsample(moving, size).float()[None, None]
    a = a - a.mean()
    a = (a / a.norm()).reshape(-1)
    points = lattice(size, 3, normalized=False, dtype=torch.float32, device=reference.device).reshape(-1, 3)
    r0 = rotation.to(torch.float64)
    t0 = shift_px.to(torch.float64) * scale
    radius = max(size / 4, 1.0)  # one unit of w moves a point at this radius by about a pixel
    params = torch.zeros(6, dtype=torch.float64, device=reference.device, requires_grad=True)

    def transform(p):
        w = p[:3] / radius
        zero = torch.zeros_like(w[0])
        skew = torch.stack([torch.stack([zero, -w[2], w[1]]), torch.stack([w[2], zero, -w[0]]),
                            torch.stack([-w[1], w[0], zero])])
        return torch.linalg.matrix_exp(skew) @ r0, t0 + p[3:]

    def correlation(p):
        r, t = transform(p)
        grid = _source_grid(r[None].float(), t[None].float(), points, size)
        values = sample_trilinear(b, grid).reshape(-1)
        values = values - values.mean()
        return ((a @ values) / values.norm().clamp_min(1e-30)).double()

    optimizer = torch.optim.LBFGS([params], lr=1, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-7, tolerance_change=1e-9)

    def closure():
        optimizer.zero_grad()
        loss = -correlation(params)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        r, t = transform(params)
    return r, t / scale


def _grid_search(ref_masked: torch.Tensor, moving_masked: torch.Tensor, search: int, level: int, local_levels: int,
                 keep: int, batch_size: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The best grid rotation and shift of ``moving_masked`` onto ``ref_masked``: a base grid, then local refinements.

    Returns
    -------
    (float, Tensor, Tensor)
        Its normalised cross-correlation, its index on the grid of ``level + local_levels``,
        and its shift (3,) in pixels of the full box.
    """
    full, device = ref_masked.shape[-1], ref_masked.device
    scores, shifts = _Scorer(ref_masked, moving_masked, search, batch_size)(
        so3_grid(level, dtype=torch.float32, device=device))
    top = torch.topk(scores, min(keep, len(scores))).indices
    indices, shifts = top, shifts[top] * (full / search)
    for step in range(1, local_levels + 1):
        children = so3_children(indices, level + step - 1).reshape(-1)
        size = min(full, 2 * round(search * 2 ** (step / 2) / 2))
        scores, found = _Scorer(ref_masked, moving_masked, size, batch_size)(
            so3_grid(level + step, children, dtype=torch.float32, device=device))
        top = torch.topk(scores, min(keep, len(scores))).indices
        indices, shifts = children[top], found[top] * (full / size)
    return float(scores[top[0]]), indices[0], shifts[0]


def align_volumes(reference: torch.Tensor | np.ndarray, moving: torch.Tensor | np.ndarray, *, hand: str = "auto",
                  search_size: int = 24, level: int = 2, keep: int = 8, local_levels: int = 2,
                  refine_size: int | None = 128, max_iter: int = 50, batch_size: int = 256,
                  device: torch.device | str | None = None) -> VolumeAlignment:
    """Find the rotation, translation and hand that best map ``moving`` onto ``reference``.

    1. Both maps are multiplied by a soft sphere (radius ``0.4 D``, falling to 0 at
       ``0.5 D``) and Fourier-cropped to ``search_size``.
    2. Every rotation of ``so3_grid(level)`` (level 2: 4,608 rotations, 15 degrees) is applied
       to the moving map (trilinear) and scored by its best FFT cross-correlation with the
       reference over all (circular) translations, divided by the rotated map's norm.
    3. The ``keep`` best grid points are replaced by their children, ``local_levels`` times
       (each level halves the spacing), on maps cropped to ``search_size * 2**(l / 2)``
       at child level ``l``, keeping the ``keep`` best each time.
    4. The best point is polished by L-BFGS on a rotation vector and a translation
       maximising the Pearson correlation of the masked maps, on maps cropped to twice
       ``search_size``, then on the full map (cropped to ``refine_size`` when smaller).

    With ``hand="auto"`` steps 1 to 3 run for ``moving`` and for its mirror; the hand whose
    best grid point has the higher normalised cross-correlation (the same box sizes for
    both) is polished and returned.

    Cost: the global search interpolates ``72 * 8**level`` rotated maps of
    ``search_size**3`` voxels per hand (level 2 at box 24: about 2 s of one CPU core).

    Parameters
    ----------
    reference, moving : Tensor or ndarray, shape (D, D, D)
        Maps ``[z, y, x]`` on the same grid (same box and pixel size).
    hand : {"auto", "same", "flipped"}
    search_size : int
        Box of the global search, in pixels (capped at ``D``).
    level : int
        SO(3) grid level of the global search (:func:`cryofield.so3.so3_grid`).
    keep : int
        Candidates carried from each search level to the next.
    local_levels : int
        Child levels after the global one (2: a 3.75 degree grid after a 15 degree one).
    refine_size : int or None
        Largest box of the final local optimisation (``None``: the full box ``D``).
    max_iter : int
        L-BFGS iterations per local optimisation.
    batch_size : int
        Rotations interpolated at a time in the grid searches.
    device : torch.device or str, optional
        Where to compute (default: the device of ``reference``, or the CPU).

    Returns
    -------
    VolumeAlignment
        Apply it with :func:`apply_alignment`.
    """
    if hand not in ("auto", "same", "flipped"):
        raise ValueError(f"hand must be 'auto', 'same' or 'flipped', got {hand!r}")
    ref = torch.as_tensor(reference)
    mov = torch.as_tensor(moving)
    device = torch.device(device) if device is not None else ref.device
    if ref.dim() != 3 or len(set(ref.shape)) != 1 or ref.shape != mov.shape:
        raise ValueError(f"maps must be cubes of the same size, got {tuple(ref.shape)} and {tuple(mov.shape)}")
    ref = ref.to(device=device, dtype=torch.float32)
    mov = mov.to(device=device, dtype=torch.float32)
    full = ref.shape[-1]
    mask = soft_ball_mask(full, 0.4 * full, 0.1 * full, 3, dtype=torch.float32, device=device)
    ref_masked = ref * mask
    search = min(search_size, full)
    middle = min(2 * search, full)
    results = []
    for name in ("same", "flipped") if hand == "auto" else (hand,):
        moving_masked = (flip_hand(mov) if name == "flipped" else mov) * mask
        score, index, shift = _grid_search(ref_masked, moving_masked, search, level, local_levels, keep, batch_size)
        results.append((score, name, index, shift, moving_masked))
    # the hands are compared by the normalised cross-correlation of their best grid point
    _, name, index, shift, moving_masked = max(results, key=lambda r: r[0])
    rotation = so3_grid(level + local_levels, index[None], dtype=torch.float64, device=device)[0]
    final = full if refine_size is None else min(full, refine_size)
    for size in sorted({min(middle, final), final}):
        rotation, shift = _refine(ref_masked, moving_masked, size, rotation, shift, max_iter)
    aligned = _apply(mov, name, rotation.float(), shift.float())
    return VolumeAlignment(rotation=rotation.cpu().numpy(), shift_px=shift.cpu().numpy(), hand=name,
                           correlation_before=map_correlation(ref, mov),
                           correlation_after=map_correlation(ref, aligned))
