"""A volume model rendered once on an oversampled 3D Fourier lattice, and slices taken from it.

Pose search compares each image with thousands of slices of the model. Evaluating a
neural network at every pixel of every slice would dominate the cost; instead the model is
evaluated once on a Cartesian lattice inside the search's band limit (once per Friedel
pair) and every slice, in-plane rotations included, is interpolated from that lattice.
Interpolation is accurate because the model's transform is smooth (the particle is small
against the box) and oversampling the lattice makes it more so; the noisy images are never
interpolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cryofield.fourier import centered_coords, sample_trilinear
from cryofield.imaging import VolumeModel, evaluate_model


@dataclass
class ModelLattice:
    """A model's transform sampled on a centred cube of ``L^3`` points, every ``1 / oversample`` px.

    Attributes
    ----------
    channels : Tensor, shape (N, 2, L, L, L), float32
        Real and imaginary parts (the layout ``grid_sample`` takes), array axes ``[z, y, x]``;
        point ``j`` is the frequency ``(j - L//2) / oversample`` in cycles per box. ``N`` is 1
        for a homogeneous model, one lattice per latent otherwise. Zero beyond ``radius_px``
        (plus an interpolation margin).
    oversample : float
    radius_px : float
        The band limit it was rendered for, in cycles per box (Fourier pixels).
    """

    channels: torch.Tensor
    oversample: float
    radius_px: float

    @property
    def size(self) -> int:
        """``L``."""
        return self.channels.shape[-1]

    @property
    def count(self) -> int:
        """``N``, the number of lattices."""
        return self.channels.shape[0]

    def subset(self, start: int, stop: int) -> ModelLattice:
        """Lattices ``start:stop`` (a view)."""
        return ModelLattice(self.channels[start:stop], self.oversample, self.radius_px)

    def slices(self, rotations: torch.Tensor, coords_px: torch.Tensor) -> torch.Tensor:
        """Central-slice values at 2D pixels for given rotations, by trilinear interpolation.

        Parameters
        ----------
        rotations : Tensor, shape (N, R, 3, 3) or (R, 3, 3)
            ``R`` per slice; with a leading ``N`` each lattice gets its own rotations (a 2-D
            input with one lattice).
        coords_px : Tensor, shape (P, 2)
            ``(kx, ky)`` of the pixels, cycles per box, inside ``radius_px``.

        Returns
        -------
        Tensor, shape (N, R, P) or (R, P), complex64
            ``F(R^T (kx, ky, 0))``.
        """
        squeeze = rotations.dim() == 3
        if squeeze:
            rotations = rotations[None]
        k2 = coords_px.to(rotations.dtype)
        # grid_sample's normalised coordinates (align_corners=True) of R^T k, scaled into the rotations:
        # index = s (R^T k) + L//2, grid = index * 2 / (L - 1) - 1
        scale = self.oversample * 2.0 / (self.size - 1)
        offset = (self.size // 2) * 2.0 / (self.size - 1) - 1.0
        grid = torch.matmul(k2, rotations[..., :2, :] * scale).add_(offset)  # (N, R, P, 3) as (x, y, z)
        out = sample_trilinear(self.channels, grid.float())  # (N, 2, R, P)
        out = torch.complex(out[:, 0], out[:, 1])
        return out[0] if squeeze else out


@torch.no_grad()
def render_lattice(model: VolumeModel, box: int, radius_px: float, *, oversample: float = 2.0,
                   z: torch.Tensor | None = None, amp: bool = False, chunk: int = 16384,
                   device: torch.device | str | None = None) -> ModelLattice:
    """Evaluate a model on a lattice covering the ball ``|k| <= radius_px``, once per Friedel pair.

    Parameters
    ----------
    model : VolumeModel
        Takes box-fraction coordinates ``k / box``.
    box : int
        The images' size ``D``.
    radius_px : float
        Band limit in cycles per box; the lattice reaches one pixel further so that
        interpolation at the limit has its neighbours.
    oversample : float
        Lattice points per Fourier pixel along each axis (2 halves the spacing: more
        accurate interpolation, 8x the evaluations).
    z : Tensor, shape (N, zdim), optional
        One lattice per latent.
    amp : bool
        Evaluate in reduced precision (bf16 on a CPU).
    chunk : int
        Points per latent evaluated at a time.
    device : torch.device, optional
        Where to build the lattice (default: the latents', or the CPU).

    Returns
    -------
    ModelLattice
    """
    device = torch.device(device) if device is not None else (z.device if z is not None else torch.device("cpu"))
    reach = radius_px + 1.0
    half_width = math.ceil(reach * oversample)
    size = 2 * half_width + 1
    axis = centered_coords(size, device=device) / oversample  # cycles per box; size odd: symmetric
    kz, ky, kx = torch.meshgrid(axis, axis, axis, indexing="ij")
    k = torch.stack([kx, ky, kz], -1).reshape(-1, 3)
    inside = k.norm(dim=-1) <= reach
    # one of each Friedel pair: on a symmetric odd lattice the mate of flat index i is size^3 - 1 - i
    flat = torch.arange(size**3, device=device)
    own = flat[inside & (flat <= size**3 - 1 - flat)]
    coords = k[own] / box
    count = 1 if z is None else len(z)
    values = evaluate_model(model, coords, z, chunk=chunk, amp=amp)  # (N, P)
    channels = torch.zeros((count, 2, size**3), device=device)
    channels[:, 0, size**3 - 1 - own] = values.real  # the mates -k: conjugates
    channels[:, 1, size**3 - 1 - own] = -values.imag
    channels[:, 0, own] = values.real  # the origin keeps its own value
    channels[:, 1, own] = values.imag
    return ModelLattice(channels.reshape(count, 2, size, size, size), float(oversample), float(radius_px))
