"""Fourier shell correlation and the resolution it implies."""

from __future__ import annotations

import numpy as np
import torch

from cryofield.fourier import fft_center, radial_sum, shell_index


def fsc(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fourier shell correlation of two maps.

    Parameters
    ----------
    a, b : Tensor, shape (D, D, D)
        Real maps ``[z, y, x]`` of the same size (and pixel size).
    mask : Tensor, shape (D, D, D), optional
        Multiplied into both maps first (a soft mask, values in [0, 1]).

    Returns
    -------
    freqs : ndarray, shape (D//2 + 1,)
        Shell frequency in cycles per pixel, ``0 .. 0.5`` (divide by the pixel size for 1/A).
    curve : ndarray, shape (D//2 + 1,)
        FSC per shell; shell 0 is the DC term.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"maps must be 3D and of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.to(torch.float64), b.to(torch.float64)
    if mask is not None:
        a, b = a * mask, b * mask
    size = a.shape[-1]
    fa, fb = fft_center(a, 3), fft_center(b, 3)
    shells = shell_index(size, 3, device=a.device)
    n = size // 2 + 1
    num = radial_sum((fa * fb.conj()).real, shells, n)
    den = torch.sqrt(radial_sum(fa.abs() ** 2, shells, n) * radial_sum(fb.abs() ** 2, shells, n))
    curve = torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))
    return np.arange(n) / size, curve.cpu().numpy()


def resolution_at(freqs: np.ndarray, curve: np.ndarray, threshold: float) -> float:
    """Frequency (cycles per pixel) where the FSC first falls below ``threshold``.

    Interpolates linearly between the last shell above and the first below; returns the
    highest frequency when the curve never falls below.

    Parameters
    ----------
    freqs, curve : ndarray, shape (S,)
        As returned by :func:`fsc`.
    threshold : float
        0.143 for half maps, 0.5 against a reference.

    Returns
    -------
    float
        Divide the pixel size by it for the resolution in Angstrom.
    """
    below = np.flatnonzero(curve[1:] < threshold)
    if len(below) == 0:
        return float(freqs[-1])
    i = below[0] + 1
    f0, f1, c0, c1 = freqs[i - 1], freqs[i], curve[i - 1], curve[i]
    return float(f0 + (c0 - threshold) * (f1 - f0) / (c0 - c1)) if c0 != c1 else float(f0)
