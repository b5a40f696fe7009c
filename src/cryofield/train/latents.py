"""Per-image refinement of the latents: close the encoder's amortization gap.

The encoder maps an image to ``q(z | X)`` in one pass; at SNR 0.1 its mean is a noisy
estimate of where the decoder explains the image best. With the decoder fixed, each
image's own maximum a posteriori latent minimises the training objective with the
encoder left out,

    L_i(z) = mean_k |CTF_i(k) F(R_i^T k, z) - X_i(k)|^2 + beta |z|^2 / (2 M),

over the half-lattice pixels ``k`` inside a radius (``M = 2P - 1`` real pixels, the
weighting of the KL in training, so the prior is the one the model was trained with).
It is found by Adam on ``z`` from the encoder mean, a batch of images at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cryofield.data import ParticleSource, PreparedParticles
from cryofield.train.distributed import autocast
from cryofield.train.inference import batches, image_errors, particles_in
from cryofield.train.models import Models
from cryofield.train.objective import encode


def _objective(models: Models, batch: PreparedParticles, z: torch.Tensor, prior_weight: float) -> torch.Tensor:
    """``L_i(z)`` (B,) of each particle of the (band-limited) batch, fp32: its training loss plus the prior.

    A tilt series' loss is the mean over its images, its prior shared by them (as in training).
    """
    pixels = 2 * batch.coords.shape[0] - 1
    if batch.tilt_mask is not None:
        pixels = pixels * batch.tilt_mask.sum(1)
    return image_errors(models, batch, z) + prior_weight * 0.5 * z.pow(2).sum(-1) / pixels


def refine_latents(models: Models, data: ParticleSource, *, steps: int = 10, lr: float = 0.05,
                   radius_px: float | None = None, kl_weight: float = 1.0, amp: bool = True, batch_size: int = 64,
                   chunk_size: int = 4096, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Each image's MAP latent under the trained decoder, from its encoder mean.

    Parameters
    ----------
    models : Models
        A trained VAE (encoder and decoder); its weights are not changed.
    data : ParticleSource
        The particles, prepared as for training (same scale), in memory or lazy.
    steps : int
        Adam steps per image (0 returns the encoder means).
    lr : float
        Adam's step size, in latent units (the prior's standard deviation is 1).
    radius_px : float or None
        Fit only pixels with ``|k| < radius_px`` (in pixels of the box, Nyquist = box/2);
        None (default) fits all pixels of the training circle. 20 px at box 64 costs 40 %
        of the full circle and keeps most of the gain.
    kl_weight : float
        ``beta`` of the run (the prior's weight).
    amp : bool
        bf16/fp16 autocast for the decoder.
    batch_size, chunk_size : int
        Images refined together; images read at a time from a lazy source.
    progress : callable, optional
        Called with the number of images finished after each batch.

    Returns
    -------
    ndarray, shape (N, zdim), float32
        The refined latents, in particle order.
    """
    if models.encoder is None:
        raise ValueError("latent refinement needs a VAE (an encoder)")
    device = next(models.decoder.parameters()).device
    frozen = [p for p in models.network_parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    out = []
    try:
        for _, batch in batches(data, batch_size, device, chunk_size):
            with torch.no_grad():  # the encoder means exactly as posterior_means gives them
                mu, _ = encode(models, batch)
            z = mu.float().clone().requires_grad_(steps > 0)
            fit = batch.band_limited(radius_px)
            optimizer = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, amp):
                    loss = _objective(models, fit, z, kl_weight)
                loss.sum().backward()  # images are independent: the sum's gradient is each image's own
                optimizer.step()
            out.append(z.detach().cpu())
            if progress is not None:
                progress(particles_in(batch))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return torch.cat(out).numpy()
