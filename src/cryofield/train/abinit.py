"""Ab initio reconstruction: training interleaved with pose search, and the model reset (cryoDRGN2 "+r").

The schedule, in three stages (the seed's section 5.3.3):

1. ``epochs_search`` epochs: the first on random poses, then a pose search in every
   ``search_every``-th epoch (epochs 1, 1 + every, ...), the epochs between reusing the
   last poses. The search is online: ``search_chunk`` particles at a time are searched
   with the current model and trained on at once, so the model improves during the
   epoch, as with cryoDRGN's search per batch. Searching all particles against one model
   (``search_chunk = 0``) got stuck at wrong, self-consistent poses in our tests, even at
   SNR 10: every image is placed against the same featureless first model. The search's
   band limit grows from ``kmin`` to ``kmax`` over ``kmax_ramp_epochs`` epochs, as the
   model resolves finer detail.
2. ``epochs_fixed`` epochs (0 to skip the reset): the networks and the optimiser start
   afresh and train on the last poses. A decoder trained while the poses were poor
   predicts a constant at high frequency and its gradients there vanish; the reset cures
   it (logged as ``grad_high``, the gradient norm of the decoder's last layer for the
   high-frequency half of the loss).
3. ``epochs_refine`` epochs with a pose search at the first and every ``search_every``-th.

Heterogeneous runs (``zdim > 0``) train an image encoder with the decoder, as ``train-vae``
does. Rendering the model at every image's own latent would cost a lattice per image;
instead each searched chunk is searched against the model at the mean of its posterior
means (``search_groups = 1``, the default), or its images are grouped by k-means on their
latents and each group searched against the model at its centre. Training then uses each
image's own latent. On a 1-D motion of adenylate kinase, one group converged (median
rotation error 0.015 after the second search) where four groups did not (1.27, and 0.149
after the fourth): early in training the groups' models disagree with each other, and
poses found against different models do not share one frame.

Tilt pairs (``data.tilted``, the stage tilt ``tilt_deg`` about x) are searched together:
every rotation ``R`` is scored on the untilted image at ``R`` plus the tilted one at
``Rx(tilt) R``, each image with its own best shift.

Two baselines of the seed's chapter 5 learn the poses instead of searching them, in one
stage: ``method = "gd"`` starts every particle at a random rotation and zero shift and
descends the image loss on per-particle corrections (the volume trained jointly), and
``method = "pose-vae"`` trains an encoder that predicts each image's rotation (S2 x S2
mean, a tangent-space Gaussian around it) with the decoder. Both are expected to fail from
random starts (the seed's table 5.2).

Images are prepared once, uncentred; after each search they are centred by the found
shifts. Checkpoints hold the models, optimiser, poses, epoch and RNG state, so ``resume``
continues exactly.
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
from cryofield.imaging import render_volume, shift_phase_at
from cryofield.io import write_map
from cryofield.posesearch import (
    BnbSettings,
    BranchAndBound,
    PoseSearch,
    SearchSettings,
    TiltedViews,
    render_lattice,
)
from cryofield.so3 import geodesic_distance, random_rotations, rotation_about_x
from cryofield.train.config import TrainConfig
from cryofield.train.distributed import Runtime, autocast, needs_grad_scaler, resolve_device
from cryofield.train.loop import (
    Models,
    _rng_state,
    _to,
    adam,
    build_models,
    encode,
    load_adam,
    posterior_means,
    run_epoch,
    slice_coords,
)


@dataclass
class AbinitConfig(TrainConfig):
    """A :class:`TrainConfig` plus the schedule and the pose search's settings.

    Units: band limits in cycles per box (Fourier pixels), ``shift_extent_px`` in pixels
    (default ``20 * D / 128``). ``epochs`` is the total, set from the three stages.
    """

    method: str = "hps"  # pose search: "hps" (cryoDRGN2) or "bnb" (cryoDRGN-BNB); learned: "gd" or "pose-vae"
    epochs_search: int = 30
    epochs_fixed: int = 30
    epochs_refine: int = 30
    search_every: int = 5
    kmax_ramp_epochs: int = 25
    base_level: int = 2
    keep: int = 8
    rounds: int = 4
    kmin: float = 12.0
    kmax: float = 48.0
    n_shifts: int = 14
    shift_extent_px: float | None = None
    oversample: float = 2.0
    search_batch: int = 32
    search_chunk: int = 256  # online search: particles per model render (0: all at once, with one model)
    search_groups: int = 1  # heterogeneous: models per chunk, at k-means centres of its latents (1: their mean)

    def __post_init__(self):
        if self.learns_poses and (self.epochs_fixed or self.epochs_refine):
            raise ValueError(f"method {self.method} runs one stage: set epochs_fixed and epochs_refine to 0")
        if self.method == "pose-vae" and self.beta is None:
            self.beta = 1.0  # the rotation posterior's KL at the ELBO's weight (there is no z to set 1/zdim)
        self.epochs = self.epochs_search + self.epochs_fixed + self.epochs_refine

    @property
    def learns_poses(self) -> bool:
        """Whether the poses are learned by gradient descent (the baselines) rather than searched."""
        return self.method in ("gd", "pose-vae")

    @property
    def search_settings(self) -> SearchSettings | BnbSettings:
        """The pose search's grids and bands (``rounds`` are the subdivisions of branch and bound)."""
        shared = {name: getattr(self, name) for name in ("base_level", "kmin", "kmax", "n_shifts", "shift_extent_px")}
        if self.method == "bnb":
            return BnbSettings(subdivisions=self.rounds, **shared)
        return SearchSettings(keep=self.keep, rounds=self.rounds, **shared)

    def stage(self, epoch: int) -> int:
        """1, 2 or 3: the stage an epoch belongs to."""
        if epoch < self.epochs_search:
            return 1
        return 2 if epoch < self.epochs_search + self.epochs_fixed else 3

    def searches(self, epoch: int) -> bool:
        """Whether a pose search runs before this epoch."""
        if self.learns_poses:
            return False
        stage = self.stage(epoch)
        if stage == 1:
            return epoch >= 1 and (epoch - 1) % self.search_every == 0
        if stage == 3:
            return (epoch - self.epochs_search - self.epochs_fixed) % self.search_every == 0
        return False

    def resets(self, epoch: int) -> bool:
        """Whether the networks and optimiser start afresh before this epoch (the start of stage 2)."""
        return self.epochs_fixed > 0 and epoch == self.epochs_search

    def search_kmax(self, epoch: int, box: int) -> float:
        """The search's band limit before ``epoch``, cycles per box: ``kmin`` ramping to ``kmax``."""
        top = min(self.kmax, box / 2)
        ramp = min(1.0, epoch / self.kmax_ramp_epochs) if self.kmax_ramp_epochs > 0 else 1.0
        return min(self.kmin, top) + (top - min(self.kmin, top)) * ramp


