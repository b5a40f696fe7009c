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
shifts. :class:`Abinit` is a method on the run engine (:class:`cryofield.train.Trainer`):
the engine's checkpoints (models, optimiser, epoch and RNG state) carry the poses too, so
``resume`` continues exactly.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from cryofield.data import ParticleSource, PreparedParticles, encoder_input
from cryofield.errors import InputError
from cryofield.imaging import predict_images, render_volume, shift_phase_at
from cryofield.io import ParticleTable, WorkDir, write_map
from cryofield.io._atomic import atomic_outputs
from cryofield.io.export import write_particles
from cryofield.posesearch import (
    BnbSettings,
    BranchAndBound,
    PoseSearch,
    SearchSettings,
    TiltedViews,
    render_lattice,
)
from cryofield.so3 import geodesic_distance, random_rotations, rotation_about_x
from cryofield.train.config import KEPT, TrainConfig, setting
from cryofield.train.distributed import autocast
from cryofield.train.engine import Method, Trainer
from cryofield.train.inference import posterior_means
from cryofield.train.inputs import Progress, prepare, tilt_partners
from cryofield.train.models import Models, build_models
from cryofield.train.objective import encode


@dataclass
class AbinitConfig(TrainConfig):
    """A :class:`TrainConfig` plus the schedule and the pose search's settings.

    Units: band limits in cycles per box (Fourier pixels), ``shift_extent_px`` in pixels
    (default ``20 * D / 128``). ``epochs`` is the total, set from the three stages.
    """

    epochs: int = setting(90, resume=KEPT)  # the three stages'
    method: str = "hps"  # pose search: "hps" (cryoDRGN2) or "bnb" (cryoDRGN-BNB); learned: "gd" or "pose-vae"
    epochs_search: int = 30
    epochs_fixed: int = 30
    epochs_refine: int = 30
    search_every: int = 5
    kmax_ramp_epochs: int = 25
    base_level: int | None = None  # None: 2 (hps) or 1 (bnb)
    keep: int = 8
    rounds: int | None = None  # None: 4 (hps) or 5 (bnb)
    kmin: float = 12.0
    kmax: float = 48.0
    n_shifts: int | None = None  # None: 14 (hps) or 7 (bnb)
    shift_extent_px: float | None = None
    oversample: float = 2.0
    search_batch: int = 32
    search_chunk: int = 256  # online search: particles per model render (0: all at once, with one model)
    search_groups: int = 1  # heterogeneous: models per chunk, at k-means centres of its latents (1: their mean)

    def __post_init__(self):
        bnb = self.method == "bnb"
        for name, hps_default, bnb_default in (("base_level", 2, 1), ("rounds", 4, 5), ("n_shifts", 14, 7)):
            if getattr(self, name) is None:
                setattr(self, name, bnb_default if bnb else hps_default)
        if self.learns_poses and (self.epochs_fixed or self.epochs_refine):
            raise ValueError(f"method {self.method} runs one stage: set epochs_fixed and epochs_refine to 0")
        if self.method == "pose-vae" and self.beta is None:
            self.beta = 1.0  # the rotation posterior's KL at the ELBO's weight (there is no z to set 1/zdim)
        self.epochs = self.epochs_search + self.epochs_fixed + self.epochs_refine

    def check(self) -> None:
        """Settings out of range, as an :class:`InputError` naming the work directory and the flag."""
        super().check()
        if self.method != "hps" and (self.zdim or self.tilt):
            raise InputError(self.outdir, f"--method {self.method} reconstructs one volume from single images (no "
                             "--zdim or --tilt)")
        if self.zdim < 0:
            raise InputError(self.outdir, "--zdim must be 0 or more")
        if self.pose_lr <= 0:
            raise InputError(self.outdir, "--pose-lr must be positive")
        for name in ("epochs_search", "search_every", "keep", "n_shifts", "batch_size", "search_batch",
                     "search_groups"):
            if getattr(self, name) < 1:
                raise InputError(self.outdir, f"--{name.replace('_', '-')} must be at least 1")
        if self.search_chunk < 0:
            raise InputError(self.outdir, "--search-chunk must be 0 (all at once) or more")
        if self.kmin <= 0 or self.kmax < self.kmin:
            raise InputError(self.outdir, f"need 0 < --kmin <= --kmax (got {self.kmin}, {self.kmax})")

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
    predicted = predict_images(models.decoder, batch.coords[high], batch.rotations, batch.box, z=z,
                               ctf=None if batch.ctf is None else batch.ctf[:, high])
    (predicted - batch.images[:, high]).abs().pow(2).mean().backward()
    norm = float(torch.cat([p.grad.flatten() for p in last.parameters()]).norm())
    models.decoder.zero_grad(set_to_none=True)
    return norm


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


