"""The training loop for neural volumes: single (``zdim = 0``) or a VAE over images.

The model predicts each particle's centred transform at the half-lattice pixels inside the
circle, ``CTF * F(R^T k, z)``; the loss is the mean squared error per pixel against the
data, plus ``beta * KL / M`` for the VAE: the KL of an image spread over the ``M = 2P - 1``
real pixels of the full circle that its ``P`` half-lattice coefficients stand for (the mean
over the half lattice of ``|dF|^2`` equals the mean over the full circle of the Hartley
residual ``dH^2``, so this is cryoDRGN's and the seed's weighting).
With tilt pairs the encoder sees both images and the decoder predicts both. With pose
refinement each particle's rotation and shift carry a learned correction.

Checkpoints hold model, optimisers, scaler, epoch and RNG state as tensors and plain
values, loaded with ``weights_only=True``. Under ``torchrun`` every process runs this loop
on its share of each batch (:func:`cryofield.data.epoch_plan`) with the networks wrapped in
``DistributedDataParallel``; rank 0 writes the outputs.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cryofield.data import ParticleSource, PreparedParticles, encoder_input, epoch_plan
from cryofield.imaging import shift_phase_at
from cryofield.nn import (
    ImageEncoder,
    PoseCorrections,
    PoseEncoder,
    TiltPairEncoder,
    VolumeDecoder,
    kl_divergence,
    make_encoding,
    reparameterize,
    sample_rotation,
)
from cryofield.train.config import TrainConfig
from cryofield.train.distributed import Runtime, autocast, needs_grad_scaler, resolve_device


@dataclass
class Models:
    """The decoder and, for a VAE, the encoder; with pose refinement, the pose corrections.

    ``pose_encoder`` (the pose-VAE baseline of ab initio) predicts each image's rotation,
    which then replaces the batch's.
    """

    decoder: VolumeDecoder
    encoder: ImageEncoder | TiltPairEncoder | None
    poses: PoseCorrections | None = None
    pose_encoder: PoseEncoder | None = None

    def parameters(self) -> list[nn.Parameter]:
        """The networks' trainable parameters (not the pose corrections: they have their own optimiser)."""
        return [p for part in (self.decoder, self.encoder, self.pose_encoder) if part is not None
                for p in part.parameters()]

    def state_dict(self) -> dict:
        """Plain state dicts of every part."""
        state = {"decoder": self.decoder.state_dict(),
                 "encoder": self.encoder.state_dict() if self.encoder is not None else {},
                 "poses": self.poses.state_dict() if self.poses is not None else {}}
        return state | ({} if self.pose_encoder is None else {"pose_encoder": self.pose_encoder.state_dict()})

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.decoder.load_state_dict(state["decoder"])
        if self.encoder is not None:
            self.encoder.load_state_dict(state["encoder"])
        if self.poses is not None:
            self.poses.load_state_dict(state["poses"])
        if self.pose_encoder is not None:
            self.pose_encoder.load_state_dict(state["pose_encoder"])

    def to(self, device: torch.device) -> Models:
        """Move every part to ``device`` (in place); returns ``self``."""
        for part in (self.decoder, self.encoder, self.poses, self.pose_encoder):
            if part is not None:
                part.to(device)
        return self


def build_models(config: TrainConfig, box: int, n_pixels: int, n_particles: int | None = None, *,
                 pose_encoder: bool = False) -> Models:
    """The networks a configuration describes.

    Parameters
    ----------
    config : TrainConfig
    box : int
        Image size ``D``.
    n_pixels : int
        Half-lattice pixels per image ``P`` (the encoder sees ``2P`` numbers per image).
    n_particles : int, optional
        Needed for pose refinement (one correction per particle).
    pose_encoder : bool
        Add an encoder of rotations (``enc_dim`` x ``enc_layers``), the pose-VAE baseline.
    """
    torch.manual_seed(config.seed)
    encoding = make_encoding(config.pe_type, box, config.pe_dim, config.feat_sigma, seed=config.seed)
    decoder = VolumeDecoder(encoding, config.zdim, config.dec_dim, config.dec_layers, domain=config.domain,
                            residual=config.residual)
    encoder = None
    if config.zdim:
        kind = TiltPairEncoder if config.tilt else ImageEncoder
        encoder = kind(2 * n_pixels, config.enc_dim, config.enc_layers, config.zdim, residual=config.residual)
    poses = None
    if config.refine_poses:
        if n_particles is None:
            raise ValueError("pose refinement needs the number of particles")
        poses = PoseCorrections(n_particles)
    rotations = (PoseEncoder(2 * n_pixels, config.enc_dim, config.enc_layers, residual=config.residual)
                 if pose_encoder else None)
    return Models(decoder, encoder, poses, rotations)


