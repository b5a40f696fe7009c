"""The loss of a batch and one optimiser step: what every method trains on.

The model predicts each particle's centred transform at the half-lattice pixels inside the
circle (:func:`cryofield.imaging.predict_images`: ``CTF * F(R^T k, z)``); the loss is the
mean squared error per pixel against the data, plus ``beta * KL / M`` for the VAE: the KL
of an image spread over the ``M = 2P - 1`` real pixels of the full circle that its ``P``
half-lattice coefficients stand for (the mean over the half lattice of ``|dF|^2`` equals
the mean over the full circle of the Hartley residual ``dH^2``, so this is cryoDRGN's and
the seed's weighting). With tilt pairs the encoder sees both images and the decoder
predicts both; with tilt series it sees a particle's tilts and the decoder predicts
each. With pose refinement each particle's rotation and shift carry a learned
correction (in ab initio's pose-table phase, its rotation is a table's row). An atomic model adds
its restraint energy (:class:`cryofield.nn.GaussianResidues`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cryofield.data import PreparedParticles, encoder_input
from cryofield.imaging import predict_images
from cryofield.nn import LatentTable, kl_divergence, reparameterize, sample_rotation
from cryofield.train.config import TrainConfig
from cryofield.train.distributed import autocast
from cryofield.train.models import Models

Restraint = Callable[[torch.Tensor | None], torch.Tensor]


def step_loss(net: Models, batch: PreparedParticles, config: TrainConfig, *, indices: torch.Tensor | None = None,
              sample: bool = True, amp: bool | None = None, restraint: Restraint | None = None,
              pixels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mse, kl, restraint)`` of a batch, means over its images.

    A batch of tilt series (``batch.tilt_mask``) has one latent per particle, decoded for
    each of its tilts; its KL, one per particle, counts once for all of them (the mean per
    image is the particles' sum over their images').

    Parameters
    ----------
    net : Models
        The networks as this process calls them (parts possibly wrapped for distributed
        training).
    batch : PreparedParticles
        The batch's images, poses and CTF, on the networks' device.
    config : TrainConfig
    indices : Tensor, shape (B,), optional
        The batch's particle indices (needed for pose refinement and latent tables).
    sample : bool
        Draw ``z`` from the posterior (training) or take its mean.
    amp : bool, optional
        Mixed precision (default ``config.amp``).
    restraint : callable, optional
        ``restraint(z)``, an energy added to the loss (0 without).
    pixels : Tensor, shape (P',), optional
        Positions in ``batch.coords`` of the pixels the decoder is fit at (a band limit:
        :func:`band_pixels`); every pixel without. The encoder sees every pixel.

    Returns
    -------
    (Tensor, Tensor, Tensor)
        Scalars; ``kl`` is 0 without an encoder.
    """
    device = batch.images.device
    images, ctf, rotations, tilted, series = batch.images, batch.ctf, batch.rotations, batch.tilted, batch.tilt_mask
    shifts = None
    if net.poses is not None:
        d_rotation, shifts = net.poses(indices.to(device))
        if net.poses.absolute:  # a pose table's own rotation, as a correction of the batch's
            d_rotation = rotations.transpose(-1, -2) @ d_rotation
        rotations = rotations @ d_rotation
    z = None
    kl = torch.zeros((), device=device)
    with autocast(device, config.amp if amp is None else amp):
        if net.pose_encoder is not None:  # the rotation is inferred from the image, and sampled
            mean, logvar = net.pose_encoder(encoder_input(images, ctf))
            rotations = sample_rotation(mean, logvar) if sample else mean
            kl = kl + kl_divergence(torch.zeros_like(logvar), logvar).mean()
        if net.encoder is not None:
            mu, logvar = encode(net, batch, indices)
            z = mu if logvar is None or not sample else reparameterize(mu, logvar)
            if logvar is not None:  # a table of points has no KL term
                each = kl_divergence(mu, logvar)
                # a tilt series' KL is shared by its images: the ELBO per image is the mean over images
                kl = kl + (each.mean() if series is None else each.sum() / series.sum())
            if series is not None:
                z = z.repeat_interleave(series.shape[1], dim=0)  # each particle's z for each of its tilts
        if tilted is not None:  # both images of each particle, from the same z
            tilt_rotations = tilted.rotations if net.poses is None else tilted.rotations @ d_rotation
            rotations = torch.cat([rotations, tilt_rotations])
            z = None if z is None else torch.cat([z, z])
            shifts = None if shifts is None else torch.cat([shifts, torch.zeros_like(shifts)])
            images = torch.cat([images, tilted.images])
            ctf = None if ctf is None else torch.cat([ctf, tilted.ctf])
        coords = batch.coords
        if pixels is not None:  # the decoder fit inside a band only
            coords, images = coords[pixels], images[..., pixels]
            ctf = None if ctf is None else ctf[..., pixels]
        predicted = predict_images(net.decoder, coords, rotations, batch.box, z=z, ctf=ctf, shifts_px=shifts)
    if series is None:
        mse = (predicted - images).abs().pow(2).mean()
    else:  # the tilt images only, not the padding
        weight = series.reshape(-1).to(predicted.real.dtype)
        mse = ((predicted - images).abs().pow(2).mean(-1) * weight).sum() / weight.sum()
    energy = restraint(z) if restraint is not None else torch.zeros((), device=device)
    return mse, kl, energy