class Abinit(Method):
    """Ab initio on the run engine: the three-stage schedule of searches, reset and refinement (module docstring).

    Parameters
    ----------
    config : AbinitConfig
    data : PreparedParticles
        The images uncentred (:func:`prepare` with ``posed=False``); tilt pairs with
        ``data.tilted`` (tilted by ``config.tilt_deg`` about x).
    """

    graphs = False  # training passes are interleaved with searches, on chunks of every size

    def __init__(self, config: AbinitConfig, data: PreparedParticles):
        if config.method != "hps" and (config.zdim or data.tilted is not None):
            raise ValueError(f"method {config.method} reconstructs one volume from single images; use the "
                             "hierarchical search")
        super().__init__(config, data)
        n = len(data)
        self.initial = Poses(random_rotations(n, generator=torch.Generator().manual_seed(config.seed),
                                              dtype=torch.float32),
                             torch.zeros(n, 2), None if data.tilted is None else torch.zeros(n, 2))
        self.poses = self.initial

    def build_models(self, stage: int = 1) -> Models:
        """Fresh networks seeded per stage; per-particle corrections for gd, a pose encoder for pose-vae."""
        config = self.config
        return build_models(replace(config, seed=config.seed + 1000 * (stage - 1), refine_poses=config.method == "gd"),
                            self.data.box, self.data.n_pixels, len(self.data), pose_encoder=config.method == "pose-vae")

    def stage(self, epoch: int) -> int:
        """1, 2 or 3 (:meth:`AbinitConfig.stage`)."""
        return self.config.stage(epoch)

    @staticmethod
    def prepare(config: AbinitConfig, table: ParticleTable, scale: float | None,
                progress: Progress | None = None) -> ParticleSource:
        """The images uncentred, with their tilted partners (``config.tilt``)."""
        tilt = None if config.tilt is None else tilt_partners(config, table)
        return prepare(config, table, scale=scale, posed=False, tilt=tilt, progress=progress)

    def extra_state(self) -> dict:
        """The poses, in every checkpoint."""
        return {"poses": self.poses.state()}

    def load_extra_state(self, state: dict) -> None:
        """The poses of a checkpoint."""
        self.poses = Poses.from_state(state["poses"])

    def begin(self, trainer: Trainer, first_epoch: int) -> None:
        """The images on the device, the pose search, the probe of the gradient log."""
        config, device, n = self.config, trainer.runtime.device, len(self.data)
        if trainer.runtime.is_main:
            WorkDir(config.outdir).stage_maps.mkdir(parents=True, exist_ok=True)
        self.tilt = None if self.data.tilted is None else rotation_about_x(config.tilt_deg,
                                                                           dtype=torch.float32).to(device)
        self.raw = self.data.to(device)
        kind = BranchAndBound if config.method == "bnb" else PoseSearch
        options = {} if config.method == "bnb" else {"amp": config.amp}
        self.search = kind(self.raw.coords, self.data.box, config.search_settings, batch_size=config.search_batch,
                           **options)
        self.probe = torch.from_numpy(np.random.default_rng(config.seed).choice(n, min(n, 64), replace=False))
        # the baselines correct the random starts
        self.posed = centred(self.raw, self.initial if config.learns_poses else self.poses, self.tilt)

    def epoch(self, trainer: Trainer, epoch: int) -> dict:
        """A reset, a search or a training pass, as the schedule says; the record of the gradient log."""
        config, callbacks = self.config, trainer.callbacks
        started = time.perf_counter()
        stage = config.stage(epoch)
        record = {"epoch": epoch, "stage": stage}
        if config.resets(epoch):
            trainer.fresh(stage)
            record["reset"] = True
        trained = None
        if config.searches(epoch):
            kmax = config.search_kmax(epoch, self.data.box)
            t0 = time.perf_counter()
            new, trained = self._search_epoch(trainer, kmax, epoch)
            change = torch.rad2deg(geodesic_distance(new.rotations.double(), self.poses.rotations.double()))
            record |= {"search_kmax": round(kmax, 2),
                       "search_seconds": round(time.perf_counter() - t0 - (trained or {}).get("seconds", 0), 3),
                       "pose_change_deg_median": round(float(change.median()), 3),
                       "shift_change_px_median": round(float((new.shifts_px - self.poses.shifts_px).norm(dim=-1)
                                                             .median()), 3)}
            self.poses = new
            self.posed = centred(self.raw, new, self.tilt)
            if callbacks.poses_found is not None:
                callbacks.poses_found(epoch, new)
        if trained is None:
            trained = trainer.train_pass(self.posed, epoch, progress=callbacks.progress_of(len(self.data), "train"))
        models = trainer.models
        if config.learns_poses:
            self.poses = learned_poses(models, self.initial, self.raw)
            if callbacks.poses_found is not None and ((epoch + 1) % config.search_every == 0
                                                      or epoch + 1 == config.epochs):
                callbacks.poses_found(epoch, self.poses)
        probe = centred(self.raw.subset(self.probe.to(self.raw.images.device)), self.poses.subset(self.probe),
                        self.tilt)
        record |= {"mse": trained["mse"], "train_seconds": trained["seconds"],
                   "grad_high": high_frequency_gradient(models, probe, config),
                   "seconds": round(time.perf_counter() - started, 3)}
        if models.encoder is not None or models.pose_encoder is not None:
            record["kl"] = trained["kl"]
        record["images_per_second"] = round(len(self.data) / record["seconds"], 1)
        return record

    def _last_of_stage(self, epoch: int) -> bool:
        return epoch + 1 == self.config.epochs or self.config.stage(epoch + 1) != self.config.stage(epoch)

    def end_of_epoch(self, trainer: Trainer, epoch: int, record: dict) -> None:
        """At the end of each stage, its map (and the latents of a heterogeneous run)."""
        if not self._last_of_stage(epoch):
            return
        workdir, models, device = WorkDir(self.config.outdir), trainer.models, trainer.runtime.device
        z = None
        if models.encoder is not None:
            means = posterior_means(models, self.posed)
            workdir.write_latents(means)
            z = torch.from_numpy(np.median(means, axis=0))[None].to(device)
        with torch.no_grad():
            volume = render_volume(models.decoder, self.data.box, z, device=device) * self.data.scale
        write_map(workdir.stage_map(self.config.stage(epoch)), volume.cpu().numpy(), self.data.pixel_size_angstrom)

    def checkpoint_due(self, epoch: int) -> bool:
        """Every ``config.checkpoint`` epochs and at the end of each stage."""
        return (epoch + 1) % self.config.checkpoint == 0 or self._last_of_stage(epoch)

    def _search_epoch(self, trainer: Trainer, kmax: float, epoch: int) -> tuple[Poses, dict | None]:
        """Search every particle's pose, at once or online (``search_chunk``).

        Online, the particles go chunk by chunk in random order: each chunk is searched with
        the current model and trained on at once (the returned record), as cryoDRGN
        interleaves search and training; otherwise ``None`` is returned and the epoch trains
        afterwards.
        """
        config, raw, poses, tilt, progress = self.config, self.raw, self.poses, self.tilt, trainer.callbacks.progress
        models = trainer.models
        n = len(raw)
        chunk = config.search_chunk or n
        order = torch.randperm(n, generator=trainer.sampler) if chunk < n else torch.arange(n)
        found = Poses(poses.rotations.clone(), poses.shifts_px.clone(),
                      None if poses.tilt_shifts_px is None else poses.tilt_shifts_px.clone())
        sums = {"mse": 0.0, "kl": 0.0, "seconds": 0.0}
        # online, the bar follows the training of each chunk; at once, the search
        count = None if progress is None or chunk < n else _counter(progress, epoch, "search", n)
        for start in range(0, n, chunk):
            where = order[start:start + chunk]
            part = raw.subset(where.to(raw.images.device))
            for members, z in _latent_groups(models, centred(part, poses.subset(where), tilt), config):
                lattice = render_lattice(models.decoder, raw.box, kmax, oversample=config.oversample, z=z,
                                         amp=config.amp, device=raw.images.device)
                own = part.subset(members.to(part.images.device))
                tilted = None if own.tilted is None else TiltedViews(own.tilted.images, own.tilted.ctf, tilt)
                result = self.search(lattice, own.images, own.ctf, kmax=kmax, tilted=tilted, progress=count)
                rows = where[members]
                found.rotations[rows], found.shifts_px[rows] = result.rotations.cpu(), result.shifts_px.cpu()
                if tilted is not None:
                    found.tilt_shifts_px[rows] = result.tilt_shifts_px.cpu()
            if chunk < n:
                done = trainer.train_pass(centred(part, found.subset(where), tilt), epoch,
                                          progress=None if progress is None
                                          else (lambda d, e, s=start: progress(s + d, n, e, "search + train")))
                for key in ("mse", "kl"):
                    sums[key] += done[key] * len(where)
                sums["seconds"] += done["seconds"]
        trained = ({"mse": sums["mse"] / n, "kl": sums["kl"] / n, "seconds": round(sums["seconds"], 3)}
                   if chunk < n else None)
        return found, trained

    def write_outputs(self, trainer: Trainer, table: ParticleTable) -> list[tuple[str, str]]:
        """``poses.star`` (and ``poses_tilt.star`` for tilt pairs) and ``volume.mrc``, the last stage's map."""
        config, poses, workdir = self.config, self.poses, WorkDir(self.config.outdir)
        apix = self.data.pixel_size_angstrom
        outputs = {workdir.poses_star: _posed(table, poses.rotations, poses.shifts_px, apix)}
        if config.tilt is not None:  # the partners' own poses: train-vae --tilt poses_tilt.star reads them
            tilt = tilt_partners(config, table)
            tilted = rotation_about_x(config.tilt_deg, dtype=poses.rotations.dtype) @ poses.rotations
            outputs[workdir.tilt_poses_star] = _posed(tilt, tilted, poses.tilt_shifts_px, apix)
        with atomic_outputs(*outputs, workdir.volume) as paths:
            for posed, star in zip(outputs.values(), paths):
                write_particles(posed, star)
            shutil.copyfile(workdir.stage_map(config.stage(config.epochs - 1)), paths[-1])  # the last map
        written = [(str(path), f"{table.n} particles") for path in outputs]
        written.append((str(workdir.volume), f"{self.data.box}^3, {apix:.4f} A/px"))
        if config.zdim:
            written.append((str(workdir.latents), f"posterior means, {table.n} x {config.zdim}"))
        return written


def _posed(table: ParticleTable, rotations: torch.Tensor, shifts_px: torch.Tensor, apix: float) -> ParticleTable:
    """``table`` with found poses and absolute stack paths (so that the STAR file works from any folder)."""
    names = list(table.refs.stack_names)
    for sid in np.unique(table.refs.stack_id):
        names[sid] = str(table.refs.stack(int(sid)).path.resolve())
    return replace(table.without_source_rows(), refs=replace(table.refs, stack_names=tuple(names), _opened={}),
                   rotations_or_none=rotations.double().numpy(), shifts_angstrom=shifts_px.double().numpy() * apix)


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


def _counter(progress: Callable[[int, int, int, str], None], epoch: int, what: str,
             total: int) -> Callable[[int], None]:
    """Turn per-batch counts into running totals for ``progress``."""
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        progress(done, total, epoch, what)

    return step