def slice_coords(coords: torch.Tensor, rotations: torch.Tensor, box: int) -> torch.Tensor:
    """3D frequencies ``R^T (kx, ky, 0) / D`` (B, P, 3), box fractions, of 2D pixels ``coords`` (P, 2)."""
    k3 = torch.cat([coords, torch.zeros(len(coords), 1, device=coords.device)], -1)  # (P, 3)
    return torch.einsum("pi,bij->bpj", k3, rotations) / box


def _fits_on_device(data: PreparedParticles, device: torch.device, fraction: float = 0.5) -> bool:
    """Whether ``data`` is on a GPU with more than its size / ``fraction`` free (never true on CPU)."""
    if device.type != "cuda":
        return False
    tensors = [data.images, data.rotations, data.ctf]
    if data.tilted is not None:
        tensors += [data.tilted.images, data.tilted.rotations, data.tilted.ctf]
    size = sum(t.numel() * t.element_size() for t in tensors if t is not None)
    return size < fraction * torch.cuda.mem_get_info(device)[0]


def _to(batch: PreparedParticles, device: torch.device) -> PreparedParticles:
    if batch.images.device == device:
        return batch

    def move(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device, non_blocking=True)

    return PreparedParticles(move(batch.images), move(batch.coords), move(batch.rotations), move(batch.ctf),
                             batch.scale, batch.box, batch.pixel_size_angstrom,
                             None if batch.tilted is None else _to(batch.tilted, device))