@dataclass
class Poses:
    """Rotations (N, 3, 3) and shifts (N, 2) in pixels (RELION's sign) of every particle.

    For tilt pairs ``tilt_shifts_px`` (N, 2) are the tilted images' own shifts (their
    rotations follow from the untilted ones and the stage tilt).
    """

    rotations: torch.Tensor
    shifts_px: torch.Tensor
    tilt_shifts_px: torch.Tensor | None = None

    def subset(self, where: torch.Tensor) -> Poses:
        """The poses of particles ``where`` (indices on the CPU)."""
        return Poses(self.rotations[where], self.shifts_px[where],
                     None if self.tilt_shifts_px is None else self.tilt_shifts_px[where])

    def state(self) -> dict:
        """Plain tensors, for checkpoints."""
        state = {"rotations": self.rotations, "shifts_px": self.shifts_px}
        return state | ({} if self.tilt_shifts_px is None else {"tilt_shifts_px": self.tilt_shifts_px})

    @classmethod
    def from_state(cls, state: dict) -> Poses:
        """Inverse of :meth:`state`, on the CPU."""
        tilt = state.get("tilt_shifts_px")
        return cls(state["rotations"].cpu(), state["shifts_px"].cpu(), None if tilt is None else tilt.cpu())


def centred(raw: PreparedParticles, poses: Poses, tilt: torch.Tensor | None = None) -> PreparedParticles:
    """The particles centred by their shifts, with their rotations (uncentred input, unchanged).

    Tilted partners, if any, are centred by ``poses.tilt_shifts_px`` and get the rotations
    ``tilt @ R`` (``tilt``, (3, 3), the stage tilt).
    """
    images = raw.images * shift_phase_at(raw.coords, poses.shifts_px.to(raw.coords), raw.box)
    rotations = poses.rotations.float().to(images.device)
    tilted = None
    if raw.tilted is not None:
        other = raw.tilted
        tilted = PreparedParticles(other.images * shift_phase_at(other.coords, poses.tilt_shifts_px.to(other.coords),
                                                                 other.box),
                                   other.coords, tilt.to(rotations) @ rotations, other.ctf, other.scale, other.box,
                                   other.pixel_size_angstrom)
    return PreparedParticles(images, raw.coords, rotations, raw.ctf, raw.scale, raw.box, raw.pixel_size_angstrom,
                             tilted)


