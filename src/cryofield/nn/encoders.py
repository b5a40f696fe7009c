"""Image encoders for the VAE: a diagonal Gaussian posterior over the latent z, or over a rotation."""

from __future__ import annotations

import torch
from torch import nn

from cryofield.nn.mlp import ResidualMLP
from cryofield.nn.poses import skew
from cryofield.so3 import s2s2_to_matrix


class ImageEncoder(nn.Module):
    """``(mu, logvar)`` of ``q(z | X)`` from the (masked, flattened) pixels of an image.

    Parameters
    ----------
    in_dim : int
        Pixels fed in (those inside the circular mask).
    hidden, layers : int
    zdim : int
    residual : {"post", "pre"}
        The residual blocks' form (:class:`ResidualMLP`).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, zdim: int, *, residual: str = "post"):
        super().__init__()
        self.zdim = zdim
        self.mlp = ResidualMLP(in_dim, hidden, layers, 2 * zdim, residual=residual)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in_dim) -> mu (B, zdim), logvar (B, zdim)."""
        out = self.mlp(pixels).float()
        return out[:, : self.zdim], out[:, self.zdim:]


class TiltPairEncoder(nn.Module):
    """The seed's tilt-pair encoder (section 3.7.2): one MLP per image, concatenated, a second MLP.

    Parameters
    ----------
    in_dim : int
        Pixels per image.
    hidden, layers : int
        Width and depth of both MLPs.
    zdim : int
    residual : {"post", "pre"}
        The residual blocks' form (:class:`ResidualMLP`).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, zdim: int, *, residual: str = "post"):
        super().__init__()
        self.zdim = zdim
        self.per_image = ResidualMLP(in_dim, hidden, layers, hidden, residual=residual)
        self.joint = ResidualMLP(2 * hidden, hidden, layers, 2 * zdim, residual=residual)

    def forward(self, pixels: torch.Tensor, tilted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two (B, in_dim) images of each particle -> mu (B, zdim), logvar (B, zdim)."""
        h = torch.cat([torch.relu(self.per_image(pixels)), torch.relu(self.per_image(tilted))], -1)
        out = self.joint(h).float()
        return out[:, : self.zdim], out[:, self.zdim:]


#: How :class:`TiltSeriesEncoder` pools its tilts' embeddings.
TILT_POOLINGS = ("concat", "mean", "max")


class TiltSeriesEncoder(nn.Module):
    """One posterior per particle from ``T`` of its tilt images (cryoDRGN-ET's and tomoDRGN's design).

    A network shared by the tilts embeds each image; the embeddings are pooled and a second
    network maps the pool to ``(mu, logvar)``. Pooling by ``"concat"`` (the peers' default)
    keeps each tilt's place, so that the network can weigh the least damaged tilts, which
    come first, differently from the rest; ``"mean"`` and ``"max"`` do not depend on the order
    or count. Padding (particles with fewer than ``T`` images) is masked out of every pool.

    Parameters
    ----------
    in_dim : int
        Numbers per image fed in (``2P``).
    hidden, layers : int
        Width and depth of both networks.
    zdim : int
    ntilts : int
        ``T``, the images per particle (the concatenation's width).
    embedding : int
        Each tilt's embedding (default 64, cryoDRGN-ET's ``--t-emb-dim``).
    pooling : {"concat", "mean", "max"}
    residual : {"post", "pre"}
        The residual blocks' form (:class:`ResidualMLP`).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, zdim: int, ntilts: int, *, embedding: int = 64,
                 pooling: str = "concat", residual: str = "post"):
        super().__init__()
        if pooling not in TILT_POOLINGS:
            raise ValueError(f"pooling must be one of {TILT_POOLINGS}, not {pooling!r}")
        self.zdim, self.ntilts, self.pooling = zdim, ntilts, pooling
        self.per_tilt = ResidualMLP(in_dim, hidden, layers, embedding, residual=residual)
        pooled = ntilts * embedding if pooling == "concat" else embedding
        self.joint = ResidualMLP(pooled, hidden, layers, 2 * zdim, residual=residual)

    def forward(self, pixels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B T, in_dim) images, particle by particle, and their mask (B, T) -> mu (B, zdim), logvar (B, zdim)."""
        n, t = mask.shape
        if t != self.ntilts and self.pooling == "concat":
            raise ValueError(f"this encoder concatenates {self.ntilts} tilts, the batch has {t}")
        h = torch.relu(self.per_tilt(pixels)).reshape(n, t, -1)
        keep = mask.unsqueeze(-1).to(h.dtype)
        h = h * keep  # padding contributes nothing (and, after the ReLU, cannot win a max)
        if self.pooling == "concat":
            pooled = h.reshape(n, -1)
        elif self.pooling == "mean":
            pooled = h.sum(1) / keep.sum(1).clamp(min=1)
        else:
            pooled = h.amax(1)
        out = self.joint(pooled).float()
        return out[:, : self.zdim], out[:, self.zdim:]


