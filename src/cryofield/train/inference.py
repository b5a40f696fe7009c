"""A trained model on particle images: latents, per-image losses, in particle order, in chunks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import torch

from cryofield.data import ParticleSource, PreparedParticles, TiltSeriesParticles
from cryofield.imaging import predict_images
from cryofield.nn import LatentTable
from cryofield.train.distributed import autocast
from cryofield.train.models import Models
from cryofield.train.objective import encode

#: Lattice points the decoder evaluates at once when predicting images to score them (about 1 GB
#: of activations for 256-wide networks at 256 px, 10 images of its half lattice).
DECODER_POINTS = 2**18


def batches(data: ParticleSource, batch_size: int, device: torch.device,
            chunk_size: int = 4096) -> Iterator[tuple[int, PreparedParticles]]:
    """``(first particle, batch)`` over all particles in order, on ``device``; lazy sources read in chunks.

    One chunk is held at a time (the last one goes before the next is read); sources held in
    memory make each batch ready as it is read. ``batch_size`` and ``chunk_size`` count
    images: tilt series are read a ``T``-th as many particles at a time.
    """
    if isinstance(data, TiltSeriesParticles):
        batch_size, chunk_size = max(1, batch_size // data.ntilts), max(1, chunk_size // data.ntilts)
    if data.random_access:
        for first in range(0, len(data), batch_size):
            yield first, data.load(np.arange(first, min(first + batch_size, len(data)))).to(device)
        return
    for start in range(0, len(data), chunk_size):
        chunk = None
        indices = np.arange(start, min(start + chunk_size, len(data)))
        chunk = data.load_compact(indices)
        for first in range(0, len(chunk), batch_size):
            yield start + first, chunk.subset(torch.arange(first, min(first + batch_size, len(chunk)))).to(device)


@torch.no_grad()
def posterior_means(models: Models, data: ParticleSource, batch_size: int = 512, chunk_size: int = 4096,
                    amp: bool = False) -> np.ndarray:
    """``mu`` of ``q(z | X)`` for every particle, (N, zdim), in particle order (lazy: ``chunk_size`` read at a time).

    ``amp``: the networks in the mixed precision of training (:func:`evaluate_images`).
    """
    return evaluate_images(models, data, batch_size, losses=False, chunk_size=chunk_size, amp=amp)[0]


@torch.no_grad()
def evaluate_images(models: Models, data: ParticleSource, batch_size: int = 256, losses: bool = True,
                    chunk_size: int = 4096, amp: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Posterior means and log-variances (N, zdim), and each particle's loss (N,) at ``z = mu``.

    The loss is the mean squared error between the image and the model's prediction, over
    the half-lattice pixels inside the circle, in the normalised units of training (for
    tilt pairs, over both images; for tilt series, over the tilts the encoder reads). Without
    an encoder (``train-nn``) the latents are (N, 0); with a latent table they are its rows
    (log-variances ``-inf`` for a table of points), and ``data`` must be the particles it was
    trained on, in order. Lazy sources
    are read ``chunk_size`` images at a time. With ``amp`` the networks run in the mixed
    precision a run trained in (``config.amp``: bf16 on CPUs), the results in float32.
    """
    device = next(models.decoder.parameters()).device
    if isinstance(models.encoder, LatentTable) and not losses:  # the table itself: no image to read
        mean = models.encoder.mean.weight.detach().float().cpu()
        spread = models.encoder.logvar
        return (mean.numpy(), (torch.full_like(mean, -torch.inf) if spread is None
                               else spread.weight.detach().float().cpu()).numpy(), None)
    means, logvars, errors = [], [], []
    for start, batch in batches(data, batch_size, device, chunk_size):
        with autocast(device, amp):
            if models.encoder is not None:
                mu, logvar = encode(models, batch, torch.arange(start, start + particles_in(batch)))
                mu = mu.float()
                logvar = torch.full_like(mu, -torch.inf) if logvar is None else logvar.float()
            else:
                mu = logvar = torch.zeros((particles_in(batch), 0), device=device)
            means.append(mu.cpu())
            logvars.append(logvar.cpu())
            if losses:
                errors.append(image_errors(models, batch, mu if models.encoder is not None else None).float().cpu())
    return (torch.cat(means).numpy(), torch.cat(logvars).numpy(),
            torch.cat(errors).numpy() if losses else None)


@torch.no_grad()
def image_losses(models: Models, data: ParticleSource, latents: np.ndarray, batch_size: int = 256,
                 chunk_size: int = 4096, amp: bool = False) -> np.ndarray:
    """Each image's loss (N,) at given latents (N, zdim), as in :func:`evaluate_images`."""
    device = next(models.decoder.parameters()).device
    latents = torch.as_tensor(np.asarray(latents, np.float32))
    errors = []
    for start, batch in batches(data, batch_size, device, chunk_size):
        z = latents[start:start + particles_in(batch)].to(device) if latents.shape[1] else None
        with autocast(device, amp):
            errors.append(image_errors(models, batch, z).float().cpu())
    return torch.cat(errors).numpy()


def particles_in(batch: PreparedParticles) -> int:
    """The particles of a batch: its images, or its tilt series (``B`` of ``B T`` images)."""
    return len(batch) if batch.tilt_mask is None else len(batch.tilt_mask)


def image_errors(models: Models, batch: PreparedParticles, z: torch.Tensor | None) -> torch.Tensor:
    """Per-particle mean squared error (B,) of the model's predicted images at ``z`` (B, zdim).

    Over both images of tilt pairs, and over the tilts of a tilt series (its padding left
    out). The decoder sees at most :data:`DECODER_POINTS` lattice points at once: a batch of
    many large images is predicted a few images at a time.
    """
    if batch.tilt_mask is not None:
        mask = batch.tilt_mask
        each = image_errors(models, replace(batch, tilt_mask=None),
                            None if z is None else z.repeat_interleave(mask.shape[1], dim=0))
        weight = mask.to(each.dtype)
        return (each.reshape(mask.shape) * weight).sum(1) / weight.sum(1)
    per_call = max(1, DECODER_POINTS // len(batch.coords))
    if len(batch) > per_call:
        return torch.cat([image_errors(models, batch.subset(torch.arange(first, min(first + per_call, len(batch)),
                                                                         device=batch.images.device)),
                                       None if z is None else z[first:first + per_call])
                          for first in range(0, len(batch), per_call)])
    parts = [batch] if batch.tilted is None else [batch, batch.tilted]
    total = torch.zeros(len(batch), device=batch.images.device)
    for part in parts:
        predicted = predict_images(models.decoder, batch.coords, part.rotations, batch.box, z=z, ctf=part.ctf)
        total += (predicted - part.images).abs().pow(2).mean(-1)
    return total / len(parts)