def high_frequency_gradient(models: Models, batch: PreparedParticles, config: TrainConfig) -> float:
    """Norm of the gradient of the high-frequency loss (``|k| > D/4``) for the decoder's last layer.

    Heterogeneous models are evaluated at each image's posterior mean.
    """
    high = batch.coords.norm(dim=-1) > batch.box / 4
    last = models.decoder.mlp.last
    z = None
    if models.encoder is not None:
        with torch.no_grad():
            z = encode(models, batch)[0]
    models.decoder.zero_grad(set_to_none=True)
    predicted = models.decoder(slice_coords(batch.coords[high], batch.rotations, batch.box), z)
    if batch.ctf is not None:
        predicted = predicted * batch.ctf[:, high]
    (predicted - batch.images[:, high]).abs().pow(2).mean().backward()
    norm = float(torch.cat([p.grad.flatten() for p in last.parameters()]).norm())
    models.decoder.zero_grad(set_to_none=True)
    return norm


@dataclass
class _Training:
    """The networks of a stage and what steps them."""

    models: Models
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    pose_optimizer: torch.optim.Optimizer | None  # the gd baseline's per-particle corrections

    def state(self) -> dict:
        state = {"models": self.models.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict()}
        return state | ({} if self.pose_optimizer is None else {"pose_optimizer": self.pose_optimizer.state_dict()})

    def load(self, state: dict) -> None:
        self.models.load_state_dict(state["models"])
        load_adam(self.optimizer, state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.pose_optimizer is not None:
            self.pose_optimizer.load_state_dict(state["pose_optimizer"])


def _fresh(config: AbinitConfig, data: PreparedParticles, runtime: Runtime, stage: int) -> _Training:
    """New networks (seeded per stage), their optimiser and scaler."""
    from dataclasses import replace

    gd = config.method == "gd"
    models = build_models(replace(config, seed=config.seed + 1000 * (stage - 1), refine_poses=gd), data.box,
                          data.n_pixels, len(data), pose_encoder=config.method == "pose-vae").to(runtime.device)
    optimizer = adam(models.parameters(), config.lr)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=needs_grad_scaler(runtime.device, config.amp))
    poses = torch.optim.SparseAdam(models.poses.parameters(), lr=config.pose_lr) if gd else None
    return _Training(models, optimizer, scaler, poses)


@torch.no_grad()
def learned_poses(models: Models, start: Poses, raw: PreparedParticles, batch_size: int = 512) -> Poses:
    """The baselines' current poses: the starts corrected (gd), or the pose encoder's means (pose-vae)."""
    if models.poses is not None:
        d_rotation, d_shift = models.poses.all()
        return Poses(start.rotations @ d_rotation.cpu(), start.shifts_px + d_shift.cpu())
    rotations = []
    for part in torch.arange(len(raw)).split(batch_size):
        batch = raw.subset(part.to(raw.images.device))
        rotations.append(models.pose_encoder(encoder_input(batch.images, batch.ctf))[0].cpu())
    return Poses(torch.cat(rotations), start.shifts_px.clone())


