"""Branch and bound with frequency marching (the seed's Algorithm 1, cryoDRGN-BNB), for comparison.

At each level every candidate pose gets a lower bound of its loss: the squared error over
the band ``|k| < k`` only (a partial sum of the full error, so never more than it). The
candidate with the lowest bound gets the full-band loss, an upper bound of the best loss;
candidates whose lower bound exceeds it are pruned, the others are subdivided (8 rotations
on the next SO(3) grid times 4 translations at half the spacing), and ``k`` rises linearly
from ``kmin`` to ``kmax``.

With noisy images the band-limited bound is loose (the full band adds the noise of every
other pixel), so few candidates are pruned; ``max_candidates`` keeps the lowest bounds of
each image, as any practical implementation must. The hierarchical search of
:mod:`cryofield.posesearch.hierarchical` is the method to use; this one reproduces the
seed's comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cryofield.imaging import shift_phase_at
from cryofield.posesearch.hierarchical import SearchResult, _real, band_pixels
from cryofield.posesearch.lattice import ModelLattice
from cryofield.so3 import shift_grid, so3_children, so3_grid


@dataclass(frozen=True)
class BnbSettings:
    """Grids and bands of the branch and bound (defaults: the seed's section 3.4.1).

    Attributes
    ----------
    base_level : int
        SO(3) grid level of the base (1: 576 rotations, 30 degrees).
    subdivisions : int
        Levels after the base (5: about 0.94 degrees and 0.09 px at box 64).
    kmin, kmax : float or None
        Band of the base level and of the last, cycles per box (``kmax`` default ``D / 2``).
    n_shifts : int
        Translations per axis of the base grid (7).
    shift_extent_px : float or None
        Half-width of the base translation grid (default ``20 * D / 128``).
    max_candidates : int
        Candidates kept per image after pruning (the lowest lower bounds).
    """

    base_level: int = 1
    subdivisions: int = 5
    kmin: float = 12.0
    kmax: float | None = None
    n_shifts: int = 7
    shift_extent_px: float | None = None
    max_candidates: int = 256

    def band_limits(self, box: int, kmax: float | None = None) -> list[float]:
        """The band of each level, cycles per box."""
        top = min(kmax or self.kmax or box / 2, box / 2)
        low = min(self.kmin, top)
        return [low + (top - low) * i / max(self.subdivisions, 1) for i in range(self.subdivisions + 1)]


class BranchAndBound:
    """Search poses by branch and bound against one model lattice (homogeneous models).

    Parameters
    ----------
    coords_px : Tensor, shape (P, 2)
        The images' pixels ``(kx, ky)``, cycles per box.
    box : int
    settings : BnbSettings
    batch_size : int
        Images searched together.
    chunk : int
        Candidates scored at a time.
    """

    def __init__(self, coords_px: torch.Tensor, box: int, settings: BnbSettings | None = None, *,
                 batch_size: int = 16, chunk: int = 4096):
        self.settings = settings or BnbSettings()
        self.coords, self.box = coords_px, box
        self.batch_size, self.chunk = batch_size, chunk
        self.base_rotations = so3_grid(self.settings.base_level, device=coords_px.device)

    @torch.no_grad()
    def __call__(self, lattice: ModelLattice, images: torch.Tensor, ctf: torch.Tensor | None = None, *,
                 kmax: float | None = None, tilted: None = None,
                 progress: Callable[[int], None] | None = None) -> SearchResult:
        """Best pose of each image (as :class:`cryofield.posesearch.PoseSearch`, one lattice, single images only)."""
        if lattice.count != 1:
            raise ValueError("branch and bound searches against one model (homogeneous) only")
        if tilted is not None:
            raise ValueError("branch and bound scores single images, not tilt pairs")
        if ctf is None:
            ctf = torch.ones(images.shape, device=images.device)
        out = [self._search_batch(lattice, images[i:i + self.batch_size], ctf[i:i + self.batch_size], kmax, progress)
               for i in range(0, len(images), self.batch_size)]
        return SearchResult(*(torch.cat(parts) for parts in zip(*out)))

    def _losses(self, lattice: ModelLattice, images: torch.Tensor, ctf: torch.Tensor, owner: torch.Tensor,
                rotations: torch.Tensor, shifts: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        """Squared error over ``band`` of candidates (M,) of images ``owner``, (M, A, C).

        Each candidate pairs rotations (M, A, 3, 3) with shifts (M, C, 2) in pixels.
        """
        coords = self.coords[band]
        out = []
        for i in range(0, len(owner), self.chunk):
            who = owner[i:i + self.chunk]
            rot, shift = rotations[i:i + self.chunk], shifts[i:i + self.chunk]
            slices = lattice.slices(rot.flatten(0, 1), coords).view(len(who), rot.shape[1], -1)  # (m, A, P)
            c = ctf[who][:, band]
            predicted = slices * c[:, None, :]
            translated = images[who][:, None, band] * shift_phase_at(coords, shift, self.box)  # (m, C, P)
            cross = _real(predicted) @ _real(translated).transpose(1, 2)  # (m, A, C)
            power = predicted.abs().square().sum(-1)  # (m, A)
            data = images[who][:, band].abs().square().sum(-1)  # (m,)
            out.append(power[:, :, None] + data[:, None, None] - 2 * cross)
        return torch.cat(out)

    def _search_batch(self, lattice, images, ctf, kmax, progress):
        settings, box, device = self.settings, self.box, images.device
        n = len(images)
        limits = settings.band_limits(box, kmax)
        full = band_pixels(self.coords, limits[-1])
        extent = settings.shift_extent_px if settings.shift_extent_px is not None else 20.0 * box / 128
        spacing = 2 * extent / settings.n_shifts
        base_shifts = shift_grid(extent, settings.n_shifts, device=device)  # (T2, 2)
        # the base level: every rotation against every translation of each image, by one product
        band = band_pixels(self.coords, limits[0])
        coords = self.coords[band]
        slices = lattice.slices(self.base_rotations, coords)  # (R, P)
        c = ctf[:, band]
        translated = images[:, None, band] * shift_phase_at(coords, base_shifts, box)  # (n, T2, P)
        weighted = _real(translated * c[:, None, :])  # c X_t: <c S, X_t> = <S, c X_t>
        cross = weighted @ _real(slices).T  # (n, T2, R)
        power = c.square() @ slices.abs().square().T  # (n, R)
        data = images[:, band].abs().square().sum(-1)  # (n,)
        lower = (power[:, None, :] + data[:, None, None] - 2 * cross).transpose(1, 2).flatten()  # (n R T2)
        n_rot, n_shift = len(self.base_rotations), len(base_shifts)
        owner = torch.arange(n, device=device).repeat_interleave(n_rot * n_shift)
        rot_index = torch.arange(n_rot, device=device).repeat_interleave(n_shift).repeat(n)
        shifts = base_shifts.repeat(n * n_rot, 1)
        level = settings.base_level
        for depth in range(1, settings.subdivisions + 2):
            # the best lower bound of each image, its full-band loss, and the candidates below it
            best = torch.full((n,), math.inf, device=device).scatter_reduce(0, owner, lower, "amin")
            first = torch.nonzero(lower == best[owner]).squeeze(1)
            star = torch.full((n,), -1, dtype=torch.long, device=device).scatter_reduce(0, owner[first], first,
                                                                                       "amax", include_self=True)
            star_rot = so3_grid(level, rot_index[star], device=device)
            upper = self._losses(lattice, images, ctf, owner[star], star_rot[:, None], shifts[star][:, None],
                                 full)[:, 0, 0]  # (n,)
            if depth == settings.subdivisions + 1:
                if progress is not None:
                    progress(n)
                return star_rot, shifts[star], upper
            below = lower <= upper[owner]
            below[star] = True  # the bound's own candidate, whatever the rounding of a full-band level
            keep = torch.nonzero(below).squeeze(1)
            keep = _lowest_per_owner(keep, owner, lower, settings.max_candidates)
            owner, rot_index, shifts = owner[keep], rot_index[keep], shifts[keep]
            # subdivide: 8 rotations on the next grid x 4 translations at half the spacing
            children = so3_children(rot_index, level)  # (M, 8)
            level += 1
            spacing /= 2
            quarter = torch.tensor([[-1, -1], [1, -1], [-1, 1], [1, 1]], device=device) * (spacing / 2)
            child_shifts = shifts[:, None, :] + quarter  # (M, 4, 2)
            lower = self._losses(lattice, images, ctf, owner, so3_grid(level, children, device=device),
                                 child_shifts, band_pixels(self.coords, limits[depth]))  # (M, 8, 4)
            owner = owner[:, None].expand(-1, 32).flatten()
            rot_index = children[:, :, None].expand(-1, -1, 4).flatten()
            shifts = child_shifts[:, None].expand(-1, 8, -1, -1).flatten(0, 2)
            lower = lower.flatten()
        raise AssertionError("unreachable")


def _lowest_per_owner(candidates: torch.Tensor, owner: torch.Tensor, values: torch.Tensor, limit: int) -> torch.Tensor:
    """The at most ``limit`` candidates of each owner with the lowest values (indices into the flat arrays)."""
    order = candidates[torch.argsort(values[candidates])]
    order = order[torch.argsort(owner[order], stable=True)]  # by owner, lowest values first
    who = owner[order]
    start = torch.searchsorted(who, who, right=False)
    rank = torch.arange(len(order), device=order.device) - start
    return order[rank < limit]
