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
        constant per image; for tilt pairs, summed over both images).
    tilt_shifts_px : Tensor, shape (N, 2), or None
        For tilt pairs, the tilted image's own shift.
    """

    rotations: torch.Tensor
    shifts_px: torch.Tensor
    errors: torch.Tensor
    tilt_shifts_px: torch.Tensor | None = None


@dataclass
class TiltedViews:
    """The tilted partner of each image: its transforms, CTF, and the stage tilt.

    Attributes
    ----------
    images : Tensor, shape (N, P), complex
        Uncentred, at the same pixels as the untilted images.
    ctf : Tensor, shape (N, P), or None
    tilt : Tensor, shape (3, 3)
        The tilted image's rotation is ``tilt @ R`` when the untilted one's is ``R``.
    """

    images: torch.Tensor
    ctf: torch.Tensor | None
    tilt: torch.Tensor


def _real(x: torch.Tensor) -> torch.Tensor:
    """``[Re, Im]`` along the last axis: complex (..., P) -> real (..., 2P)."""
    return torch.cat([x.real, x.imag], -1)


def band_pixels(coords_px: torch.Tensor, limit: float) -> torch.Tensor:
    """Indices (Q,) of the pixels (P, 2) inside the band ``0 < |k| < limit`` (the origin is the same for every pose)."""
    r = coords_px.norm(dim=-1)
    return torch.nonzero((r > 0) & (r < limit)).squeeze(1)


class _View:
    """One image of each particle in a batch, ready for scoring: ``c X``, ``c^2`` and its rotation offset."""

    def __init__(self, images: torch.Tensor, ctf: torch.Tensor | None, turn: torch.Tensor | None):
        self.weighted = images if ctf is None else images * ctf  # c X: the cross term's image side
        self.ctf2 = None if ctf is None else ctf.square()
        self.turn = turn


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
    amp : bool
        Take the base step's cross terms (most of the search's arithmetic) as a bf16 matrix
        product, 2x faster on a CPU with bf16 units. Its rounding, about 0.4 % of each
        term, is far below the images' noise and only decides which ``K`` poses the rounds
        refine; the rounds stay in fp32.
    """

    def __init__(self, coords_px: torch.Tensor, box: int, settings: SearchSettings | None = None, *,
                 batch_size: int = 32, amp: bool = False):
        self.settings = settings or SearchSettings()
        self.coords = coords_px
        self.box = box
        self.batch_size = batch_size
        self.base_dtype = torch.bfloat16 if amp else coords_px.dtype
        self.base_rotations = so3_grid(self.settings.base_level, device=coords_px.device)

    @torch.no_grad()
    def __call__(self, lattice: ModelLattice, images: torch.Tensor, ctf: torch.Tensor | None = None, *,
                 kmax: float | None = None, tilted: TiltedViews | None = None,
                 progress: Callable[[int], None] | None = None) -> SearchResult:
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
        tilted : TiltedViews, optional
            Tilt pairs: every rotation is scored on both images together (the sum of their
            errors), each image with its own best translation.
        progress : callable, optional
            Called with the number of images done after each batch.

        Returns
        -------
        SearchResult
        """
        limits = self.settings.band_limits(self.box, kmax)
        if lattice.radius_px + 1e-6 < limits[-1]:
            raise ValueError(f"the lattice reaches {lattice.radius_px} px, the search needs {limits[-1]}")
        turns = [None] if tilted is None else [None, tilted.tilt.to(self.base_rotations)]
        shared = lattice.count == 1
        base_band = band_pixels(self.coords, limits[0])
        base = None
        if shared:  # the same slices for every image: as a real matrix, and their power, once per view
            base = []
            for turn in turns:
                slices = lattice.slices(self.base_rotations if turn is None else turn @ self.base_rotations,
                                        self.coords[base_band])  # (R, P)
                base.append((_real(slices).to(self.base_dtype), slices.abs().square()))
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
        views = [(images, ctf)] + ([] if tilted is None else [(tilted.images, tilted.ctf)])
        out: list[list[torch.Tensor]] = [[] for _ in range(2 + len(views))]
        for start in range(0, len(images), self.batch_size):
            stop = min(start + self.batch_size, len(images))
            batch = [_View(x[start:stop], None if c is None else c[start:stop], turn)
                     for (x, c), turn in zip(views, turns)]
            own = lattice if shared else lattice.subset(start, stop)
            rotations, errors, shifts = self._search_batch(own, base, base_band, batch, limits, grid, base_phase,
                                                           steering)
            for part, value in zip(out, [rotations, errors, *shifts]):
                part.append(value)
            if progress is not None:
                progress(stop - start)
        rotations, errors, shifts, *tilt_shifts = (torch.cat(part) for part in out)
        return SearchResult(rotations, shifts, errors, tilt_shifts[0] if tilt_shifts else None)

    def _search_batch(self, lattice: ModelLattice, base: list[tuple[torch.Tensor, torch.Tensor]] | None,
                      base_band: torch.Tensor, views: list[_View], limits: list[float], grid: torch.Tensor,
                      base_phase: torch.Tensor,
                      steering: dict) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Best rotation (B, 3, 3), its error (B,) and each view's best shift (B, 2) for a batch."""
        settings = self.settings
        # base step: every rotation of the grid against every translation, one matrix product per view
        best_err, best_t = 0, []
        for v, view in enumerate(views):
            err, t = self._base_errors(lattice, None if base is None else base[v], base_band, view, grid, base_phase)
            best_err = best_err + err
            best_t.append(t)
        keep = min(settings.keep, best_err.shape[1])
        err, rot_index = best_err.topk(keep, dim=1, largest=False)  # (B, K)
        centres = [grid[t.gather(1, rot_index)] for t in best_t]  # per view (B, K, 2)
        level = settings.base_level
        for m in range(1, len(limits)):
            band, offsets, steer = steering[m]
            children = so3_children(rot_index, level)  # (B, K, 8)
            level += 1
            rotations = so3_grid(level, children.flatten(1), device=self.coords.device)  # (B, 8K, 3, 3)
            total, candidates = 0, []
            for view, centre in zip(views, centres):
                errors, shifts = self._round_errors(lattice, rotations, view, centre, band, offsets, steer)
                total = total + errors
                candidates.append(shifts)
            keep_next = min(settings.keep, keep * 8)
            err, pick = total.topk(keep_next, dim=1, largest=False)  # (B, K)
            rot_index = children.flatten(1).gather(1, pick)
            centres = [c.gather(1, pick[..., None].expand(-1, -1, 2)) for c in candidates]
            keep = keep_next
        rotations = so3_grid(level, rot_index[:, 0], device=self.coords.device)
        return rotations, err[:, 0], [c[:, 0] for c in centres]

    def _base_errors(self, lattice: ModelLattice, base: tuple[torch.Tensor, torch.Tensor] | None,
                     band: torch.Tensor, view: _View, grid: torch.Tensor,
                     phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each base rotation's error at its best translation (B, R), and that translation's index (B, R)."""
        n = len(view.weighted)
        translated = _real(view.weighted[:, None, band] * phase).to(self.base_dtype)  # (B, T2, 2P)
        ctf2 = None if view.ctf2 is None else view.ctf2[:, band]
        if base is not None:  # one model for the batch
            base_real, power = base  # (R, 2P), (R, P)
            cross = (base_real @ translated.flatten(0, 1).T).view(-1, n, len(grid))  # (R, B, T2)
            best_cross, best_t = cross.max(-1)  # (R, B)
            best_cross, best_t = best_cross.T, best_t.T  # (B, R)
            norms = (ctf2 @ power.T) if ctf2 is not None else power.sum(-1).expand(n, -1)
        else:
            rotations = self.base_rotations if view.turn is None else view.turn @ self.base_rotations
            slices = lattice.slices(rotations[None].expand(n, -1, -1, -1), self.coords[band])  # (B, R, P)
            cross = _real(slices).to(self.base_dtype) @ translated.transpose(1, 2)  # (B, R, T2)
            best_cross, best_t = cross.max(-1)  # (B, R)
            power = slices.abs().square()
            norms = torch.einsum("bp,brp->br", ctf2, power) if ctf2 is not None else power.sum(-1)
        return norms - 2 * best_cross.float(), best_t  # |c S|^2 - 2 Re <c S, X_t> at each rotation's best t

    def _round_errors(self, lattice: ModelLattice, rotations: torch.Tensor, view: _View, centres: torch.Tensor,
                      band: torch.Tensor, offsets: torch.Tensor,
                      steer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Errors (B, 8K) of the children ``rotations`` (B, 8K, 3, 3), each at its best shift (B, 8K, 2).

        The translations searched are the local ``offsets`` around the kept translation of
        each child's parent (``centres``, (B, K, 2)).
        """
        n, keep = centres.shape[:2]
        coords = self.coords[band]
        if view.turn is not None:
            rotations = view.turn @ rotations
        slices = lattice.slices(rotations if lattice.count > 1 else rotations.flatten(0, 1), coords)
        slices = slices.reshape(n, keep, 8, len(band))  # (B, K, 8, P)
        # conj(c X exp(-2 pi i k.t*)) for each kept translation t*, then local offsets dt by one product
        anchored = (view.weighted[:, None, band] * shift_phase_at(coords, centres, self.box)).conj()  # (B, K, P)
        cross = _real(slices * anchored[:, :, None, :]) @ steer  # (B, K, 8, T2)
        best_cross, best_t = cross.reshape(n, keep * 8, -1).max(-1)  # (B, 8K)
        power = slices.abs().square()
        norms = (torch.einsum("bp,bkcp->bkc", view.ctf2[:, band], power) if view.ctf2 is not None
                 else power.sum(-1))
        parent = torch.arange(keep * 8, device=best_t.device) // 8
        return norms.reshape(n, keep * 8) - 2 * best_cross, centres[:, parent] + offsets[best_t]