def step_loss(models: Models, batch: PreparedParticles, config: TrainConfig, *, indices: torch.Tensor | None = None,
              sample: bool = True, amp: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mse, kl, restraint)`` of a batch, means over its images.

    ``kl`` is 0 without an encoder; ``restraint`` is the energy of a decoder that has one
    (the atomic model's bonds, :class:`cryofield.nn.GaussianResidues`), 0 otherwise.

    Parameters
    ----------
    models : Models
        The networks (possibly wrapped for distributed training).
    batch : PreparedParticles
        The batch's images, poses and CTF, on the networks' device.
    config : TrainConfig
    indices : Tensor, shape (B,), optional
        The batch's particle indices (needed for pose refinement).
    sample : bool
        Draw ``z`` from the posterior (training) or take its mean.
    amp : bool, optional
        Mixed precision (default ``config.amp``).
    """
    device = batch.images.device
    images, ctf, rotations = batch.images, batch.ctf, batch.rotations
    tilted = batch.tilted
    if models.poses is not None:
        d_rotation, d_shift = models.poses(indices.to(device))
        rotations = rotations @ d_rotation
        images = images * shift_phase_at(batch.coords, d_shift, batch.box)
    z = None
    kl = torch.zeros((), device=device)
    with autocast(device, config.amp if amp is None else amp):
        if models.pose_encoder is not None:  # the rotation is inferred from the image, and sampled
            mean, logvar = models.pose_encoder(encoder_input(images, ctf))
            rotations = sample_rotation(mean, logvar) if sample else mean
            kl = kl + kl_divergence(torch.zeros_like(logvar), logvar).mean()
        if models.encoder is not None:
            x = encoder_input(images, ctf)
            if tilted is not None:
                mu, logvar = models.encoder(x, encoder_input(tilted.images, tilted.ctf))
            else:
                mu, logvar = models.encoder(x)
            z = reparameterize(mu, logvar) if sample else mu
            kl = kl + kl_divergence(mu, logvar).mean()
        if tilted is not None:  # both images of each particle, from the same z
            tilt_rotations = tilted.rotations if models.poses is None else tilted.rotations @ d_rotation
            rotations = torch.cat([rotations, tilt_rotations])
            z = None if z is None else torch.cat([z, z])
        distributed = isinstance(models.decoder, DistributedDataParallel)
        decoder = models.decoder.module if distributed else models.decoder
        if hasattr(decoder, "project") and not distributed:
            # an atomic model computes its slices directly (faster); under DDP the call must go through the
            # wrapper's forward, which synchronises the gradients
            predicted = decoder.project(batch.coords, rotations, z)
        else:
            with torch.autocast(device.type, enabled=False):  # coordinates in fp32: bf16 would round them
                coords = slice_coords(batch.coords, rotations.float(), batch.box)
            predicted = models.decoder(coords, z)
    if tilted is not None:
        images = torch.cat([images, tilted.images])
        ctf = None if ctf is None else torch.cat([ctf, tilted.ctf])
    if ctf is not None:
        predicted = predicted * ctf
    mse = (predicted - images).abs().pow(2).mean()
    restraint = decoder.restraint(z) if hasattr(decoder, "restraint") else torch.zeros((), device=device)
    return mse, kl, restraint


def optimizer_step(net: Models, batch: PreparedParticles, config: TrainConfig, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, pose_optimizer: torch.optim.Optimizer | None = None, *,
                   indices: torch.Tensor | None = None, n_pixels: int) -> torch.Tensor:
    """One step of the optimisers on a batch.

    Without a gradient scaler (fp16) or pose corrections (SparseAdam), nothing in it waits
    for the device, so that a GPU runs ahead and the step can be captured as a CUDA graph
    (:class:`GraphedStep`).

    Parameters
    ----------
    net : Models
        The networks as this process calls them.
    batch : PreparedParticles
        On the networks' device.
    config : TrainConfig
    optimizer, scaler, pose_optimizer
        Adam over the networks, the gradient scaler, and the pose corrections' optimiser.
    indices : Tensor, shape (B,), optional
        The batch's particle indices (for pose corrections).
    n_pixels : int
        Half-lattice pixels per image, ``P`` (for the objective's weights).

    Returns
    -------
    Tensor, shape (3,)
        The batch's ``mse``, ``kl`` and ``restraint``, detached, on the device.
    """
    mse, kl, restraint = step_loss(net, batch, config, indices=indices)
    loss = config.objective(mse, kl, restraint, n_pixels)
    optimizer.zero_grad(set_to_none=True)
    if pose_optimizer is not None:
        pose_optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    if pose_optimizer is not None:
        scaler.step(pose_optimizer)
    scaler.update()
    return torch.stack([mse.detach(), kl.detach(), restraint.detach()])


class GraphedStep:
    """Optimiser steps of full batches, each replayed as one CUDA graph.

    On a GPU a step of these small networks is bound by launching its few hundred kernels
    from Python, not by arithmetic. After ``warmup`` ordinary steps (on a side stream, as
    capture requires), the whole step of a full batch (forward, backward and Adam) is
    captured once; each later full batch is copied into the graph's input tensors and the
    graph replayed, one launch per step. Shorter batches (an epoch's last, or with
    ``--lazy`` a buffer's) run as ordinary steps on the same parameters. The optimiser must
    be made with ``capturable=True``; see :func:`can_graph` for the runs that qualify. If
    capture fails, a warning says so and every step runs ordinarily.

    Parameters
    ----------
    optimizer : Optimizer
        The networks' optimiser (its gradients become the graph's buffers).
    batch_size : int
        The size of the batches replayed.
    device : torch.device
        The GPU the networks are on (streams and graph are made there, whichever GPU is current).
    warmup : int
        Ordinary steps before the capture.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, batch_size: int, device: torch.device, warmup: int = 3):
        if not all(group["capturable"] for group in optimizer.param_groups):
            raise ValueError("a CUDA graph needs an optimiser made with capturable=True")
        self.optimizer, self.batch_size, self.device, self.warmup = optimizer, batch_size, device, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self._steps = 0

    def __call__(self, step: Callable[[PreparedParticles], torch.Tensor], batch: PreparedParticles) -> torch.Tensor:
        """Run ``step(batch)`` (returning a (3,) tensor), through the graph where possible."""
        if self.failed or len(batch) != self.batch_size:
            return step(batch)
        if self.graph is None:
            self._steps += 1
            with torch.cuda.device(self.device):
                if self._steps <= self.warmup:
                    return self._on_side_stream(step, batch)
                try:
                    self._capture(step, batch)
                except RuntimeError as error:
                    warnings.warn(f"training without CUDA graphs (capture failed: {error})", stacklevel=2)
                    self.failed, self.graph = True, None
                    torch.cuda.synchronize()
                    return step(batch)
        _copy_into(self.inputs, batch)
        self.graph.replay()
        return self.outputs

    @staticmethod
    def _on_side_stream(step: Callable[[PreparedParticles], torch.Tensor], batch: PreparedParticles) -> torch.Tensor:
        side, main = torch.cuda.Stream(), torch.cuda.current_stream()
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out = step(batch)
        main.wait_stream(side)
        return out

    def _capture(self, step: Callable[[PreparedParticles], torch.Tensor], batch: PreparedParticles) -> None:
        self.inputs = _static_copy(batch)
        self.optimizer.zero_grad(set_to_none=True)  # the backward then allocates the gradients inside the graph
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.outputs = step(self.inputs)
        # an ordinary step sets the gradients to None; these references keep the graph's own alive
        self._gradients = [p.grad for group in self.optimizer.param_groups for p in group["params"]]
        self.graph = graph


def adam(parameters: Iterable[nn.Parameter], lr: float, capturable: bool = False) -> torch.optim.Adam:
    """Adam as the trainers use it: fused, and ``capturable`` for :class:`GraphedStep`.

    Fused Adam updates all parameters in one kernel per step: on one CPU thread 0.7 ms instead of
    6 ms for train-vae's 1.3 million parameters.

    Parameters
    ----------
    parameters : iterable of Parameter
    lr : float
        Step size.
    capturable : bool
        Keep its state on the device so that a CUDA graph can replay its steps.

    Returns
    -------
    torch.optim.Adam
    """
    return torch.optim.Adam(parameters, lr=lr, fused=True, capturable=capturable)


def load_adam(optimizer: torch.optim.Adam, state: dict, capturable: bool = False) -> None:
    """Load a checkpoint's Adam state into an optimiser from :func:`adam`, in place.

    Parameters
    ----------
    optimizer : torch.optim.Adam
        Made by :func:`adam` over the same parameters.
    state : dict
        ``optimizer.state_dict()`` of a checkpoint, from any device, fused or not.
    capturable : bool
        As ``optimizer`` was made.
    """
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["fused"], group["capturable"] = True, capturable
    for parameter, values in optimizer.state.items():  # fused Adam keeps its step counts with the parameters
        values["step"] = values["step"].to(parameter.device, torch.float32)


def can_graph(config: TrainConfig, runtime: Runtime, models: Models, scaler: torch.amp.GradScaler) -> bool:
    """Whether training replays its steps as CUDA graphs (:class:`GraphedStep`).

    On a GPU, in one process, unless turned off (``config.cuda_graph``) or compiled, for
    networks without per-particle pose parameters or a pose encoder, without a gradient
    scaler (fp16 checks its gradients on the host).

    Parameters
    ----------
    config : TrainConfig
    runtime : Runtime
    models : Models
    scaler : GradScaler

    Returns
    -------
    bool
    """
    return (config.cuda_graph and runtime.device.type == "cuda" and runtime.world_size == 1
            and not config.compile_mode and models.poses is None and models.pose_encoder is None
            and not scaler.is_enabled())


def _static_copy(batch: PreparedParticles) -> PreparedParticles:
    """A copy of a batch's per-image tensors (the pixel coordinates, the same for every batch, shared)."""
    def clone(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.clone()

    return PreparedParticles(clone(batch.images), batch.coords, clone(batch.rotations), clone(batch.ctf),
                             batch.scale, batch.box, batch.pixel_size_angstrom,
                             None if batch.tilted is None else _static_copy(batch.tilted))


def _copy_into(static: PreparedParticles, batch: PreparedParticles) -> None:
    for target, source in ((static.images, batch.images), (static.rotations, batch.rotations),
                           (static.ctf, batch.ctf)):
        if target is not None:
            target.copy_(source, non_blocking=True)
    if static.tilted is not None:
        _copy_into(static.tilted, batch.tilted)


def run_epoch(net: Models, data: ParticleSource, config: TrainConfig, optimizer: torch.optim.Optimizer,
              scaler: torch.amp.GradScaler, sampler: torch.Generator, runtime: Runtime, *, epoch: int = 0,
              pose_optimizer: torch.optim.Optimizer | None = None, graph: GraphedStep | None = None,
              progress: Callable[[int, int], None] | None = None) -> dict:
    """One pass over the particles in the order of :func:`epoch_plan`, one optimiser step per batch.

    Parameters
    ----------
    net : Models
        The networks as this process calls them (wrapped for distributed training).
    data : PreparedParticles or LazyParticles
        In memory (possibly on the device already) or read through a shuffling buffer.
    config : TrainConfig
    optimizer, scaler, sampler
        Adam over the networks, the gradient scaler, and the generator of the epoch's order
        (advanced by this call).
    runtime : Runtime
    epoch : int
        Reported to ``progress``.
    pose_optimizer : Optimizer, optional
        Steps the per-particle pose corrections.
    graph : GraphedStep, optional
        Replays full batches' steps as a CUDA graph (kept across epochs).
    progress : callable, optional
        ``progress(images_done_in_epoch, epoch)`` after each batch (rank 0).

    Returns
    -------
    dict
        ``epoch``, ``mse`` and ``kl`` (means per image over all processes), ``seconds``,
        ``images_per_second``; ``restraint`` (the mean energy) for models that have one.
    """
    started = time.perf_counter()
    n = len(data)
    in_memory = isinstance(data, PreparedParticles)
    plan = epoch_plan(n, config.batch_size, sampler, buffer_size=None if in_memory or not config.lazy
                      else config.buffer_size, rank=runtime.rank, world_size=runtime.world_size)
    sums = torch.zeros(3, dtype=torch.float64, device=runtime.device)  # mse, kl, restraint, times images
    done = 0
    for members, batches in plan:
        buffer = data if in_memory else data.load(members)
        # every batch's positions in the buffer, moved to its device at once: one transfer, not one per step
        positions = np.concatenate(batches) if in_memory else np.searchsorted(members, np.concatenate(batches))
        positions = torch.from_numpy(positions).to(buffer.images.device).split([len(b) for b in batches])
        for indices, where in zip(batches, positions):
            batch = _to(buffer.subset(where), runtime.device)

            def step(batch: PreparedParticles, indices: np.ndarray = indices) -> torch.Tensor:
                return optimizer_step(net, batch, config, optimizer, scaler, pose_optimizer,
                                      indices=torch.from_numpy(indices), n_pixels=data.n_pixels)

            losses = step(batch) if graph is None else graph(step, batch)
            sums += losses.double() * len(indices)  # no sync
            done += len(indices) * runtime.world_size
            if progress is not None and runtime.is_main:
                progress(min(done, n), epoch)
    seen_here = sum(len(b) for _, batches in plan for b in batches)
    totals = runtime.all_sum(torch.cat([sums, sums.new_tensor([seen_here])])).cpu()
    seconds = time.perf_counter() - started
    seen = max(float(totals[3]), 1.0)
    record = {"epoch": epoch, "mse": float(totals[0]) / seen, "kl": float(totals[1]) / seen,
              "seconds": round(seconds, 3), "images_per_second": round(seen / seconds, 1)}
    return record | ({"restraint": float(totals[2]) / seen} if float(totals[2]) else {})


def _rng_state(generator: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "sampler": generator.get_state()}


def _wrap(models: Models, runtime: Runtime) -> Models:
    """The networks as this process calls them: wrapped in DistributedDataParallel across processes."""
    if runtime.world_size == 1:
        return models
    if models.poses is not None or models.pose_encoder is not None:
        raise ValueError("pose refinement and pose encoders run in a single process (not under torchrun)")
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return Models(DistributedDataParallel(models.decoder, device_ids=ids),
                  None if models.encoder is None else DistributedDataParallel(models.encoder, device_ids=ids))


def train(config: TrainConfig, data: ParticleSource, *, runtime: Runtime | None = None, resume: bool = False,
          progress: Callable[[int, int], None] | None = None,
          log: Callable[[dict], None] | None = None, models: Models | None = None) -> Models:
    """Train for ``config.epochs`` epochs (continuing from the last checkpoint when ``resume``).

    Parameters
    ----------
    config : TrainConfig
    data : PreparedParticles or LazyParticles
        In memory, or read through a shuffling buffer of ``config.buffer_size`` images.
    runtime : Runtime, optional
        Device and process group (default: ``config.device``, one process).
    resume : bool
        Continue from ``OUTDIR/checkpoints/last.pt``: model, optimisers, scaler, epoch, RNG
        (exactly, in a single process).
    progress : callable, optional
        ``progress(images_done_in_epoch, epoch)`` after each batch (rank 0).
    log : callable, optional
        Receives the per-epoch record also appended to ``OUTDIR/log.jsonl`` (rank 0).
    models : Models, optional
        The networks to train (default: those ``config`` describes, :func:`build_models`).

    Returns
    -------
    Models
        On ``runtime.device``.
    """
    runtime = runtime or Runtime(resolve_device(config.device))
    outdir = Path(config.outdir)
    if runtime.is_main:
        (outdir / "checkpoints").mkdir(parents=True, exist_ok=True)
        if not resume:  # a fresh run in an old work directory starts a fresh log
            (outdir / "log.jsonl").unlink(missing_ok=True)
    if models is None:
        models = build_models(config, data.box, data.n_pixels, len(data))
    models = models.to(runtime.device)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=needs_grad_scaler(runtime.device, config.amp))
    graphed = can_graph(config, runtime, models, scaler)
    optimizer = adam(models.parameters(), config.lr, capturable=graphed)
    pose_optimizer = None if models.poses is None else torch.optim.SparseAdam(models.poses.parameters(),
                                                                               lr=config.pose_lr)
    sampler = torch.Generator().manual_seed(config.seed)
    start_epoch = 0
    if resume:
        state = torch.load(outdir / "checkpoints/last.pt", weights_only=True, map_location=runtime.device)
        models.load_state_dict(state["models"])
        load_adam(optimizer, state["optimizer"], capturable=graphed)
        if pose_optimizer is not None:
            pose_optimizer.load_state_dict(state["pose_optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        sampler.set_state(state["rng"]["sampler"].cpu())
        start_epoch = int(state["epoch"]) + 1
    if runtime.world_size > 1:  # the same plan everywhere, different noise in each process
        torch.manual_seed(config.seed + 7919 * runtime.rank + start_epoch)
    if config.compile_mode:
        for part in (models.decoder, models.encoder):
            if part is not None:
                part.compile(mode=config.compile_mode)
    net = _wrap(models, runtime)
    if isinstance(data, PreparedParticles) and _fits_on_device(data, runtime.device):
        data = _to(data, runtime.device)  # one transfer instead of one per batch
    graph = GraphedStep(optimizer, config.batch_size, runtime.device) if graphed else None
    for epoch in range(start_epoch, config.epochs):
        record = run_epoch(net, data, config, optimizer, scaler, sampler, runtime, epoch=epoch,
                           pose_optimizer=pose_optimizer, graph=graph, progress=progress)
        if not runtime.is_main:
            continue
        with open(outdir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if log is not None:
            log(record)
        if (epoch + 1) % config.checkpoint == 0 or epoch + 1 == config.epochs:
            state = {"models": models.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                     "scaler": scaler.state_dict(), "rng": _rng_state(sampler)}
            if pose_optimizer is not None:
                state["pose_optimizer"] = pose_optimizer.state_dict()
            torch.save(state, outdir / "checkpoints" / f"epoch_{epoch:04d}.pt")
            torch.save(state, outdir / "checkpoints" / "last.pt")
    return models


def load_models(outdir: str | Path, box: int, n_pixels: int,
                device: str | torch.device = "cpu") -> tuple[TrainConfig, Models]:
    """The configuration and trained networks of a work directory (last checkpoint), pose corrections excluded."""
    outdir = Path(outdir)
    config = TrainConfig.load(outdir / "config.json")
    models = build_models(_without_poses(config), box, n_pixels)
    state = torch.load(outdir / "checkpoints/last.pt", weights_only=True, map_location=device)["models"]
    models.load_state_dict({**state, "poses": {}})
    return config, models.to(torch.device(device))


def _without_poses(config: TrainConfig) -> TrainConfig:
    from dataclasses import replace
    return replace(config, refine_poses=False)


@torch.no_grad()
def posterior_means(models: Models, data: ParticleSource, batch_size: int = 512) -> np.ndarray:
    """``mu`` of ``q(z | X)`` for every particle, (N, zdim), in particle order."""
    return evaluate_images(models, data, batch_size, losses=False)[0]


@torch.no_grad()
def evaluate_images(models: Models, data: ParticleSource, batch_size: int = 256, losses: bool = True,
                    chunk_size: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Posterior means and log-variances (N, zdim), and each image's loss (N,) at ``z = mu``.

    The loss is the mean squared error between the image and the model's slice (times the
    CTF), over the half-lattice pixels inside the circle, in the normalised units of
    training (for tilt pairs, over both images). Without an encoder (``train-nn``) the
    latents are (N, 0). Lazy sources are read ``chunk_size`` images at a time.
    """
    device = next(models.decoder.parameters()).device
    means, logvars, errors = [], [], []
    for _, batch in batches(data, batch_size, device, chunk_size):
        if models.encoder is not None:
            mu, logvar = encode(models, batch)
        else:
            mu = logvar = torch.zeros((len(batch), 0), device=device)
        means.append(mu.cpu())
        logvars.append(logvar.cpu())
        if losses:
            errors.append(_image_losses(models, batch, mu if models.encoder is not None else None).cpu())
    return (torch.cat(means).numpy(), torch.cat(logvars).numpy(),
            torch.cat(errors).numpy() if losses else None)


@torch.no_grad()
def image_losses(models: Models, data: ParticleSource, latents: np.ndarray, batch_size: int = 256,
                 chunk_size: int = 4096) -> np.ndarray:
    """Each image's loss (N,) at given latents (N, zdim), as in :func:`evaluate_images`."""
    device = next(models.decoder.parameters()).device
    latents = torch.as_tensor(np.asarray(latents, np.float32))
    errors = []
    for start, batch in batches(data, batch_size, device, chunk_size):
        z = latents[start:start + len(batch)].to(device) if latents.shape[1] else None
        errors.append(_image_losses(models, batch, z).cpu())
    return torch.cat(errors).numpy()


def batches(data: ParticleSource, batch_size: int, device: torch.device,
            chunk_size: int = 4096) -> Iterator[tuple[int, PreparedParticles]]:
    """``(first particle, batch)`` over all particles in order, on ``device``; lazy sources read in chunks."""
    for start in range(0, len(data), chunk_size):
        chunk = data.load(np.arange(start, min(start + chunk_size, len(data))))
        for first in range(0, len(chunk), batch_size):
            yield start + first, _to(chunk.subset(torch.arange(first, min(first + batch_size, len(chunk)))), device)


def encode(models: Models, batch: PreparedParticles) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar)`` (B, zdim) of the encoder for a batch (both images of tilt pairs)."""
    x = encoder_input(batch.images, batch.ctf)
    if batch.tilted is not None:
        return models.encoder(x, encoder_input(batch.tilted.images, batch.tilted.ctf))
    return models.encoder(x)


def _image_losses(models: Models, batch: PreparedParticles, z: torch.Tensor | None) -> torch.Tensor:
    """Per-image mean squared error (B,) of the model's (CTF-weighted) slices at ``z``, fp32."""
    parts = [batch] if batch.tilted is None else [batch, batch.tilted]
    total = torch.zeros(len(batch), device=batch.images.device)
    for part in parts:
        predicted = models.decoder(slice_coords(batch.coords, part.rotations, batch.box), z)
        if part.ctf is not None:
            predicted = predicted * part.ctf
        total += (predicted - part.images).abs().pow(2).mean(-1)
    return total / len(parts)
