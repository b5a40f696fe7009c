"""The forward model: the image a volume model predicts at given poses, CTF and shifts, at chosen pixels.

Every consumer that compares a model with images calls :func:`predict_images` (or the
module :class:`ImageFormation`, which distributed training wraps): the training step,
per-image losses, latent refinement, pose refinement, ab initio's gradient probe and
Cryofold's amplitude fit. A predicted image, at half-lattice pixels ``k`` (cycles per box),
is

    CTF(k) * F(R^T (kx, ky, 0) / D, z) * exp(+2 pi i k . t / D)

for rotation ``R`` (volume frame to image frame), latent ``z`` and shift ``t`` (pixels,
RELION's sign: the data centred by ``t`` are ``X * exp(-2 pi i k . t / D)``). Models that
can compute central slices faster than by evaluating ``F`` at 3D points (the atomic model,
whose phases separate on a lattice) provide ``central_slices(pixels, rotations, z)``;
:func:`central_slices` uses it, so the choice is made here once.
"""

from __future__ import annotations

import torch
from torch import nn

from cryofield.imaging.model import VolumeModel
from cryofield.imaging.projection import shift_phase_at


def slice_frequencies(pixels: torch.Tensor, rotations: torch.Tensor, box: int) -> torch.Tensor:
    """3D frequencies ``R^T (kx, ky, 0) / D`` of 2D pixels on each particle's central slice.

    Parameters
    ----------
    pixels : Tensor, shape (P, 2)
        ``(kx, ky)`` in cycles per box.
    rotations : Tensor, shape (B, 3, 3)
    box : int
        ``D``.

    Returns
    -------
    Tensor, shape (B, P, 3)
        Box fractions ``(x, y, z)``, what a :class:`VolumeModel` takes.
    """
    k3 = torch.cat([pixels, torch.zeros(len(pixels), 1, device=pixels.device)], -1)  # (P, 3)
    return torch.einsum("pi,bij->bpj", k3, rotations) / box


def central_slices(model: VolumeModel, pixels: torch.Tensor, rotations: torch.Tensor, box: int,
                   z: torch.Tensor | None = None) -> torch.Tensor:
    """A model's transform on each particle's central slice, at chosen pixels.

    Parameters
    ----------
    model : VolumeModel
        Optionally with ``central_slices(pixels, rotations, z)``, used when present.
    pixels : Tensor, shape (P, 2)
        ``(kx, ky)``, cycles per box.
    rotations : Tensor, shape (B, 3, 3)
    box : int
    z : Tensor, shape (B, zdim), optional

    Returns
    -------
    Tensor, shape (B, P), complex
    """
    direct = getattr(model, "central_slices", None)
    if direct is not None:
        return direct(pixels, rotations, z)
    with torch.autocast(pixels.device.type, enabled=False):  # coordinates in fp32: bf16 would round them
        coords = slice_frequencies(pixels, rotations.float(), box)
    return model(coords, z)


def predict_images(model: VolumeModel, pixels: torch.Tensor, rotations: torch.Tensor, box: int, *,
                   z: torch.Tensor | None = None, ctf: torch.Tensor | None = None,
                   shifts_px: torch.Tensor | None = None) -> torch.Tensor:
    """The images (their centred transforms at ``pixels``) a volume model predicts.

    Parameters
    ----------
    model : VolumeModel
    pixels : Tensor, shape (P, 2)
        ``(kx, ky)``, cycles per box (e.g. the half lattice inside the circle).
    rotations : Tensor, shape (B, 3, 3)
        ``R`` per image.
    box : int
        ``D``, pixels.
    z : Tensor, shape (B, zdim), optional
        One latent per image.
    ctf : Tensor, shape (B, P), optional
        The CTF at ``pixels`` (none: phase-flipped or CTF-free data).
    shifts_px : Tensor, shape (B, 2), optional
        Each image's shift ``t`` in pixels, RELION's sign; none for centred data.

    Returns
    -------
    Tensor, shape (B, P), complex
    """
    predicted = central_slices(model, pixels, rotations, box, z)
    if shifts_px is not None:
        with torch.autocast(pixels.device.type, enabled=False):  # phases in fp32
            predicted = predicted * shift_phase_at(pixels, shifts_px.float(), box, sign=1.0)
    if ctf is not None:
        predicted = predicted * ctf
    return predicted


class ImageFormation(nn.Module):
    """:func:`predict_images` of one volume model as a module (what ``DistributedDataParallel`` wraps).

    Parameters
    ----------
    model : nn.Module
        A :class:`VolumeModel`; its parameters are this module's.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor, rotations: torch.Tensor, box: int, z: torch.Tensor | None = None,
                ctf: torch.Tensor | None = None, shifts_px: torch.Tensor | None = None) -> torch.Tensor:
        """:func:`predict_images` of the wrapped model; shapes as there."""
        return predict_images(self.model, pixels, rotations, box, z=z, ctf=ctf, shifts_px=shifts_px)
