"""cryoDRGN's volume decoder, evaluated as cryoDRGN 4.x does, so its trained runs open here.

cryoDRGN's ``FTPositionalDecoder`` (``--domain fourier``) and ``PositionalDecoder``
(``--domain hartley``) are a positional encoding of the frequency ``k`` (box fractions),
the latent appended, and a residual MLP (``relu(W h + b + h)`` blocks, cryofield's ``post``
form). The Fourier one outputs ``(a, b)`` with ``H(k) = a - b`` and evaluates only the
half-space ``z <= 0`` (its mate's value conjugated); in the plane ``z = 0`` it evaluates the
points before the origin in raster order (``y < 0``, or ``y = 0`` and ``x <= 0``) and
mirrors the others, as its ``eval_volume`` does; at the origin ``F(0) = H(0) = a - b``.
The facts here were read from cryoDRGN 4.3.1's ``models.py``; no code of it is used.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cryofield.nn.encodings import phases, sin_cos
from cryofield.nn.mlp import ResidualMLP

#: cryoDRGN's positional encodings (``--pe-type``), all supported.
CRYODRGN_ENCODINGS = ("gaussian", "geom_ft", "geom_full", "geom_lowf", "geom_nohighf", "linear_lowf")


def cryodrgn_frequencies(kind: str, box: int, n: int) -> torch.Tensor:
    """The per-axis frequencies (radians per unit coordinate) of cryoDRGN's geometric and linear encodings.

    Parameters
    ----------
    kind : str
        One of :data:`CRYODRGN_ENCODINGS` except ``gaussian``.
    box : int
        The images' box ``D`` (cryoDRGN's lattice has ``D + 1`` points; its ``D2`` is ``D // 2``).
    n : int
        Frequencies per axis (cryoDRGN's ``pe_dim``, default ``D // 2``).

    Returns
    -------
    Tensor, shape (n,), float32
    """
    half, even = box // 2, 2 * (box // 2)
    d = torch.arange(n, dtype=torch.float32) / max(n - 1, 1)
    if kind == "geom_ft":
        return even * math.pi * (2.0 / even) ** d
    if kind == "geom_full":
        return even * math.pi * (1.0 / even / math.pi) ** d
    if kind == "geom_lowf":
        return half * (1.0 / half) ** d
    if kind == "geom_nohighf":
        return half * (2.0 * math.pi / half) ** d
    if kind == "linear_lowf":
        return torch.arange(1, half + 1, dtype=torch.float32)
    raise ValueError(f"unknown cryoDRGN positional encoding {kind!r}")


class CryodrgnDecoder(nn.Module):
    """A trained cryoDRGN decoder as a :class:`cryofield.imaging.VolumeModel`: ``F(k, z)``, complex.

    Parameters
    ----------
    box : int
        The images' box ``D``.
    zdim : int
    hidden, layers : int
        cryoDRGN's ``pdim`` and ``players``.
    encoding : str
        cryoDRGN's ``pe_type`` (:data:`CRYODRGN_ENCODINGS`).
    pe_dim : int, optional
        Frequencies per axis (default ``D // 2``).
    domain : {"fourier", "hartley"}
    """

    def __init__(self, box: int, zdim: int, hidden: int, layers: int, encoding: str = "gaussian",
                 pe_dim: int | None = None, domain: str = "fourier"):
        super().__init__()
        if encoding not in CRYODRGN_ENCODINGS:
            raise ValueError(f"unknown cryoDRGN positional encoding {encoding!r}")
        if domain not in ("fourier", "hartley"):
            raise ValueError(f"unknown cryoDRGN decoder domain {domain!r}")
        self.box, self.zdim, self.encoding, self.domain = box, zdim, encoding, domain
        n = pe_dim or box // 2
        if encoding == "gaussian":
            self.register_buffer("rand_freqs", torch.zeros(3 * n, 3))  # loaded from the run
            features = 6 * n
        else:
            self.register_buffer("frequencies", cryodrgn_frequencies(encoding, box, n))
            features = 6 * len(self.frequencies)
        self.mlp = ResidualMLP(features + zdim, hidden, layers, 2 if domain == "fourier" else 1, residual="post")

    def load_cryodrgn_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a cryoDRGN ``model_state_dict``: a VAE's (``decoder.*``) or a ``train_nn`` decoder's own."""
        if any(k.startswith("decoder.decoder.") or k == "decoder.rand_freqs" for k in state):
            state = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
        main = {k[len("decoder.main."):]: v for k, v in state.items() if k.startswith("decoder.main.")}
        if "0.linear.weight" in main:
            raise ValueError("a decoder whose first layer is residual (input size = width) is not supported")
        last = 2 * (len(self.mlp.blocks) + 1)
        mine = {"first.weight": main["0.weight"], "first.bias": main["0.bias"],
                "last.weight": main[f"{last}.weight"], "last.bias": main[f"{last}.bias"]}
        for i in range(len(self.mlp.blocks)):
            mine[f"blocks.{i}.weight"] = main[f"{2 * i + 2}.linear.weight"]
            mine[f"blocks.{i}.bias"] = main[f"{2 * i + 2}.linear.bias"]
        self.mlp.load_state_dict(mine)
        if self.encoding == "gaussian":
            self.rand_freqs.copy_(state["rand_freqs"])

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        if self.encoding == "gaussian":
            return sin_cos(phases(coords, self.rand_freqs * (self.box // 2)))
        phase = coords[..., :, None] * self.frequencies.to(coords.dtype)  # (..., 3, n)
        return sin_cos(phase).flatten(-2)  # x: sin, cos; then y; z

    def forward(self, coords: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """``F(k)`` at ``coords`` (B, P, 3) or (P, 3) box fractions, for latents ``z`` (B, zdim); complex."""
        x, y, zc = coords.unbind(-1)
        if self.zdim and z is None:
            raise ValueError("this decoder needs a latent z")
        if self.domain == "hartley":  # H at k and at -k: Re F = (H(k) + H(-k)) / 2, Im F = (H(-k) - H(k)) / 2
            at_k, at_minus_k = self._mlp(coords, z), self._mlp(-coords, z)
            return torch.complex(0.5 * (at_k + at_minus_k)[..., 0], 0.5 * (at_minus_k - at_k)[..., 0])
        mirrored = (zc > 0) | ((zc == 0) & ((y > 0) | ((y == 0) & (x > 0))))  # cryoDRGN evaluates the others
        out = self._mlp(torch.where(mirrored[..., None], -coords, coords), z)  # (a, b) = (Re F, Im F) there
        if self.zdim and coords.dim() == 2:
            mirrored = mirrored.expand(len(z), -1)
        real, imag = out[..., 0], torch.where(mirrored, -out[..., 1], out[..., 1])
        origin = (coords == 0).all(-1).expand_as(real)  # its own mate: cryoDRGN's H(0) = a - b is F(0), real
        return torch.complex(torch.where(origin, real - imag, real), torch.where(origin, 0.0, imag))

    def _mlp(self, coords: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        features = self._encode(coords)
        if not self.zdim:
            return self.mlp(features).float()
        return self.mlp(features, extra=z[:, None, :].to(features.dtype)).float()
