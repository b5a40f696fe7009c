"""Cryofold's density model: Gaussian pseudo-atoms at coarse-grained residue centres (the seed's chapter 7).

Each centre ``i`` is an isotropic Gaussian of a shared width ``sigma`` (A) and amplitude
``a0 Z_i`` (``Z_i`` the electrons of its fragment, ``a0`` one learned constant):

    V(r) = sum_i a0 Z_i (2 pi sigma^2)^(-3/2) exp(-|r - mu_i|^2 / (2 sigma^2))

Its Fourier transform (``F(k) = integral V(r) exp(-2 pi i k.r) dr``, ``k`` in cycles per A)
is exact and cheap, the product of each Gaussian's transform and its shift's phase:

    F(k) = exp(-2 pi^2 sigma^2 |k|^2) sum_i a0 Z_i exp(-2 pi i k.mu_i)

(the seed's equation 7.2 prints the envelope as ``exp(-pi^2 k^2 sigma^2 / 2)`` and the
normalisation as ``(2 pi sigma)^(-3/2)``; the forms above are the exact transform pair, which
the tests check against the real-space sum rendered and transformed). With a latent ``z``
a residual MLP moves every centre: ``mu_i(z) = mu_i + D(z)_i``.

Centres are learned in box units (1 = the box edge, ``D * pixel size`` A), the scale at
which the seed's Adam step of 1e-4 moves a centre a useful distance per epoch; the width and
amplitude are learned as logarithms (positive, and scale-free steps).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from cryofield.io.atoms import CoarseModel
from cryofield.nn.mlp import ResidualMLP


class GaussianResidues(nn.Module):
    """A coarse-grained atomic model as a volume: ``F(k, z)`` at 3D frequencies, plus its restraints.

    Satisfies the volume-model protocol of :mod:`cryofield.imaging` (coordinates as box
    fractions), so it trains and renders wherever a neural decoder does.

    Parameters
    ----------
    coarse : CoarseModel
        Centres (A, in the structure's frame), electrons, bonds and side-chain pairs.
    box : int
        Image size ``D``.
    pixel_size_angstrom : float
    center_angstrom : array, shape (3,)
        The point of the structure's frame that sits at the box centre (voxel ``D // 2``).
    zdim : int
        Latent dimension (0: one structure).
    hidden, layers : int
        The offset decoder's width and residual layers (``zdim > 0``).
    width_angstrom, a0 : float
        Initial Gaussian width (A) and amplitude per electron.
    bond_length_angstrom, bond_strength : float
        Harmonic bonds between consecutive backbone centres: ``k (d - l)^2``.
    bonds : bool
        Keep the bond restraints (``False`` to ablate them).
    residual : {"post", "pre"}
        The offset decoder's residual blocks (:class:`ResidualMLP`).
    """

    def __init__(self, coarse: CoarseModel, box: int, pixel_size_angstrom: float, center_angstrom: np.ndarray, *,
                 zdim: int = 0, hidden: int = 256, layers: int = 3, width_angstrom: float = 3.71, a0: float = 0.1,
                 bond_length_angstrom: float = 3.8, bond_strength: float = 0.1, bonds: bool = True,
                 residual: str = "post"):
        super().__init__()
        self.box, self.pixel_size = box, float(pixel_size_angstrom)
        self.extent = box * self.pixel_size  # A per box unit
        centres = torch.as_tensor((coarse.centres_angstrom - np.asarray(center_angstrom)) / self.extent,
                                  dtype=torch.float32)
        self.centres = nn.Parameter(centres.clone())
        self.log_width = nn.Parameter(torch.tensor(math.log(width_angstrom)))
        self.log_a0 = nn.Parameter(torch.tensor(math.log(a0)))
        self.register_buffer("electrons", torch.as_tensor(coarse.electrons, dtype=torch.float32))
        self.register_buffer("bonds", torch.as_tensor(coarse.bonds if bonds else np.zeros((0, 2)), dtype=torch.long))
        self.register_buffer("side_pairs", torch.as_tensor(coarse.side_pairs, dtype=torch.long))
        self.side_reach = float(coarse.side_reach_angstrom)
        self.bond_length, self.bond_strength = float(bond_length_angstrom), float(bond_strength)
        self.zdim = zdim
        self.offsets = None
        if zdim:
            self.offsets = ResidualMLP(zdim, hidden, layers, 3 * len(centres), residual=residual)
            nn.init.zeros_(self.offsets.last.weight)  # start at the reference for every z
            nn.init.zeros_(self.offsets.last.bias)

    @property
    def width_angstrom(self) -> torch.Tensor:
        """The Gaussians' standard deviation, A."""
        return self.log_width.exp()

    @property
    def a0(self) -> torch.Tensor:
        """Amplitude per electron (in the data's normalised units)."""
        return self.log_a0.exp()

    def positions(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """Centres in box units from the box centre: (M, 3), or (B, M, 3) for latents (B, zdim)."""
        if z is None or self.offsets is None:
            return self.centres
        with torch.autocast(z.device.type, enabled=False):
            moved = self.offsets(z.float()).view(len(z), -1, 3)
        return self.centres + moved

    def positions_angstrom(self, z: torch.Tensor | None = None, center_angstrom: np.ndarray | None = None,
                           ) -> torch.Tensor:
        """Centres in A: from the box centre, or in the structure's frame given its ``center_angstrom``."""
        out = self.positions(z) * self.extent
        return out if center_angstrom is None else out + torch.as_tensor(center_angstrom, dtype=out.dtype,
                                                                          device=out.device)

    def forward(self, coords: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """``F`` at coordinates (B, P, 3) or (P, 3) in box fractions (cycles per pixel), complex (B, P) or (P,).

        Evaluated in fp32 whatever the autocast: phases reach ``pi D`` radians, beyond what
        bf16 resolves.
        """
        with torch.autocast(coords.device.type, enabled=False):
            coords = coords.float()
            mu = self.positions(z)  # (M, 3) or (B, M, 3)
            # k.mu in cycles: coords * D cycles per box times box units
            turns = (coords * self.box) @ mu.transpose(-1, -2)  # (..., P, M)
            angle = (2 * math.pi) * turns
            weights = self.a0 * self.electrons  # (M,)
            k2 = coords.square().sum(-1) / self.pixel_size**2  # |k|^2 in cycles^2 / A^2
            envelope = torch.exp(-2 * math.pi**2 * self.width_angstrom.square() * k2)
            real = torch.cos(angle) @ weights
            imag = -(torch.sin(angle) @ weights)
            return torch.complex(envelope * real, envelope * imag)

    def central_slices(self, coords_px: torch.Tensor, rotations: torch.Tensor,
                       z: torch.Tensor | None = None) -> torch.Tensor:
        """Central slices at 2D lattice pixels, the same values as ``forward`` at ``R^T (kx, ky, 0)``, faster.

        A slice only needs each centre's projected position ``(X_i, Y_i) = (R mu_i)_{x,y}``,
        and on a lattice the phase separates: ``exp(-2 pi i (kx X + ky Y)) = exp(-2 pi i kx X)
        exp(-2 pi i ky Y)``. The sum over centres is then one complex matrix product per image
        over the lattice's rows and columns, and only ``2 D M`` phases are computed instead of
        ``P M``.

        Parameters
        ----------
        coords_px : Tensor, shape (P, 2)
            Integer pixel frequencies ``(kx, ky)``, cycles per box, within ``-D/2 .. D/2``.
        rotations : Tensor, shape (B, 3, 3)
        z : Tensor, shape (B, zdim), optional

        Returns
        -------
        Tensor, shape (B, P), complex64
        """
        with torch.autocast(coords_px.device.type, enabled=False):
            mu = self.positions(z)  # (M, 3) or (B, M, 3), box units
            projected = torch.matmul(mu, rotations.float().transpose(-1, -2))[..., :2]  # (B, M, 2): (R mu)_xy
            kx_values, ix, ky_values, iy, mirror = self._rows_and_columns(coords_px)
            weights = (self.a0 * self.electrons).to(torch.complex64)
            ex = torch.polar(torch.ones((), device=mu.device), -2 * math.pi * kx_values.float()[None, :, None]
                             * projected[:, None, :, 0])  # (B, Kx, M)
            ey = torch.polar(torch.ones((), device=mu.device), -2 * math.pi * ky_values.float()[None, :, None]
                             * projected[:, None, :, 1])  # (B, Ky, M)
            grid = (ey * weights) @ ex.transpose(1, 2)  # (B, Ky, Kx)
            k2 = (coords_px.float() / (self.box * self.pixel_size)).square().sum(-1)  # cycles^2 / A^2
            envelope = torch.exp(-2 * math.pi**2 * self.width_angstrom.square() * k2)
            values = grid[:, iy, ix]
            values = torch.complex(values.real, torch.where(mirror, -values.imag, values.imag))  # F(-k) = conj F(k)
            return values * envelope

    def _rows_and_columns(self, coords_px: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rows and columns of the slice's grid, and where each pixel reads it.

        The grid holds ``kx = 0 .. D/2`` and ``ky = -D/2 .. D/2``, fixed by the box (nothing
        waits for the device, and a step captured as a CUDA graph holds no tensor that a
        later call could free). A pixel with ``kx < 0`` reads its Friedel mate ``-k``, to be
        conjugated (``mirror``): the density is real.

        Returns
        -------
        kx_values, ix, ky_values, iy, mirror : Tensor
            (D/2 + 1,), (P,), (D + 1,) or so, (P,), (P,) bool.
        """
        half = self.box // 2
        k = coords_px.round().long().clamp(-half, half)  # (P, 2)
        mirror = k[:, 0] < 0
        k = torch.where(mirror[:, None], -k, k)
        device = coords_px.device
        return (torch.arange(0, half + 1, device=device), k[:, 0], torch.arange(-half, half + 1, device=device),
                k[:, 1] + half, mirror)

    def restraint(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """Restraint energy (scalar; the mean over latents ``z`` (B, zdim)), in strength x A^2.

        Harmonic bonds ``k (|mu_i - mu_j| - l)^2`` between consecutive backbone centres, and
        one-sided restraints ``k max(|mu_i - mu_s| - reach, 0)^2`` keeping each side-chain
        centre within the reference's longest C-alpha to side-chain distance.
        """
        x = self.positions_angstrom(z)
        if x.dim() == 2:
            x = x[None]
        energy = x.new_zeros(len(x))
        if len(self.bonds):
            d = (x[:, self.bonds[:, 0]] - x[:, self.bonds[:, 1]]).norm(dim=-1)
            energy = energy + self.bond_strength * (d - self.bond_length).square().sum(-1)
        if len(self.side_pairs):
            d = (x[:, self.side_pairs[:, 0]] - x[:, self.side_pairs[:, 1]]).norm(dim=-1)
            energy = energy + self.bond_strength * torch.relu(d - self.side_reach).square().sum(-1)
        return energy.mean()
