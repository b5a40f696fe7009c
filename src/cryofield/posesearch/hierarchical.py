"""Hierarchical search over SO(3) x R^2 with frequency marching (the seed's Algorithm 2).

For each image: an exhaustive search over the base SO(3) grid and a translation grid,
comparing the image and the model's slices band-limited to ``|k| < kmin``; then ``M``
rounds, each keeping the ``K`` best rotations (with the best translation of each),
taking their 8 children on the next grid, searching a translation grid of half the extent
and half the spacing around each kept translation, with the band limit raised linearly to
``kmax``.

The squared error of every (rotation, translation) pair of a batch is
``|c S|^2 + |X|^2 - 2 Re <c S, X_t>`` (``c`` the CTF, ``S`` the slice, ``X_t`` the image
translated by ``t``): the norms are cheap, ``|X_t|^2`` does not depend on the pose, and
the cross terms of all pairs are one real matrix product per round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cryofield.imaging import shift_phase_at
from cryofield.posesearch.lattice import ModelLattice
from cryofield.so3 import grid_resolution_deg, shift_grid, so3_children, so3_grid


@dataclass(frozen=True)
class SearchSettings:
    """The search's grids and band limits (defaults: the seed's sweep, table 5.5).

    Attributes
    ----------
    base_level : int
        SO(3) grid level of the exhaustive step (2: 4,608 rotations, 15 degrees).
    keep : int
        ``K``, rotations kept per round.
    rounds : int
        ``M``, refinement rounds (each halves both grids' spacing).
    kmin, kmax : float
        Band limits of the base step and of the last round, cycles per box (``kmax`` is
        capped at ``D / 2``).
    n_shifts : int
        ``T``: translation grids are ``T x T``.
    shift_extent_px : float or None
        Half-width of the base translation grid in pixels (default ``20 * D / 128``).
    """

    base_level: int = 2
    keep: int = 8
    rounds: int = 4
    kmin: float = 12.0
    kmax: float = 48.0
    n_shifts: int = 14
    shift_extent_px: float | None = None

    def extent(self, box: int) -> float:
        """Half-width of the base translation grid for images of size ``box``, pixels."""
        return self.shift_extent_px if self.shift_extent_px is not None else 20.0 * box / 128

    def band_limits(self, box: int, kmax: float | None = None) -> list[float]:
        """Band limit of the base step and of each round (linear from ``kmin`` to ``kmax``), cycles per box."""
        top = min(self.kmax if kmax is None else kmax, box / 2)
        low = min(self.kmin, top)
        if self.rounds == 0:
            return [low]
        return [low + (top - low) * m / self.rounds for m in range(self.rounds + 1)]

    def final_resolution(self, box: int) -> tuple[float, float]:
        """Spacing of the last rotation grid (degrees) and translation grid (pixels)."""
        return (grid_resolution_deg(self.base_level + self.rounds),
                2 * self.extent(box) / self.n_shifts / 2**self.rounds)


@dataclass
class SearchResult:
    """The best pose of each image.

    Attributes
    ----------
    rotations : Tensor, shape (N, 3, 3)
    shifts_px : Tensor, shape (N, 2)
        ``(x, y)`` in pixels, RELION's sign: the image is centred by translating it by
        ``+shift`` (its centre sits at ``-shift``).
    errors : Tensor, shape (N,)
        Squared error at the best pose in the last round's band, minus ``|X|^2`` (up to a
        constant per image).
    """

    rotations: torch.Tensor
    shifts_px: torch.Tensor
    errors: torch.Tensor


def _real(x: torch.Tensor) -> torch.Tensor:
    """``[Re, Im]`` along the last axis: complex (..., P) -> real (..., 2P)."""
    return torch.cat([x.real, x.imag], -1)


def band_pixels(coords_px: torch.Tensor, limit: float) -> torch.Tensor:
    """Indices (Q,) of the pixels (P, 2) inside the band ``0 < |k| < limit`` (the origin is the same for every pose)."""
    r = coords_px.norm(dim=-1)
    return torch.nonzero((r > 0) & (r < limit)).squeeze(1)


class PoseSearch:
    """Search the poses of particle images against a model lattice.

    Parameters
    ----------
    coords_px : Tensor, shape (P, 2)
        The images' pixels ``(kx, ky)`` in cycles per box (the half lattice of training data).
    box : int
    settings : SearchSettings
    batch_size : int
        Images scored at a time (memory grows as ``batch * T^2 * 4,608`` floats in the base step).
    """

    def __init__(self, coords_px: torch.Tensor, box: int, settings: SearchSettings | None = None, *,
                 batch_size: int = 32):
        self.settings = settings or SearchSettings()
        self.coords = coords_px
        self.box = box
        self.batch_size = batch_size
        self.base_rotations = so3_grid(self.settings.base_level, device=coords_px.device)

    @torch.no_grad()
    def __call__(self, lattice: ModelLattice, images: torch.Tensor, ctf: torch.Tensor | None = None, *,
                 kmax: float | None = None, progress: Callable[[int], None] | None = None) -> SearchResult:
        """Best pose of each image.

        Parameters
        ----------
        lattice : ModelLattice
            One lattice (homogeneous) or one per image (``N`` lattices).
        images : Tensor, shape (N, P), complex
            Uncentred transforms at ``coords_px``.
        ctf : Tensor, shape (N, P), optional
        kmax : float, optional
            Band limit of the last round (default the settings'; lower early in training).
        progress : callable, optional
            Called with the number of images done after each batch.

        Returns
        -------
        SearchResult
        """
        limits = self.settings.band_limits(self.box, kmax)
        if lattice.radius_px + 1e-6 < limits[-1]:
            raise ValueError(f"the lattice reaches {lattice.radius_px} px, the search needs {limits[-1]}")
        shared = lattice.count == 1
        base_band = band_pixels(self.coords, limits[0])
        base = None
        if shared:  # the same slices for every image: as a real matrix, and their power, once
            slices = lattice.slices(self.base_rotations, self.coords[base_band])  # (R, P)
            base = _real(slices), slices.abs().square()
        extent = self.settings.extent(self.box)
        grid = shift_grid(extent, self.settings.n_shifts, dtype=self.coords.dtype, device=self.coords.device)
        base_phase = shift_phase_at(self.coords[base_band], grid, self.box)  # (T2, P): the image translated by t
        steering = {}  # per round: its pixels, the local offsets dt and exp(+2 pi i k.dt) as a real (2P, T2) matrix
        for m, limit in enumerate(limits[1:], start=1):
            offsets = shift_grid(extent / 2**m, self.settings.n_shifts, dtype=self.coords.dtype,
                                 device=self.coords.device)
            band = band_pixels(self.coords, limit)
            steer = shift_phase_at(self.coords[band], offsets, self.box, sign=1.0).T  # (P, T2)
            # Re(A e) = [Re A, Im A] . [Re e; -Im e]
            steering[m] = band, offsets, torch.cat([steer.real, -steer.imag])
        out_rot, out_shift, out_err = [], [], []
        for start in range(0, len(images), self.batch_size):
            stop = min(start + self.batch_size, len(images))
            x = images[start:stop]
            c = None if ctf is None else ctf[start:stop]
            own = lattice if shared else lattice.subset(start, stop)
            rotations, shifts, errors = self._search_batch(own, base, base_band, x, c, limits, grid,
                                                           base_phase, steering)
            out_rot.append(rotations)
            out_shift.append(shifts)
            out_err.append(errors)
            if progress is not None:
                progress(stop - start)
        return SearchResult(torch.cat(out_rot), torch.cat(out_shift), torch.cat(out_err))

    def _search_batch(self, lattice: ModelLattice, base: tuple[torch.Tensor, torch.Tensor] | None,
                      base_band: torch.Tensor,
                      images: torch.Tensor, ctf: torch.Tensor | None, limits: list[float], grid: torch.Tensor,
                      base_phase: torch.Tensor,
                      steering: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        settings, box = self.settings, self.box
        n = len(images)
        weighted = images if ctf is None else images * ctf  # c X: the cross term's image side
        ctf2 = None if ctf is None else ctf.square()

        # base step: every rotation of the grid against every translation, one matrix product
        coords = self.coords[base_band]
        translated = _real(weighted[:, None, base_band] * base_phase)  # (B, T2, 2P)
        if base is not None:  # one model for the batch
            base_real, power = base  # (R, 2P), (R, P)
            cross = (base_real @ translated.flatten(0, 1).T).view(-1, n, len(grid))  # (R, B, T2)
            best_cross, best_t = cross.max(-1)  # (R, B)
            best_cross, best_t = best_cross.T, best_t.T  # (B, R)
            norms = (ctf2[:, base_band] @ power.T) if ctf2 is not None else power.sum(-1).expand(n, -1)
        else:
            base_slices = lattice.slices(self.base_rotations[None].expand(n, -1, -1, -1), coords)  # (B, R, P)
            cross = _real(base_slices) @ translated.transpose(1, 2)  # (B, R, T2)
            best_cross, best_t = cross.max(-1)  # (B, R)
            power = base_slices.abs().square()
            norms = (torch.einsum("bp,brp->br", ctf2[:, base_band], power) if ctf2 is not None
                     else power.sum(-1))
        best_err = norms - 2 * best_cross  # |c S|^2 - 2 Re <c S, X_t> at each rotation's best t
        keep = min(settings.keep, best_err.shape[1])
        err, rot_index = best_err.topk(keep, dim=1, largest=False)  # (B, K)
        centres = grid[best_t.gather(1, rot_index)]  # (B, K, 2)
        level = settings.base_level

        for m in range(1, len(limits)):
            band, offsets, steer = steering[m]
            coords = self.coords[band]
            children = so3_children(rot_index, level)  # (B, K, 8)
            level += 1
            rotations = so3_grid(level, children.flatten(1), device=coords.device)  # (B, 8K, 3, 3)
            slices = lattice.slices(rotations if lattice.count > 1 else rotations.flatten(0, 1),
                                    coords)
            slices = slices.reshape(n, keep, 8, len(band))  # (B, K, 8, P)
            # conj(c X exp(-2 pi i k.t*)) for each kept translation t*, then local offsets dt by one product
            anchored = (weighted[:, None, band] * shift_phase_at(coords, centres, box)).conj()  # (B, K, P)
            product = slices * anchored[:, :, None, :]  # (B, K, 8, P)
            cross = _real(product) @ steer  # (B, K, 8, T2)
            best_cross, best_t = cross.reshape(n, keep * 8, -1).max(-1)  # (B, 8K)
            power = slices.abs().square()
            norms = (torch.einsum("bp,bkcp->bkc", ctf2[:, band], power) if ctf2 is not None
                     else power.sum(-1))
            best_err = norms.reshape(n, keep * 8) - 2 * best_cross
            parent = torch.arange(keep * 8, device=best_t.device) // 8
            candidate_shifts = centres[:, parent] + offsets[best_t]  # (B, 8K, 2): each rotation's best
            keep_next = min(settings.keep, keep * 8)
            err, pick = best_err.topk(keep_next, dim=1, largest=False)  # (B, K)
            rot_index = children.flatten(1).gather(1, pick)
            centres = candidate_shifts.gather(1, pick[..., None].expand(-1, -1, 2))
            keep = keep_next
        rotations = so3_grid(level, rot_index[:, 0], device=self.coords.device)
        return rotations, centres[:, 0], err[:, 0]
