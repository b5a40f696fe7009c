"""Coordinate-network volume decoders with exact Hermitian (Friedel) symmetry."""

from __future__ import annotations

import torch
from torch import nn

from cryofield.nn.mlp import ResidualMLP


def canonical_half(coords: torch.Tensor) -> torch.Tensor:
    """Whether each point lies in the canonical half-space of Friedel pairs, (..., 3) -> (...).

    The half-space is ``z > 0``, or ``z = 0`` and ``y > 0``, or ``z = y = 0`` and ``x >= 0``, so
    exactly one of ``k`` and ``-k`` is canonical (the origin is its own mate).
    """
    x, y, z = coords.unbind(-1)
    return (z > 0) | ((z == 0) & ((y > 0) | ((y == 0) & (x >= 0))))


class VolumeDecoder(nn.Module):
    """``F(k, z)``: a positional encoding and a residual MLP, Hermitian by construction.

    The MLP is evaluated once per Friedel pair, at the canonical point ``k``; a point of the
    other half takes its mate's value conjugated, so ``F(-k) = conj(F(k))`` holds exactly
    and the volume is real. Its two outputs are, by ``domain``:

    - ``"fourier"``: ``Re F(k)`` and ``Im F(k)``;
    - ``"hartley"``: the Hartley transform at the pair, ``H(k) = Re F - Im F`` and
      ``H(-k) = Re F + Im F``.

    The two are an orthogonal change of basis of the last layer (the same model class, a
    different parameterisation). Satisfies :class:`cryofield.imaging.VolumeModel`.

    Parameters
    ----------
    encoding : nn.Module
        Maps (..., 3) box-fraction coordinates to (..., ``encoding.out_dim``).
    zdim : int
        Latent dimension (0 for a single volume).
    hidden, layers : int
        MLP width and residual hidden-to-hidden layers (as cryoDRGN counts them).
    domain : {"fourier", "hartley"}
        What the two outputs are (above).
    residual : {"post", "pre"}
        The residual blocks' form (:class:`ResidualMLP`).
    """

    def __init__(self, encoding: nn.Module, zdim: int = 0, hidden: int = 256, layers: int = 3,
                 domain: str = "fourier", *, residual: str = "post"):
        super().__init__()
        if domain not in ("fourier", "hartley"):
            raise ValueError(f"domain must be 'fourier' or 'hartley', not {domain!r}")
        self.encoding = encoding
        self.zdim = zdim
        self.domain = domain
        self.mlp = ResidualMLP(encoding.out_dim + zdim, hidden, layers, 2, residual=residual)

    def forward(self, coords: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Evaluate ``F`` at ``coords``.

        Parameters
        ----------
        coords : Tensor, shape (B, P, 3) or (P, 3)
            Frequencies as fractions of the box (``k / D``), ``(x, y, z)``.
        z : Tensor, shape (B, zdim), optional
            One latent per batch item (required when ``zdim > 0``).

        Returns
        -------
        Tensor, shape (B, P) or (P,), complex
            (P,) only for (P, 3) coordinates without a latent; with ``z``, (B, P) either way.
        """
        flip = ~canonical_half(coords)
        canonical = torch.where(flip[..., None], -coords, coords)
        features = self.encoding(canonical)
        if self.zdim:
            if z is None:
                raise ValueError("this decoder needs a latent z")
            if features.dim() == 2:  # one set of points for every latent
                flip = flip.expand(len(z), -1)
            out = self.mlp(features, extra=z[:, None, :].to(features.dtype)).float()  # (B, P, 2)
        else:
            out = self.mlp(features).float()
        real, imag = out[..., 0], out[..., 1]
        if self.domain == "hartley":  # (H(k), H(-k)) -> (Re F(k), Im F(k))
            real, imag = 0.5 * (out[..., 0] + out[..., 1]), 0.5 * (out[..., 1] - out[..., 0])
        imag = torch.where(flip, -imag, imag)
        origin = (coords == 0).all(-1)  # its own mate: F(0) is real (no branch: a step must not wait on the device)
        imag = torch.where(origin.expand_as(imag), torch.zeros_like(imag), imag)
        return torch.complex(real, imag)
