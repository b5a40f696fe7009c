"""The training loop for neural volumes: single (``zdim = 0``) or a VAE over images.

The model predicts each particle's centred transform at the half-lattice pixels inside the
circle, ``CTF * F(R^T k, z)``; the loss is the mean squared error per pixel against the
data, plus ``beta * KL / P`` for the VAE (the KL of an image spread over its ``P`` pixels).
Checkpoints hold model, optimiser, epoch and RNG state as tensors and plain values, loaded
with ``weights_only=True``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryofield.data import PreparedParticles, encoder_input
from cryofield.nn import ImageEncoder, VolumeDecoder, kl_divergence, make_encoding, reparameterize
from cryofield.train.config import TrainConfig


@dataclass
class Models:
    """The decoder and, for a VAE, the encoder."""

    decoder: VolumeDecoder
    encoder: ImageEncoder | None

    def parameters(self):
        """All trainable parameters."""
        params = list(self.decoder.parameters())
        return params + (list(self.encoder.parameters()) if self.encoder is not None else [])

    def state_dict(self) -> dict:
        """Plain state dicts of both networks."""
        return {"decoder": self.decoder.state_dict(),
                "encoder": self.encoder.state_dict() if self.encoder is not None else {}}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.decoder.load_state_dict(state["decoder"])
        if self.encoder is not None:
            self.encoder.load_state_dict(state["encoder"])


def build_models(config: TrainConfig, box: int, n_pixels: int) -> Models:
    """The networks a configuration describes, for images of ``box`` with ``n_pixels`` half-lattice pixels."""
    torch.manual_seed(config.seed)
    encoding = make_encoding(config.pe_type, box, config.pe_dim, config.feat_sigma, seed=config.seed)
    decoder = VolumeDecoder(encoding, config.zdim, config.dec_dim, config.dec_layers)
    encoder = ImageEncoder(2 * n_pixels, config.enc_dim, config.enc_layers, config.zdim) if config.zdim else None
    return Models(decoder, encoder)


def slice_coords(data: PreparedParticles, rotations: torch.Tensor) -> torch.Tensor:
    """3D coordinates (B, P, 3), box fractions, of the data's pixels for these rotations."""
    k3 = torch.cat([data.coords, torch.zeros(len(data.coords), 1)], -1)  # (P, 3)
    return torch.einsum("pi,bij->bpj", k3, rotations) / data.box


def step_loss(models: Models, data: PreparedParticles, indices: torch.Tensor, config: TrainConfig,
              *, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mse, kl)`` of a batch (``kl`` is 0 without an encoder)."""
    images = data.images[indices]
    ctf = None if data.ctf is None else data.ctf[indices]
    z = None
    kl = torch.zeros(())
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.amp and config.device == "cpu"):
        if models.encoder is not None:
            mu, logvar = models.encoder(encoder_input(images, ctf))
            z = reparameterize(mu, logvar) if sample else mu
            kl = kl_divergence(mu, logvar).mean()
        predicted = models.decoder(slice_coords(data, data.rotations[indices]), z)
    if ctf is not None:
        predicted = predicted * ctf
    mse = (predicted - images).abs().pow(2).mean()
    return mse, kl


def _rng_state(generator: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "sampler": generator.get_state()}


def train(config: TrainConfig, data: PreparedParticles, *, resume: bool = False,
          progress: Callable[[int, int], None] | None = None,
          log: Callable[[dict], None] | None = None) -> Models:
    """Train for ``config.epochs`` epochs (continuing from the last checkpoint when ``resume``).

    Parameters
    ----------
    config : TrainConfig
    data : PreparedParticles
    resume : bool
        Continue from ``OUTDIR/checkpoints/last.pt`` exactly: model, optimiser, epoch, RNG.
    progress : callable, optional
        ``progress(images_done_in_epoch, epoch)`` after each batch.
    log : callable, optional
        Receives the per-epoch record also appended to ``OUTDIR/log.jsonl``.

    Returns
    -------
    Models
    """
    outdir = Path(config.outdir)
    (outdir / "checkpoints").mkdir(parents=True, exist_ok=True)
    models = build_models(config, data.box, data.images.shape[1])
    optimizer = torch.optim.Adam(models.parameters(), lr=config.lr)
    sampler = torch.Generator().manual_seed(config.seed)
    start_epoch = 0
    if resume:
        state = torch.load(outdir / "checkpoints/last.pt", weights_only=True)
        models.load_state_dict(state["models"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        sampler.set_state(state["rng"]["sampler"])
        start_epoch = int(state["epoch"]) + 1
    n = len(data)
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        order = torch.randperm(n, generator=sampler)
        total_mse = total_kl = 0.0
        for start in range(0, n, config.batch_size):
            indices = order[start:start + config.batch_size]
            mse, kl = step_loss(models, data, indices, config)
            # mse is a mean over the P pixels of an image and kl a sum over z for the image: divide the
            # KL by P so that both are per pixel, as in the seed's objective (else z collapses)
            loss = mse + config.kl_weight * kl / data.images.shape[1]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_mse += mse.item() * len(indices)
            total_kl += kl.item() * len(indices)
            if progress is not None:
                progress(min(start + config.batch_size, n), epoch)
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, "mse": total_mse / n, "kl": total_kl / n, "seconds": round(seconds, 3),
                  "images_per_second": round(n / seconds, 1)}
        with open(outdir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if log is not None:
            log(record)
        if (epoch + 1) % config.checkpoint == 0 or epoch + 1 == config.epochs:
            state = {"models": models.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                     "rng": _rng_state(sampler)}
            torch.save(state, outdir / "checkpoints" / f"epoch_{epoch:04d}.pt")
            torch.save(state, outdir / "checkpoints" / "last.pt")
    return models


def load_models(outdir: str | Path, box: int, n_pixels: int) -> tuple[TrainConfig, Models]:
    """The configuration and trained networks of a work directory (last checkpoint)."""
    outdir = Path(outdir)
    config = TrainConfig.load(outdir / "config.json")
    models = build_models(config, box, n_pixels)
    models.load_state_dict(torch.load(outdir / "checkpoints/last.pt", weights_only=True)["models"])
    return config, models


@torch.no_grad()
def posterior_means(models: Models, data: PreparedParticles, batch_size: int = 512) -> np.ndarray:
    """``mu`` of ``q(z | X)`` for every particle, (N, zdim), in particle order."""
    return evaluate_images(models, data, batch_size, losses=False)[0]


@torch.no_grad()
def evaluate_images(models: Models, data: PreparedParticles, batch_size: int = 256,
                    losses: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Posterior means and log-variances (N, zdim), and each image's loss (N,) at ``z = mu``.

    The loss is the mean squared error between the image and the model's slice (times the
    CTF), over the half-lattice pixels inside the circle, in the normalised units of
    training. Without an encoder (``train-nn``) the latents are (N, 0).
    """
    means, logvars, errors = [], [], []
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        images = data.images[sl]
        ctf = None if data.ctf is None else data.ctf[sl]
        if models.encoder is not None:
            mu, logvar = models.encoder(encoder_input(images, ctf))
        else:
            mu = logvar = torch.zeros((len(images), 0))
        means.append(mu)
        logvars.append(logvar)
        if losses:
            predicted = models.decoder(slice_coords(data, data.rotations[sl]), mu if models.encoder else None)
            if ctf is not None:
                predicted = predicted * ctf
            errors.append((predicted - images).abs().pow(2).mean(-1))
    return (torch.cat(means).numpy(), torch.cat(logvars).numpy(),
            torch.cat(errors).numpy() if losses else None)
