"""Contrast transfer function, batched over particles with different parameters."""

from __future__ import annotations

import math

import torch

from cryofield.fourier import lattice, rfft_frequencies
from cryofield.imaging.dose import exposure_weights


def _wavelength_angstrom(voltage_kv: torch.Tensor) -> torch.Tensor:
    volts = voltage_kv * 1e3
    return 12.2642598 / torch.sqrt(volts + 0.97848e-6 * volts**2)


def compute_ctf(freqs: torch.Tensor, defocus_u_angstrom: torch.Tensor,
                defocus_v_angstrom: torch.Tensor, defocus_angle_deg: torch.Tensor,
                voltage_kv: torch.Tensor, cs_mm: torch.Tensor, amplitude_contrast: torch.Tensor,
                phase_shift_deg: torch.Tensor, bfactor: torch.Tensor | None = None) -> torch.Tensor:
    """Evaluate the CTF of :mod:`cryofield.conventions` for a batch of particles.

    Parameters
    ----------
    freqs : Tensor, shape (B or 1, ..., 2)
        Spatial frequencies ``(kx, ky)`` in 1/Angstrom (cycles per pixel over pixel size).
    defocus_u_angstrom, defocus_v_angstrom, defocus_angle_deg, voltage_kv, cs_mm,
    amplitude_contrast, phase_shift_deg : Tensor, shape (B,)
        Per-particle parameters (Angstrom, degrees, kV, mm).
    bfactor : Tensor, shape (B,), optional
        B-factor in Angstrom^2 of the envelope ``exp(-B k^2 / 4)``.

    Returns
    -------
    Tensor, shape (B, ...)
        The CTF at each frequency.
    """
    extra = freqs.dim() - 2  # lattice dimensions besides batch and (kx, ky)

    def per_particle(p: torch.Tensor) -> torch.Tensor:
        return p.to(freqs).reshape((-1,) + (1,) * extra)

    kx, ky = freqs[..., 0], freqs[..., 1]
    k2 = kx**2 + ky**2
    angle = torch.atan2(ky, kx)
    dfu, dfv = per_particle(defocus_u_angstrom), per_particle(defocus_v_angstrom)
    astigmatism_angle = per_particle(defocus_angle_deg) * math.pi / 180
    df = 0.5 * (dfu + dfv + (dfu - dfv) * torch.cos(2 * (angle - astigmatism_angle)))
    lam = _wavelength_angstrom(per_particle(voltage_kv))
    cs = per_particle(cs_mm) * 1e7
    gamma = 2 * math.pi * (-0.5 * df * lam * k2 + 0.25 * cs * lam**3 * k2**2) \
        - per_particle(phase_shift_deg) * math.pi / 180
    w = per_particle(amplitude_contrast)
    ctf = -w * torch.cos(gamma) + torch.sqrt(1 - w**2) * torch.sin(gamma)
    if bfactor is not None:
        ctf = ctf * torch.exp(-per_particle(bfactor) * k2 / 4)
    return ctf


def ctf_at_pixels(ctf_params: torch.Tensor, coords: torch.Tensor, size: int) -> torch.Tensor:
    """CTF of each particle at some pixels of the centred ``size x size`` lattice.

    Training holds the CTF this way, as parameters, and evaluates it for each batch at the
    half-lattice pixels it uses (8 bytes per pixel saved per particle).

    Parameters
    ----------
    ctf_params : Tensor, shape (B, 9) to (B, 12)
        Rows of :meth:`cryofield.io.ParticleTable.ctf_array` (column 1, the pixel size in
        Angstrom, sets the frequencies; column 0 is not used); a tenth column is each tilt
        image's accumulated exposure (e/A^2), which damps its CTF by the amplitude radiation
        damage left (:func:`cryofield.imaging.exposure_weights`, zero past the optimal exposure);
        a twelfth scales that CTF by the image's amplitude (``cos(tilt)`` or
        ``_rlnCtfScalefactor``); an eleventh, where nonzero, says the image was multiplied by
        the damped, scaled CTF when it was extracted (RELION 5's and WarpTools' premultiplied
        stacks), so that its transform is the volume's times the square: the square is returned.
    coords : Tensor, shape (P, 2)
        ``(kx, ky)`` of the pixels in cycles per box.
    size : int
        Box size of the images, px.

    Returns
    -------
    Tensor, shape (B, P)
        Equal to ``ctf_on_lattice(ctf_params, size)`` at those pixels.
    """
    freqs = coords.to(ctf_params)[None] / (size * ctf_params[:, 1].reshape(-1, 1, 1))
    ctf = compute_ctf(freqs, *ctf_params[:, 2:9].unbind(-1))
    if ctf_params.shape[1] > 9:
        ctf = ctf * exposure_weights(freqs.norm(dim=-1), ctf_params[:, 9], ctf_params[:, 5], batched=True)
    if ctf_params.shape[1] > 11:
        ctf = ctf * ctf_params[:, 11:12]
    if ctf_params.shape[1] > 10:
        ctf = torch.where(ctf_params[:, 10:11] != 0, ctf * ctf, ctf)
    return ctf


def phase_flip(images: torch.Tensor, ctf_params: torch.Tensor) -> torch.Tensor:
    """Multiply each image's Fourier transform by the sign of its CTF.

    Parameters
    ----------
    images : Tensor, shape (B, D, D)
    ctf_params : Tensor, shape (B, 9)
        Rows of :meth:`cryofield.io.ParticleTable.ctf_array` (box, pixel size, defocus U/V,
        angle, kV, Cs, amplitude contrast, phase shift).

    Returns
    -------
    Tensor, shape (B, D, D)
        The phase-flipped images; contrast sign unchanged where the CTF is positive.
    """
    size = images.shape[-1]
    work = images.to(torch.float64) if images.dtype == torch.float64 else images.float()
    lattice = rfft_frequencies(size, size, dtype=work.dtype, device=work.device)
    freqs = lattice[None] / ctf_params[:, 1].to(work).reshape(-1, 1, 1, 1)
    ctf = compute_ctf(freqs, *ctf_params[:, 2:].to(work).unbind(-1))
    flipped = torch.fft.irfft2(torch.fft.rfft2(work) * torch.sign(ctf), s=(size, size))
    return flipped.to(images.dtype)


def ctf_on_lattice(ctf_params: torch.Tensor, size: int, *, bfactor: torch.Tensor | None = None) -> torch.Tensor:
    """CTF of each particle on the centred ``size x size`` lattice.

    Parameters
    ----------
    ctf_params : Tensor, shape (B, 9)
        Rows of :meth:`cryofield.io.ParticleTable.ctf_array` (column 1, the pixel size,
        sets the frequencies; column 0 is not used).
    size : int
        Box size of the images the CTF applies to.
    bfactor : Tensor, shape (B,), optional

    Returns
    -------
    Tensor, shape (B, size, size)
    """
    freqs = lattice(size, 2, dtype=ctf_params.dtype, device=ctf_params.device)[None] \
        / ctf_params[:, 1].reshape(-1, 1, 1, 1)
    return compute_ctf(freqs, *ctf_params[:, 2:].unbind(-1), bfactor=bfactor)