class LatentTable(nn.Module):
    """Every particle's latent as a row of a table (an autodecoder), in place of an image encoder.

    cryoDRGN-AI's default for ab initio: the latents are parameters, trained with the volume,
    started at ``N(0, 0.1^2)``. A point per particle (``variational=False``: no KL term), or a
    diagonal Gaussian per particle whose log-variances start at 0 and whose KL to the prior
    enters the loss. Embeddings with sparse gradients (``torch.optim.SparseAdam``). A table
    knows only the particles it was trained on: it cannot encode new images.

    Parameters
    ----------
    n : int
        Particles.
    zdim : int
    variational : bool
    generator : torch.Generator, optional
        For the starting values.
    """

    def __init__(self, n: int, zdim: int, *, variational: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        self.zdim = zdim
        self.mean = nn.Embedding(n, zdim, sparse=True)
        with torch.no_grad():
            self.mean.weight.copy_(0.1 * torch.randn(n, zdim, generator=generator))
        self.logvar = nn.Embedding(n, zdim, sparse=True) if variational else None
        if self.logvar is not None:
            nn.init.zeros_(self.logvar.weight)

    @property
    def variational(self) -> bool:
        """Whether each particle's latent is a Gaussian (with a KL term) rather than a point."""
        return self.logvar is not None

    def forward(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Means (B, zdim) and log-variances (B, zdim; ``None`` for points) of particles ``indices`` (B,)."""
        return self.mean(indices), None if self.logvar is None else self.logvar(indices)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A sample ``mu + exp(logvar / 2) * eps`` of the posterior, differentiable in both."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` per batch item, (B, zdim) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


class PoseEncoder(nn.Module):
    """A posterior over an image's rotation (the seed's pose-VAE baseline, section 5.6.3).

    The mean rotation comes from six outputs in the S2 x S2 parameterisation; the spread is a
    diagonal Gaussian in the tangent space at the mean (axis-angle, radians), from which
    :func:`sample_rotation` draws.

    Parameters
    ----------
    in_dim : int
        Pixels fed in.
    hidden, layers : int
    residual : {"post", "pre"}
        The residual blocks' form (:class:`ResidualMLP`).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, *, residual: str = "post"):
        super().__init__()
        self.mlp = ResidualMLP(in_dim, hidden, layers, 9, residual=residual)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in_dim) -> mean rotation (B, 3, 3), log-variance of the tangent Gaussian (B, 3)."""
        out = self.mlp(pixels).float()
        return s2s2_to_matrix(out[:, :6]), out[:, 6:]


def sample_rotation(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``mean @ exp([e]_x)`` with ``e ~ N(0, exp(logvar))``: (B, 3, 3), (B, 3) -> (B, 3, 3), differentiable."""
    with torch.autocast(mean.device.type, enabled=False):  # rotations in fp32
        e = torch.randn_like(logvar.float()) * torch.exp(0.5 * logvar.float())
        return mean.float() @ torch.linalg.matrix_exp(skew(e))
