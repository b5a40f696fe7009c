"""Map operations behind validation: masks, B-factors, handedness, map-to-map errors."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from cryofield.fourier import fft_center, ifft_center, lattice, radial_sum, reflect_center, shell_index


def auto_mask(volume: np.ndarray, pixel_size_angstrom: float, *, threshold: float | None = None,
              dilate_angstrom: float = 25.0, soft_edge_angstrom: float = 15.0) -> np.ndarray:
    """The seed's automatic mask (section 4.4.4): threshold, dilate, soft cosine edge.

    Parameters
    ----------
    volume : ndarray, shape (D, D, D)
    pixel_size_angstrom : float
    threshold : float, optional
        Default: half the 99.99th percentile of the map.
    dilate_angstrom : float
        The thresholded region grows by this distance.
    soft_edge_angstrom : float
        Beyond it the mask falls from 1 to 0 as a raised cosine over this distance.

    Returns
    -------
    ndarray, shape (D, D, D), float32, values in [0, 1]
    """
    volume = np.asarray(volume, np.float64)
    if threshold is None:
        threshold = 0.5 * np.percentile(volume, 99.99)
    core = volume >= threshold
    if not core.any():
        raise ValueError(f"no voxel reaches the mask threshold {threshold:.4g}")
    distance = ndimage.distance_transform_edt(~core) * pixel_size_angstrom  # A to the thresholded region
    t = np.clip((distance - dilate_angstrom) / max(soft_edge_angstrom, 1e-9), 0, 1)
    mask = 0.5 * (1 + np.cos(math.pi * t))
    if soft_edge_angstrom <= 0:
        mask = (distance <= dilate_angstrom).astype(float)
    return mask.astype(np.float32)


def radial_amplitude(volume: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rotationally averaged Fourier amplitude per shell, (D//2 + 1,) each: (cycles per pixel, amplitude)."""
    size = volume.shape[-1]
    amplitude = fft_center(volume.to(torch.float64), 3).abs()
    shells = shell_index(size, 3, device=volume.device)
    n = size // 2 + 1
    total = radial_sum(amplitude, shells, n)
    count = radial_sum(torch.ones_like(amplitude), shells, n)
    return np.arange(n) / size, (total / count.clamp_min(1)).cpu().numpy()


def guinier_bfactor(volume: torch.Tensor, pixel_size_angstrom: float, *, low_angstrom: float = 10.0,
                    high_angstrom: float | None = None) -> float:
    """B-factor (A^2) of a map from the slope of its Guinier plot, ``ln|F| = a - (B / 4) k^2``.

    Parameters
    ----------
    volume : Tensor, shape (D, D, D)
    pixel_size_angstrom : float
    low_angstrom, high_angstrom : float
        Fit range in Angstrom (default: 10 A to Nyquist).

    Returns
    -------
    float
        Positive for a map whose amplitudes decay; sharpen with ``-B``.
    """
    freqs, amplitude = radial_amplitude(volume)
    k = freqs / pixel_size_angstrom
    high = 1 / high_angstrom if high_angstrom else k[-1]
    fit = (k >= 1 / low_angstrom) & (k <= high) & (amplitude > 0)
    if fit.sum() < 3:
        raise ValueError("fewer than 3 shells in the Guinier fit range; widen it or use a finer map")
    slope, _ = np.polyfit(k[fit] ** 2, np.log(amplitude[fit]), 1)
    return float(-4 * slope)


def apply_bfactor(volume: torch.Tensor, pixel_size_angstrom: float, bfactor: float,
                  lowpass_angstrom: float | None = None) -> torch.Tensor:
    """Multiply a map's transform by ``exp(-B k^2 / 4)`` (negative ``B`` sharpens), optionally low-passed.

    Parameters
    ----------
    volume : Tensor, shape (D, D, D)
    pixel_size_angstrom : float
    bfactor : float
        A^2; negative values boost high frequencies.
    lowpass_angstrom : float, optional
        Cosine low-pass falling to 0 over the last 10% below this resolution.

    Returns
    -------
    Tensor, shape (D, D, D)
    """
    size = volume.shape[-1]
    k = lattice(size, 3, dtype=torch.float64, device=volume.device).norm(dim=-1) / pixel_size_angstrom
    factor = torch.exp(-bfactor * k**2 / 4)
    if lowpass_angstrom:
        edge = 1 / lowpass_angstrom
        t = ((k - 0.9 * edge) / (0.1 * edge)).clamp(0, 1)
        factor = factor * 0.5 * (1 + torch.cos(math.pi * t))
    return ifft_center(fft_center(volume.to(torch.float64), 3) * factor, 3).real.to(volume.dtype)


def flip_hand(volume: np.ndarray | torch.Tensor):
    """Mirror a map through its origin plane ``z = 0`` (index ``D//2`` stays put), inverting its hand.

    Parameters
    ----------
    volume : ndarray or Tensor, shape (D, D, D)

    Returns
    -------
    ndarray or Tensor (as given), shape (D, D, D)
    """
    if isinstance(volume, np.ndarray):
        return reflect_center(torch.from_numpy(volume), (0,)).numpy()
    return reflect_center(volume, (0,))


def normalized_mse(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """``|predicted - truth|^2 / |truth|^2`` over all voxels."""
    truth = truth.to(torch.float64)
    return float(((predicted.to(torch.float64) - truth) ** 2).sum() / (truth**2).sum())