def abinit(config: AbinitConfig, data: PreparedParticles, *, runtime: Runtime | None = None,
           resume: bool = False, progress: Callable[[int, int, str], None] | None = None,
           log: Callable[[dict], None] | None = None,
           on_search: Callable[[int, Poses], None] | None = None) -> tuple[Models, Poses]:
    """Reconstruct a volume, or a distribution of volumes, and every particle's pose from images alone.

    Parameters
    ----------
    config : AbinitConfig
        ``zdim`` 0 for one volume, more for a VAE over the images.
    data : PreparedParticles
        The images uncentred (prepared with zero shifts; the rotations are ignored); tilt
        pairs with ``data.tilted`` (tilted by ``config.tilt_deg`` about x).
    runtime : Runtime, optional
        Device (default ``config.device``); one process.
    resume : bool
        Continue from ``OUTDIR/checkpoints/last.pt``.
    progress : callable, optional
        ``progress(images_done, epoch, what)`` with ``what`` "search" or "train".
    log : callable, optional
        Receives each epoch's record (also appended to ``OUTDIR/log.jsonl``).
    on_search : callable, optional
        ``on_search(epoch, poses)`` after each search (e.g. to plot the viewing directions).

    Returns
    -------
    (Models, Poses)
        The last stage's networks and the poses they were trained on. ``OUTDIR/maps/`` holds
        the map at the end of each stage (heterogeneous runs: at the median posterior mean),
        and heterogeneous runs write the posterior means to ``OUTDIR/z.npy`` (N, zdim).
    """
    if config.method != "hps" and (config.zdim or data.tilted is not None):
        raise ValueError(f"method {config.method} reconstructs one volume from single images; use the hierarchical "
                         "search")
    runtime = runtime or Runtime(resolve_device(config.device))
    outdir = Path(config.outdir)
    (outdir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (outdir / "maps").mkdir(exist_ok=True)
    if not resume:
        (outdir / "log.jsonl").unlink(missing_ok=True)
    device = runtime.device
    n = len(data)
    tilt = None if data.tilted is None else rotation_about_x(config.tilt_deg, dtype=torch.float32).to(device)
    sampler = torch.Generator().manual_seed(config.seed)
    start = 0
    training = _fresh(config, data, runtime, 1)
    initial = Poses(random_rotations(n, generator=torch.Generator().manual_seed(config.seed), dtype=torch.float32),
                    torch.zeros(n, 2), None if tilt is None else torch.zeros(n, 2))
    poses = initial
    if resume:
        state = torch.load(outdir / "checkpoints/last.pt", weights_only=True, map_location=device)
        start = int(state["epoch"]) + 1
        training = _fresh(config, data, runtime, config.stage(state["epoch"]))
        training.load(state)
        poses = Poses.from_state(state["poses"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        sampler.set_state(state["rng"]["sampler"].cpu())
    raw = _to(data, device)
    if config.method == "bnb":
        search = BranchAndBound(raw.coords, data.box, config.search_settings, batch_size=config.search_batch)
    else:
        search = PoseSearch(raw.coords, data.box, config.search_settings, batch_size=config.search_batch,
                            amp=config.amp)
    probe = torch.from_numpy(np.random.default_rng(config.seed).choice(n, min(n, 64), replace=False))
    posed = centred(raw, initial if config.learns_poses else poses, tilt)  # the baselines correct the starts
    for epoch in range(start, config.epochs):
        started = time.perf_counter()
        stage = config.stage(epoch)
        record = {"epoch": epoch, "stage": stage}
        if config.resets(epoch):
            training = _fresh(config, data, runtime, stage)
            record["reset"] = True
        models = training.models
        trained = None
        if config.searches(epoch):
            kmax = config.search_kmax(epoch, data.box)
            t0 = time.perf_counter()
            new, trained = _search_epoch(config, models, search, raw, poses, tilt, kmax, epoch,
                                         (training.optimizer, training.scaler, sampler), runtime, progress)
            change = torch.rad2deg(geodesic_distance(new.rotations.double(), poses.rotations.double()))
            record |= {"search_kmax": round(kmax, 2),
                       "search_seconds": round(time.perf_counter() - t0 - (trained or {}).get("seconds", 0), 3),
                       "pose_change_deg_median": round(float(change.median()), 3),
                       "shift_change_px_median": round(float((new.shifts_px - poses.shifts_px).norm(dim=-1)
                                                             .median()), 3)}
            poses = new
            posed = centred(raw, poses, tilt)
            if on_search is not None:
                on_search(epoch, poses)
        if trained is None:
            trained = run_epoch(models, posed, config, training.optimizer, training.scaler, sampler, runtime,
                                epoch=epoch, pose_optimizer=training.pose_optimizer,
                                progress=None if progress is None else (lambda done, e: progress(done, e, "train")))
        if config.learns_poses:
            poses = learned_poses(models, initial, raw)
            if on_search is not None and ((epoch + 1) % config.search_every == 0 or epoch + 1 == config.epochs):
                on_search(epoch, poses)
        record |= {"mse": trained["mse"], "train_seconds": trained["seconds"],
                   "grad_high": high_frequency_gradient(models, centred(raw.subset(probe.to(device)),
                                                                        poses.subset(probe), tilt), config),
                   "seconds": round(time.perf_counter() - started, 3)}
        if models.encoder is not None or models.pose_encoder is not None:
            record["kl"] = trained["kl"]
        record["images_per_second"] = round(n / record["seconds"], 1)
        with open(outdir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if log is not None:
            log(record)
        last_of_stage = epoch + 1 == config.epochs or config.stage(epoch + 1) != stage
        if last_of_stage:
            z = None
            if models.encoder is not None:
                means = posterior_means(models, posed)
                np.save(outdir / "z.npy", means)
                z = torch.from_numpy(np.median(means, axis=0))[None].to(device)
            with torch.no_grad():
                volume = render_volume(models.decoder, data.box, z, device=device) * data.scale
            write_map(outdir / "maps" / f"stage{stage}.mrc", volume.cpu().numpy(), data.pixel_size_angstrom)
        if (epoch + 1) % config.checkpoint == 0 or last_of_stage:
            state = training.state() | {"epoch": epoch, "rng": _rng_state(sampler), "poses": poses.state()}
            torch.save(state, outdir / "checkpoints" / f"epoch_{epoch:04d}.pt")
            torch.save(state, outdir / "checkpoints" / "last.pt")
    return models, poses


def _search_epoch(config: AbinitConfig, models: Models, search, raw: PreparedParticles, poses: Poses,
                  tilt: torch.Tensor | None, kmax: float, epoch: int, state: tuple, runtime: Runtime,
                  progress) -> tuple[Poses, dict | None]:
    """Search every particle's pose, at once or online (``search_chunk``).

    Online, the particles go chunk by chunk in random order: each chunk is searched with the
    current model and trained on at once (the returned record), as cryoDRGN interleaves
    search and training; otherwise ``None`` is returned and the epoch trains afterwards.
    """
    n = len(raw)
    chunk = config.search_chunk or n
    order = torch.randperm(n, generator=state[2]) if chunk < n else torch.arange(n)
    found = Poses(poses.rotations.clone(), poses.shifts_px.clone(),
                  None if poses.tilt_shifts_px is None else poses.tilt_shifts_px.clone())
    sums = {"mse": 0.0, "kl": 0.0, "seconds": 0.0}
    # online, the bar follows the training of each chunk; at once, the search
    count = None if progress is None or chunk < n else _counter(progress, epoch, "search")
    for start in range(0, n, chunk):
        where = order[start:start + chunk]
        part = raw.subset(where.to(raw.images.device))
        for members, z in _latent_groups(models, centred(part, poses.subset(where), tilt), config):
            lattice = render_lattice(models.decoder, raw.box, kmax, oversample=config.oversample, z=z,
                                     amp=config.amp, device=raw.images.device)
            own = part.subset(members.to(part.images.device))
            tilted = None if own.tilted is None else TiltedViews(own.tilted.images, own.tilted.ctf, tilt)
            result = search(lattice, own.images, own.ctf, kmax=kmax, tilted=tilted, progress=count)
            rows = where[members]
            found.rotations[rows], found.shifts_px[rows] = result.rotations.cpu(), result.shifts_px.cpu()
            if tilted is not None:
                found.tilt_shifts_px[rows] = result.tilt_shifts_px.cpu()
        if chunk < n:
            done = run_epoch(models, centred(part, found.subset(where), tilt), config, *state, runtime, epoch=epoch,
                             progress=None if progress is None
                             else (lambda d, e, s=start: progress(s + d, e, "search + train")))
            for key in ("mse", "kl"):
                sums[key] += done[key] * len(where)
            sums["seconds"] += done["seconds"]
    trained = ({"mse": sums["mse"] / n, "kl": sums["kl"] / n, "seconds": round(sums["seconds"], 3)}
               if chunk < n else None)
    return found, trained


def _latent_groups(models: Models, posed: PreparedParticles,
                   config: AbinitConfig) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The particles of a chunk grouped for the search: ``(positions (G_i,), latent (1, zdim) or None)``.

    One group, without a latent, for a homogeneous model; otherwise the whole chunk at its
    mean posterior mean, or k-means clusters of the posterior means, each at its mean latent.
    """
    everyone = torch.arange(len(posed))
    if models.encoder is None:
        return [(everyone, None)]
    with torch.no_grad(), autocast(posed.images.device, config.amp):
        means = torch.cat([encode(models, posed.subset(part.to(posed.images.device)))[0].float()
                           for part in everyone.split(512)]).cpu()
    groups = min(config.search_groups, len(posed))
    if groups == 1:
        return [(everyone, means.mean(0, keepdim=True).to(posed.images.device))]
    from sklearn.cluster import KMeans

    labels = KMeans(groups, n_init=1, random_state=config.seed).fit_predict(means.double().numpy())
    labels = torch.from_numpy(labels)
    out = []
    for label in labels.unique():
        members = everyone[labels == label]
        out.append((members, means[members].mean(0, keepdim=True).to(posed.images.device)))
    return out


def _counter(progress: Callable[[int, int, str], None], epoch: int, what: str) -> Callable[[int], None]:
    """Turn per-batch counts into running totals for ``progress``."""
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        progress(done, epoch, what)

    return step
