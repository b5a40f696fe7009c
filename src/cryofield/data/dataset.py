"""Particle images prepared once for training: windowed, transformed, centred, normalised.

Each image keeps only the Fourier coefficients that training uses: the half-lattice
pixels inside the circle ``|k| < D/2`` (:func:`cryofield.imaging.half_lattice_mask`); the
other half follows from Friedel symmetry. With known shifts the images are centred here,
once, rather than at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cryofield.fourier import fft_center, lattice, soft_ball_mask
from cryofield.imaging import ctf_on_lattice, half_lattice_mask, shift_phase
from cryofield.io import ParticleTable


@dataclass
class PreparedParticles:
    """Training data in memory.

    Attributes
    ----------
    images : Tensor, shape (N, P), complex64
        Centred transforms at the ``P`` half-lattice pixels, divided by ``scale``.
    coords : Tensor, shape (P, 2)
        ``(kx, ky)`` of those pixels in cycles per box.
    rotations : Tensor, shape (N, 3, 3)
    ctf : Tensor, shape (N, P) or None
        CTF at those pixels.
    scale : float
        The normalisation divided out (standard deviation of the raw coefficients).
    box : int
    pixel_size_angstrom : float
    """

    images: torch.Tensor
    coords: torch.Tensor
    rotations: torch.Tensor
    ctf: torch.Tensor | None
    scale: float
    box: int
    pixel_size_angstrom: float

    def __len__(self) -> int:
        return len(self.images)


def prepare_particles(table: ParticleTable, *, invert: bool = True, window_r: float = 0.85,
                      scale: float | None = None, chunk_size: int = 1024,
                      progress: Callable[[int], None] | None = None) -> PreparedParticles:
    """Read, window, transform, centre and normalise every image of ``table``.

    Parameters
    ----------
    table : ParticleTable
        With rotations; shifts and CTF used where present.
    invert : bool
        Flip the data's contrast so that the density comes out positive (default).
    window_r : float
        Soft real-space circular window: 1 inside ``window_r`` of the box radius, falling to
        0 at the edge (0 to switch off).
    scale : float, optional
        Normalisation to divide by (a trained model's); default: the RMS of the first 2,000
        images' coefficients.
    chunk_size : int
    progress : callable, optional

    Returns
    -------
    PreparedParticles
    """
    size = table.check_images()
    rotations = torch.from_numpy(table.rotations).float()
    shifts = torch.from_numpy(table.shifts_px).float()
    half = half_lattice_mask(size)
    window = soft_ball_mask(size, window_r * size / 2, (1 - window_r) * size / 2) if window_r else None
    sign = -1.0 if invert else 1.0
    images = torch.empty((table.n, int(half.sum())), dtype=torch.complex64)
    for indices, chunk in table.iter_chunks(chunk_size):
        x = torch.from_numpy(chunk)
        if window is not None:
            x = x * window
        ft = fft_center(x) * shift_phase(size, shifts[indices])
        images[indices] = (sign * ft[:, half]).to(torch.complex64)
        if progress is not None:
            progress(len(indices))
    if scale is None:
        scale = float(images[: min(len(images), 2000)].abs().pow(2).mean().sqrt())
    images /= scale
    ctf = None
    if table.ctf is not None:
        params = torch.from_numpy(table.ctf_array()).float()
        ctf = torch.cat([ctf_on_lattice(params[i:i + chunk_size], size)[:, half]
                         for i in range(0, table.n, chunk_size)])
    coords = lattice(size, 2, normalized=False)[half]
    return PreparedParticles(images, coords, rotations, ctf, scale, size, float(table.pixel_size_angstrom.mean()))


def encoder_input(images: torch.Tensor, ctf: torch.Tensor | None) -> torch.Tensor:
    """The VAE encoder's view of a batch: phase-flipped half-lattice coefficients, real and imaginary.

    Parameters
    ----------
    images : Tensor, shape (B, P), complex
    ctf : Tensor, shape (B, P) or None

    Returns
    -------
    Tensor, shape (B, 2P), float32
    """
    x = images if ctf is None else images * torch.sign(ctf)
    return torch.cat([x.real, x.imag], -1).float()