def band_pixels(coords: torch.Tensor, radius_px: float) -> torch.Tensor:
    """Positions of the pixels with ``|k| < radius_px`` (cycles per box), for :func:`step_loss`'s ``pixels``.

    Parameters
    ----------
    coords : Tensor, shape (P, 2)
        ``(kx, ky)`` of each pixel, cycles per box.
    radius_px : float

    Returns
    -------
    Tensor, shape (P',), int64, on ``coords``' device
    """
    return torch.nonzero(coords.norm(dim=1) < radius_px).squeeze(1)


def encode(net: Models, batch: PreparedParticles,
           indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(mu, logvar)`` (B, zdim) of the encoder for a batch (both images of tilt pairs; a tilt series' images).

    With a latent table (:class:`cryofield.nn.LatentTable`) the rows of particles
    ``indices`` (B,) instead, ``logvar`` ``None`` for a table of points.
    """
    if isinstance(net.encoder, LatentTable):
        if indices is None:
            raise ValueError("a latent table has a row per trained particle and cannot encode images: "
                             "pass the particles' indices")
        return net.encoder(indices.to(batch.images.device))
    x = encoder_input(batch.images, batch.ctf)
    if batch.tilt_mask is not None:
        return net.encoder(x, batch.tilt_mask)
    if batch.tilted is not None:
        return net.encoder(x, encoder_input(batch.tilted.images, batch.tilted.ctf))
    return net.encoder(x)


def optimizer_step(net: Models, batch: PreparedParticles, config: TrainConfig, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, pose_optimizer: torch.optim.Optimizer | None = None, *,
                   indices: torch.Tensor | None = None, n_pixels: int,
                   restraint: Restraint | None = None, pixels: torch.Tensor | None = None) -> torch.Tensor:
    """One step of the optimisers on a batch.

    Without a gradient scaler (fp16) or pose corrections (SparseAdam), nothing in it waits
    for the device, so that a GPU runs ahead and the step can be captured as a CUDA graph
    (:class:`cryofield.train.GraphedStep`).

    Parameters
    ----------
    net : Models
        The networks as this process calls them.
    batch : PreparedParticles
        On the networks' device.
    config : TrainConfig
        Its :meth:`TrainConfig.objective` weighs the terms.
    optimizer, scaler, pose_optimizer
        Adam over the networks, the gradient scaler, and the pose corrections' optimiser.
    indices : Tensor, shape (B,), optional
        The batch's particle indices (for pose corrections).
    n_pixels : int
        Half-lattice pixels fit per image, ``P`` (for the objective's weights).
    restraint, pixels
        As in :func:`step_loss`.

    Returns
    -------
    Tensor, shape (3,)
        The batch's ``mse``, ``kl`` and ``restraint``, detached, on the device.
    """
    mse, kl, energy = step_loss(net, batch, config, indices=indices, restraint=restraint, pixels=pixels)
    loss = config.objective(mse, kl, energy, n_pixels)
    optimizer.zero_grad(set_to_none=True)
    if pose_optimizer is not None:
        pose_optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    if pose_optimizer is not None:
        scaler.step(pose_optimizer)
    scaler.update()
    return torch.stack([mse.detach(), kl.detach(), energy.detach()])
