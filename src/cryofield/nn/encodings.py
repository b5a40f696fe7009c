"""Positional encodings of 3D frequency coordinates for coordinate networks.

Coordinates are fractions of the box, ``k / D`` in ``[-0.5, 0.5]`` (the support of the
volume is the sphere of radius 0.5, as in the seed's section 3.4).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sin_cos(phase: torch.Tensor) -> torch.Tensor:
    """``[sin(phase), cos(phase)]`` along the last axis, (..., n) -> (..., 2n).

    Under CPU bf16 autocast, where the next layer takes bf16 anyway, both are written as bf16
    straight into one tensor (computed in ``phase``'s precision, rounded once), sparing the
    float32 concatenation and the cast of it: 11 against 20 ms for a batch of 8 images at
    128 px. Only where ``phase`` needs no gradient (``out=`` has none).
    """
    if not (phase.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not phase.requires_grad
            and torch.get_autocast_dtype("cpu") == torch.bfloat16):
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)
    n = phase.shape[-1]
    out = phase.new_empty(*phase.shape[:-1], 2 * n, dtype=torch.bfloat16)
    torch.sin(phase, out=out[..., :n])
    torch.cos(phase, out=out[..., n:])
    return out


def phases(coords: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``coords @ matrix.T`` in ``coords``' precision, (..., 3) x (n, 3) -> (..., n) radians.

    Never under autocast: a phase of 20-30 rad (the finest features at 128 px) rounded to bf16
    is off by up to 0.06 rad.
    """
    with torch.autocast(coords.device.type, enabled=False):
        return coords @ matrix.to(coords.dtype).T


def geometric_frequencies(box: int, n_freqs: int | None = None, low_frequency: bool = False) -> torch.Tensor:
    """The seed's geometric series ``gamma(d) = D pi (2/D)^(d / (n - 1))``, ``d = 0 .. n - 1``.

    Wavelengths run from the Nyquist limit ``2/D`` (``gamma = D pi``) to the box (``gamma =
    2 pi``). ``low_frequency`` drops the top 10% highest frequencies (the seed's variant for
    noisy data).

    Parameters
    ----------
    box : int
        ``D``.
    n_freqs : int, optional
        ``n`` (default ``D // 2``).
    low_frequency : bool

    Returns
    -------
    Tensor, shape (n,) or (n - ceil(0.1 n),), float32, radians per unit coordinate
    """
    n = n_freqs or box // 2
    d = torch.arange(n, dtype=torch.float64)
    gamma = box * math.pi * (2.0 / box) ** (d / max(n - 1, 1))
    if low_frequency:
        gamma = gamma[math.ceil(0.1 * n):]
    return gamma.float()


class SinusoidalEncoding(nn.Module):
    """``[sin(x * f), cos(x * f)]`` for fixed frequencies ``f`` along each axis.

    Parameters
    ----------
    frequencies : Tensor, shape (n,)
        Radians per unit coordinate (e.g. :func:`geometric_frequencies`).
    """

    def __init__(self, frequencies: torch.Tensor):
        super().__init__()
        self.register_buffer("frequencies", frequencies.float())

    @property
    def out_dim(self) -> int:
        """Features per 3D point."""
        return 6 * len(self.frequencies)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode ``coords`` (..., 3) in box fractions into (..., ``out_dim``)."""
        phase = (coords[..., :, None] * self.frequencies.to(coords.dtype)).flatten(-2)  # (..., 3n)
        return sin_cos(phase)


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features ``[sin(B x), cos(B x)]`` with ``B ~ N(0, (sigma D / 2)^2)``.

    Parameters
    ----------
    box : int
        ``D``: at ``sigma = 1`` the frequencies reach the Nyquist limit's scale.
    n_features : int
        Rows of ``B`` (the encoding has twice as many features).
    sigma : float
        Scale of the frequencies relative to ``D / 2`` (``--feat-sigma``, default 0.5).
    seed : int
        For ``B``; saved with the model as a buffer.
    """

    def __init__(self, box: int, n_features: int, sigma: float = 0.5, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        b = torch.randn(n_features, 3, generator=generator) * sigma * box / 2
        self.register_buffer("matrix", b)

    @property
    def out_dim(self) -> int:
        """Features per 3D point."""
        return 2 * self.matrix.shape[0]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode ``coords`` (..., 3) in box fractions into (..., ``out_dim``)."""
        return sin_cos(phases(coords, self.matrix))


def make_encoding(kind: str, box: int, pe_dim: int | None = None, feat_sigma: float = 0.5,
                  seed: int = 0) -> nn.Module:
    """The encoding named by ``--pe-type``: ``gaussian`` (default), ``geom_full`` or ``geom_lowf``.

    ``pe_dim`` is the number of frequencies per axis (default ``D // 2``); for ``gaussian``
    the number of random frequencies is ``3 * pe_dim``, the same feature count.
    """
    n = pe_dim or box // 2
    if kind == "gaussian":
        return GaussianFourierFeatures(box, 3 * n, feat_sigma, seed)
    if kind in ("geom_full", "geom_lowf"):
        return SinusoidalEncoding(geometric_frequencies(box, n, low_frequency=kind == "geom_lowf"))
    raise ValueError(f"unknown positional encoding {kind!r}: gaussian, geom_full or geom_lowf")
