"""Ab initio on the run engine: searches, the model reset, the stage maps and the found poses."""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from cryofield.data import ParticleSource, PreparedParticles, epoch_plan
from cryofield.imaging import render_volume
from cryofield.io import ParticleTable, WorkDir, write_map
from cryofield.io._atomic import atomic_outputs
from cryofield.io.export import write_particles
from cryofield.nn import LatentTable, PoseTable
from cryofield.posesearch import BranchAndBound, PoseSearch, TiltedViews, render_lattice
from cryofield.recon import backproject_table
from cryofield.so3 import geodesic_distance, random_rotations, rotation_about_x
from cryofield.train.abinit.config import AbinitConfig
from cryofield.train.abinit.poses import (
    CentredSource,
    IndexedParticles,
    Poses,
    SubsetSource,
    centred,
    high_frequency_gradient,
    learned_poses,
)
from cryofield.train.distributed import Runtime, autocast
from cryofield.train.engine import Method, Trainer
from cryofield.train.inference import posterior_means
from cryofield.train.inputs import Progress, prepare, tilt_partners
from cryofield.train.models import Models, build_models
from cryofield.train.objective import encode

MOVED_DEG = 5.0  # a search "moved" a particle when its rotation changed by more than this (degrees)
STALLED_EPOCHS = 5  # the loss has stalled when it has not improved by 0.1 % in this many epochs of a stage
COLLAPSED_STD = 0.1  # latents have collapsed when no dimension's posterior means spread more than this


class Abinit(Method):
    """Ab initio on the run engine: the three-stage schedule of searches, reset and refinement (module docstring).

    Parameters
    ----------
    config : AbinitConfig
    data : ParticleSource
        The images uncentred (:func:`prepare` with ``posed=False``); tilt pairs with
        ``data.tilted`` (tilted by ``config.tilt_deg`` about x). Held compactly in memory, the
        searches make them ready ``config.buffer_size`` at a time (or a chunk of an online
        search) and training passes a batch at a time; read lazily (``config.lazy``), a
        search holds a buffer compactly and a training pass a buffer ready. The images ready at
        once do not grow with the number of particles.
        The baselines (``--method gd`` and ``pose-vae``) hold every image ready.
    """

    graphs = False  # training passes are interleaved with searches, on chunks of every size
    # a signal stops a search between two of its chunks and a whole-data training pass after a step
    # (both exactly resumable: :meth:`epoch`); an online search's chunk passes are not stopped
    stops_mid_epoch = False

    def __init__(self, config: AbinitConfig, data: PreparedParticles):
        if config.method != "hps" and (config.zdim or data.tilted is not None):
            raise ValueError(f"method {config.method} reconstructs one volume from single images; use the "
                             "hierarchical search")
        super().__init__(config, data)
        n = len(data)
        self.poses = Poses(random_rotations(n, generator=torch.Generator().manual_seed(config.seed),
                                            dtype=torch.float32),
                           torch.zeros(n, 2), None if data.tilted is None else torch.zeros(n, 2))
        self.initial = self.poses if config.learns_poses else None  # the baselines' starts, corrected each epoch
        self.on_disk = False  # the poses in mapped files, as the run's tables (:meth:`begin`)
        self._stalled_stages: set[int] = set()  # warned about once each

    def build_models(self, stage: int = 1) -> Models:
        """Fresh networks seeded per stage; per-particle corrections for gd, a pose encoder for pose-vae.

        The table schedule's stage 2 has the pose table (its rows set by a checkpoint, or from
        the last search when the stage starts: :meth:`epoch`).
        """
        config = self.config
        models = build_models(replace(config, seed=config.seed + 1000 * (stage - 1),
                                      refine_poses=config.method == "gd"),
                              self.data.box, self.data.n_pixels, len(self.data),
                              pose_encoder=config.method == "pose-vae")
        if config.z_table:  # latents as a table, started at N(0, 0.1^2) (seeded per stage)
            models.encoder = LatentTable(len(self.data), config.zdim, variational=config.z_table_kl,
                                         generator=torch.Generator().manual_seed(config.seed + 1000 * stage))
        if config.table_schedule and stage == 2:
            models.poses = PoseTable(torch.eye(3).expand(len(self.data), 3, 3))
        return models

    def stage(self, epoch: int) -> int:
        """1, 2 or 3 (:meth:`AbinitConfig.stage`)."""
        return self.config.stage(epoch)

    @staticmethod
    def prepare(config: AbinitConfig, table: ParticleTable, scale: float | None,
                progress: Progress | None = None) -> ParticleSource:
        """The images uncentred, with their tilted partners (``config.tilt``)."""
        tilt = None if config.tilt is None else tilt_partners(config, table)
        # the baselines learn every particle's pose from images held ready
        return prepare(config, table, scale=scale, posed=False, tilt=tilt, compact=not config.learns_poses,
                       progress=progress)

    def extra_state(self) -> dict:
        """The poses, in every checkpoint."""
        return {"poses": self.poses.state()}

    def load_extra_state(self, state: dict) -> None:
        """The poses of a checkpoint."""
        self.poses = Poses.from_state(state["poses"])

    def begin(self, trainer: Trainer, first_epoch: int) -> None:
        """The images on the device (lazy: where they are read), the pose search, the probe of the gradient log."""
        config, self.device, n = self.config, trainer.runtime.device, len(self.data)
        if trainer.runtime.is_main:
            WorkDir(config.outdir).stage_maps.mkdir(parents=True, exist_ok=True)
        self.tilt = None if self.data.tilted is None else rotation_about_x(config.tilt_deg,
                                                                           dtype=torch.float32).to(self.device)
        self.lazy = not self.data.random_access  # read from the stacks a buffer at a time
        self.on_disk = trainer.mapped is not None  # where the run keeps its per-particle tables
        self.poses = self._held(self.poses)
        self.raw = self.data if self.lazy else self.data.to(self.device)
        kind = BranchAndBound if config.method == "bnb" else PoseSearch
        options = {} if config.method == "bnb" else {"amp": config.amp}
        self.search = kind(self.raw.coords.to(self.device), self.data.box, config.search_settings,
                           batch_size=config.search_batch, **options)
        self.probe = torch.from_numpy(np.random.default_rng(config.seed).choice(n, min(n, 64), replace=False))
        # the baselines correct the random starts
        self.posed = self._centred(self.initial if config.learns_poses else self.poses)

    def _held(self, poses: Poses) -> Poses:
        """``poses`` where the run keeps its per-particle tables: moved into mapped files when it keeps them there."""
        return poses.copy(mapped=True) if self.on_disk and not poses.mapped else poses

    def _centred(self, poses: Poses) -> ParticleSource:
        """Every particle centred by ``poses``: at once (images held ready), or when read (compact, lazy)."""
        if isinstance(self.raw, PreparedParticles):
            return centred(self.raw, poses, self.tilt)
        return CentredSource(self.raw, poses, self.tilt)

    def _uncentred(self, where: np.ndarray) -> PreparedParticles:
        """The particles ``where`` (sorted, for a lazy read), uncentred, on the device."""
        return self.raw.load(where).to(self.device)

    def epoch(self, trainer: Trainer, epoch: int) -> dict:
        """A reset, a search or a training pass, as the schedule says; the record of the gradient log.

        A signal stops a search between two of its chunks and a training pass over all the
        particles (or the pretraining's) after its current step: the record then holds the
        ``partial`` epoch, which a resumed run continues exactly (the search, reset and table
        start done before the stop are not done again).
        """
        config, callbacks = self.config, trainer.callbacks
        started = time.perf_counter()
        band = config.train_band_px(epoch, self.data.box)  # the pixels this epoch's passes fit (None: all)
        resumed = trainer.pending_partial
        if resumed is not None and "record" in resumed:  # a training pass stopped mid-way: after the search
            record, earlier = dict(resumed["record"]), resumed["seconds"]
            table_before = None if resumed["table_before"] is None else Poses.from_state(resumed["table_before"])
            trained = None
        else:
            record, trained, table_before, earlier = self._before_training(trainer, epoch)
            if "partial" in record:
                return record
        if trained is None:  # the pass over every particle (the table schedule's first epoch: the pretraining's)
            pretraining = config.table_schedule and epoch == 0
            data = self._pretraining_set() if pretraining else self.posed
            trained = trainer.train_pass(data, epoch, stoppable=True,
                                         progress=callbacks.progress_of(len(data), "pretrain" if pretraining
                                                                        else "train"),
                                         band_px=band)
            if "partial" in trained:
                where = f"after step {trained['partial']['batches']} of epoch {epoch + 1}"
                return {"epoch": epoch, "partial": trained["partial"] | {
                    "record": record, "where": where, "seconds": earlier + time.perf_counter() - started,
                    "table_before": None if table_before is None else table_before.state()}}
        models = trainer.models
        if table_before is not None:  # how far the table's training moved the poses
            record |= _pose_change(table_before, self._table_poses(models))
        if config.learns_poses:
            self.poses = learned_poses(models, self.initial, self.raw)
            if callbacks.poses_found is not None and ((epoch + 1) % config.search_every == 0
                                                      or epoch + 1 == config.epochs):
                callbacks.poses_found(epoch, self.poses)
        probe = centred(self._uncentred(self.probe.numpy()), self.poses.subset(self.probe), self.tilt)
        if band is not None:
            record["train_band_px"] = round(band, 2)
        record |= {"mse": trained["mse"], "train_seconds": trained["seconds"],
                   "grad_high": high_frequency_gradient(models, probe, config, self.probe),
                   "seconds": round(time.perf_counter() - started + earlier, 3)}
        if models.encoder is not None or models.pose_encoder is not None:
            record["kl"] = trained["kl"]
        record["images_per_second"] = round(record.get("pretrain_images", len(self.data)) / record["seconds"], 1)
        posed = epoch > 0 or config.learns_poses  # the first epoch's poses are random starts: no map from them
        if self.reconstructs and posed and trainer.runtime.is_main and self.checkpoint_due(epoch):
            record |= self._reconstruct(trainer, epoch)
        return record

    def _before_training(self, trainer: Trainer, epoch: int) -> tuple[dict, dict | None, Poses | None, float]:
        """An epoch's reset, pose table start and search (online: with its training).

        Returns the record so far, the online search's training record (else ``None``: the
        epoch trains afterwards), the pose table's poses before the epoch (``None`` outside
        the table's stage) and the seconds the epoch ran before a stop it was resumed from.
        A search stopped by a signal returns ``({"epoch", "partial"}, None, None, 0.0)``.
        """
        config, callbacks = self.config, trainer.callbacks
        stage = config.stage(epoch)
        record = {"epoch": epoch, "stage": stage}
        if config.resets(epoch):
            trainer.fresh(stage)
            record["reset"] = True
        if config.table_schedule and epoch == 0:
            record["pretrain_images"] = min(len(self.data), config.pretrain_images)
        if config.table_schedule and stage == 2 and trainer.models.poses is None:  # the pose table starts
            trainer.attach_poses(PoseTable(self.poses.rotations))
            record["table_start"] = True
        table_before = self._table_poses(trainer.models)
        if not config.searches(epoch):
            return record, None, table_before, 0.0
        kmax = config.search_kmax(epoch, self.data.box)
        t0 = time.perf_counter()
        searched = self._search_epoch(trainer, kmax, epoch)
        if isinstance(searched, dict):  # stopped by a signal between two chunks
            return {"epoch": epoch, "partial": searched}, None, None, 0.0
        new, trained, earlier = searched
        record |= {"search_kmax": round(kmax, 2),
                   "search_seconds": round(time.perf_counter() - t0 + earlier - (trained or {}).get("seconds", 0), 3),
                   **_pose_change(self.poses, new)}
        self.poses = new
        self.posed = self._centred(new)
        if callbacks.poses_found is not None:
            callbacks.poses_found(epoch, new)
        return record, trained, table_before, earlier

    def _pretraining_set(self) -> SubsetSource:
        """``pretrain_images`` particles drawn at random (seeded), centred by their random starting poses.

        Read through a :class:`SubsetSource` in memory too, so that the steps train the latent
        table's rows of these particles.
        """
        n = len(self.data)
        count = min(n, self.config.pretrain_images)
        return SubsetSource(self.posed, np.sort(np.random.default_rng(self.config.seed + 1).choice(n, count,
                                                                                                  replace=False)))

    def _table_poses(self, models: Models) -> Poses | None:
        """Every particle's pose in the pose table (``None`` before it).

        Its rotation, and the last search's shift plus its own correction.
        """
        if not isinstance(models.poses, PoseTable):
            return None
        rotations, shifts = models.poses.all()
        tilt = self.poses.tilt_shifts_px
        return Poses(rotations.cpu(), self.poses.shifts_px + shifts.cpu(), None if tilt is None else tilt.clone())

    def current_poses(self, models: Models) -> Poses:
        """Every particle's pose now: the table's in its stage, else the last search's (or the baselines')."""
        table = self._table_poses(models)
        return self.poses if table is None else table

    def _last_of_stage(self, epoch: int) -> bool:
        return epoch + 1 == self.config.epochs or self.config.stage(epoch + 1) != self.config.stage(epoch)

    def end_of_epoch(self, trainer: Trainer, epoch: int, record: dict) -> None:
        """Warnings when the loss stalls; at the end of each stage, its map (and the latents).

        A heterogeneous run's latents are written at each stage's end, with a warning when
        they have collapsed.
        """
        workdir = WorkDir(self.config.outdir)
        self._warn_if_stalled(workdir, record)
        if not self._last_of_stage(epoch):
            return
        models, device = trainer.averaged, trainer.runtime.device
        z = None
        if models.encoder is not None:
            means = posterior_means(models, self.posed, chunk_size=self.config.buffer_size, amp=self.config.amp)
            workdir.write_latents(means)
            _warn_if_collapsed(workdir, means, record["stage"])
            z = torch.from_numpy(np.median(means, axis=0))[None].to(device)
        with torch.no_grad():
            volume = render_volume(models.decoder, self.data.box, z, device=device) * self.data.scale
        write_map(workdir.stage_map(self.config.stage(epoch)), volume.cpu().numpy(), self.data.pixel_size_angstrom)

    @property
    def reconstructs(self) -> bool:
        """Whether the run reconstructs its map from its poses: one volume (no ``zdim``), its particles' table known."""
        return not self.config.zdim and self.table is not None

    def _reconstruct(self, trainer: Trainer, epoch: int) -> dict:
        """One volume's map from every particle's current pose, by backprojection with the CTF (rank 0).

        Run after each epoch that ends with a checkpoint (:meth:`epoch`), except the first,
        whose poses are random starts (the baselines' first epoch already learns them). A search
        or the pose table finds each particle's pose with a decoder fit only as far as it
        needs; the map then comes from the images themselves
        (:func:`cryofield.recon.backproject_table`: two random half sets, a Wiener filter), as
        homogeneous refinement makes it after ab initio. Written to
        ``maps/reconstruction_epochNNN.mrc``; after the last epoch also ``reconstruction.mrc``,
        its half maps and their FSC (:attr:`WorkDir.reconstruction`). Tilt pairs: from the
        untilted images.

        Returns
        -------
        dict
            The epoch record's ``reconstruction_angstrom`` (half-map FSC 0.143, Angstrom) and
            ``reconstruction_seconds``.
        """
        config, workdir = self.config, WorkDir(self.config.outdir)
        poses = self.current_poses(trainer.models)
        table = _posed(self.table, poses.rotations, poses.shifts_px, self.data.pixel_size_angstrom)
        progress = trainer.callbacks.progress
        started = time.perf_counter()
        result = backproject_table(table, invert=not config.uninvert_data, seed=config.seed,
                                   device=trainer.runtime.device,
                                   progress=None if progress is None else _counter(progress, epoch, "reconstruct",
                                                                                   table.n))
        write_map(workdir.reconstruction_map(epoch), result.volume.cpu().numpy(), result.pixel_size_angstrom)
        if epoch + 1 == config.epochs:
            with atomic_outputs(*workdir.reconstruction) as paths:
                result.write(*paths)
        return {"reconstruction_angstrom": round(result.resolution_angstrom(0.143), 3),
                "reconstruction_seconds": round(time.perf_counter() - started, 3)}

    def _warn_if_stalled(self, workdir: WorkDir, record: dict, epochs: int = STALLED_EPOCHS) -> None:
        """Warn (once per stage) when the loss has not improved by 0.1 % in ``epochs`` epochs of this stage."""
        stage = record["stage"]
        if stage in self._stalled_stages:
            return
        log = [r for r in workdir.read_log() if r["stage"] == stage]
        since_reset = max((i for i, r in enumerate(log) if r.get("reset")), default=0)
        mse = [r["mse"] for r in log[since_reset:]]
        if len(mse) <= epochs or mse[-1] < (1 - 1e-3) * min(mse[:-epochs]):
            return
        self._stalled_stages.add(stage)
        _warn(workdir, f"stage {stage}: the image loss has not improved by 0.1 % in {epochs} epochs (mse "
                       f"{mse[-1]:.5f}): the map has stopped improving, and more epochs of this stage are unlikely "
                       "to help")

    def checkpoint_due(self, epoch: int) -> bool:
        """Every ``config.checkpoint`` epochs and at the end of each stage."""
        return (epoch + 1) % self.config.checkpoint == 0 or self._last_of_stage(epoch)

    def _search_epoch(self, trainer: Trainer, kmax: float, epoch: int) -> tuple[Poses, dict | None, float] | dict:
        """Search every particle's pose, at once or online (``search_chunk``).

        Returns the poses found, the training's record (online; else ``None``) and the seconds
        the epoch ran before a stop it was resumed from. A signal stops it between two chunks:
        then it returns the ``partial`` state instead (the poses found so far, the chunks done,
        the sampler), from which the next run continues exactly (:meth:`Trainer.take_partial`).

        Online, the particles go chunk by chunk in random order: each chunk is searched with
        the current model and trained on at once (the returned record), as cryoDRGN
        interleaves search and training; otherwise ``None`` is returned and the epoch trains
        afterwards. Lazy, the particles are read a buffer at a time (the chunks of an online
        search drawn within each buffer, as training's batches are, :func:`epoch_plan`).
        """
        config, poses, tilt, progress = self.config, self.poses, self.tilt, trainer.callbacks.progress
        # the references come from the live weights: the average lags the model by ~1 / (1 - decay) steps,
        # and the first search, whose references take shape within its epoch, then fails (docs/benchmarks.md)
        models = trainer.models
        n = len(self.raw)
        band = config.train_band_px(epoch, self.data.box)  # the pixels the chunks' training fits
        chunk = config.search_chunk or n
        online = chunk < n
        if online:
            plan = epoch_plan(n, chunk, trainer.sampler, buffer_size=config.buffer_size if self.lazy else None)
        else:  # all at once, but images not held ready are made so a buffer at a time
            step = n if isinstance(self.raw, PreparedParticles) else config.buffer_size
            plan = [(part, [part]) for part in np.array_split(np.arange(n), max(1, -(-n // step)))]
        started = time.perf_counter()
        resumed = trainer.take_partial()  # a search stopped between chunks, to continue
        if resumed is not None:
            found, sums = self._held(Poses.from_state(resumed["found"])), dict(resumed["sums"])
            skip, earlier = resumed["chunks"], resumed["seconds"]
        else:
            found = poses.copy(mapped=self.on_disk)
            sums, skip, earlier = {"mse": 0.0, "kl": 0.0, "seconds": 0.0}, 0, 0.0
        # online, the bar follows the training of each chunk; at once, the search
        count = None if progress is None or online else _counter(progress, epoch, "search", n)
        done, finished, total = 0, 0, sum(len(chunks) for _, chunks in plan)
        for members, chunks in plan:
            if finished + len(chunks) <= skip:  # a buffer searched before the stop: not even read
                finished, done = finished + len(chunks), done + sum(map(len, chunks))
                continue
            buffer = None  # one buffer in memory at a time, held compactly
            if self.lazy:
                buffer = self.raw.load_compact(members).to(self.device)
            for indices in chunks:
                if finished < skip:
                    finished, done = finished + 1, done + len(indices)
                    continue
                if finished == skip and resumed is not None:  # where the stopped run's sampler was
                    trainer.sampler.set_state(resumed["sampler"])
                where = torch.from_numpy(indices)
                if buffer is None:  # in memory: the chunk itself
                    part = self._uncentred(indices)
                else:
                    part = buffer.subset(torch.from_numpy(np.searchsorted(members, indices)).to(buffer.device))
                self._search_chunk(models, part, where, found, kmax, count, trainer.runtime)
                if online:  # the chunk's particles, so that their rows of a latent table are stepped
                    chunk_data = IndexedParticles(centred(part, found.subset(where), tilt), indices)
                    trained = trainer.train_pass(chunk_data, epoch, band_px=band,
                                                 progress=None if progress is None
                                                 else (lambda d, e, s=done: progress(s + d, n, e, "search + train")))
                    for key in ("mse", "kl"):
                        sums[key] += trained[key] * len(where)
                    sums["seconds"] += trained["seconds"]
                done, finished = done + len(indices), finished + 1
                if finished < total and trainer.stops.requested():
                    return {"search": True, "found": found.state(), "sums": sums, "chunks": finished,
                            "seconds": earlier + time.perf_counter() - started, "sampler": trainer.sampler.get_state(),
                            "where": f"after {finished} of {total} chunks of the search in epoch {epoch + 1}"}
        trained = ({"mse": sums["mse"] / n, "kl": sums["kl"] / n, "seconds": round(sums["seconds"], 3)}
                   if online else None)
        return found, trained, earlier

    def _search_chunk(self, models: Models, part: PreparedParticles, where: torch.Tensor, found: Poses,
                      kmax: float, count: Callable[[int], None] | None, runtime: Runtime) -> None:
        """Search the poses of ``part`` (the particles ``where``, uncentred) into ``found``.

        In several processes each searches every ``world_size``-th particle of the chunk (the
        latent groups are formed from the whole chunk in each, alike), and the poses found are
        then gathered into every process.
        """
        config, tilt = self.config, self.tilt
        mine = torch.arange(len(part)) % runtime.world_size == runtime.rank
        for members, z in _latent_groups(models, centred(part, self.poses.subset(where), tilt), where, config):
            members = members[mine[members]]
            if not len(members):
                continue
            lattice = render_lattice(models.decoder, part.box, kmax, oversample=config.oversample, z=z,
                                     amp=config.amp, device=part.images.device)
            own = part.subset(members.to(part.images.device))
            tilted = None if own.tilted is None else TiltedViews(own.tilted.images, own.tilted.ctf, tilt)
            result = self.search(lattice, own.images, own.ctf, kmax=kmax, tilted=tilted, progress=count)
            rows = where[members]
            found.rotations[rows], found.shifts_px[rows] = result.rotations.cpu(), result.shifts_px.cpu()
            if tilted is not None:
                found.tilt_shifts_px[rows] = result.tilt_shifts_px.cpu()
        if runtime.world_size > 1:
            for table in (found.rotations, found.shifts_px, found.tilt_shifts_px):
                if table is not None:
                    table[where] = runtime.merge_rows(table[where], mine)

    def write_outputs(self, trainer: Trainer, table: ParticleTable) -> list[tuple[str, str]]:
        """``poses.star`` (and ``poses_tilt.star`` for tilt pairs) and ``volume.mrc``, the last stage's map.

        A run of one volume has also written the map reconstructed from its final poses
        (:meth:`_reconstruct`), which is listed.
        """
        config, poses, workdir = self.config, self.current_poses(trainer.models), WorkDir(self.config.outdir)
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
        if self.reconstructs and workdir.reconstruction[0].is_file():
            written.append((str(workdir.reconstruction[0]), f"{self.data.box}^3, {apix:.4f} A/px: the map from the "
                            "final poses; its half maps and their FSC beside it"))
        return written


def _pose_change(before: Poses, after: Poses) -> dict:
    """How far poses moved: median rotation change (degrees), fraction over ``MOVED_DEG``, median shift change (px)."""
    change = torch.rad2deg(geodesic_distance(after.rotations.double(), before.rotations.double()))
    return {"pose_change_deg_median": round(float(change.median()), 3),
            "pose_moved_fraction": round(float((change > MOVED_DEG).double().mean()), 4),
            "shift_change_px_median": round(float((after.shifts_px - before.shifts_px).norm(dim=-1).median()), 3)}


def _warn(workdir: WorkDir, message: str) -> None:
    """A warning for the user, and the same line in ``train.log``."""
    workdir.note("warning: " + message)
    warnings.warn(message, stacklevel=3)


def _warn_if_collapsed(workdir: WorkDir, means: np.ndarray, stage: int) -> None:
    """Warn when every latent dimension's posterior means spread less than a tenth of the prior's."""
    spread = means.std(axis=0)
    if len(means) > 1 and float(spread.max()) < COLLAPSED_STD:
        _warn(workdir, f"stage {stage}: the latent space has collapsed: the particles' latents spread by at most "
                       f"{float(spread.max()):.3f} (the prior's 1.0) in every dimension, so they describe no "
                       "heterogeneity; try a smaller --beta, or check the poses")


def _posed(table: ParticleTable, rotations: torch.Tensor, shifts_px: torch.Tensor, apix: float) -> ParticleTable:
    """``table`` with found poses and absolute stack paths (so that the STAR file works from any folder)."""
    names = list(table.refs.stack_names)
    for sid in np.unique(table.refs.stack_id):
        names[sid] = str(table.refs.stack(int(sid)).path.resolve())
    return replace(table.without_source_rows(), refs=replace(table.refs, stack_names=tuple(names), _opened={}),
                   rotations_or_none=rotations.double().numpy(), shifts_angstrom=shifts_px.double().numpy() * apix)


def _latent_groups(models: Models, posed: PreparedParticles, where: torch.Tensor,
                   config: AbinitConfig) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The particles of a chunk grouped for the search: ``(positions (G_i,), latent (1, zdim) or None)``.

    One group, without a latent, for a homogeneous model; otherwise the whole chunk at its
    mean posterior mean, or k-means clusters of the posterior means, each at its mean latent.
    ``where`` (B,) are the chunk's particle indices (a latent table's rows).
    """
    everyone = torch.arange(len(posed))
    if models.encoder is None:
        return [(everyone, None)]
    with torch.no_grad(), autocast(posed.images.device, config.amp):
        means = torch.cat([encode(models, posed.subset(part.to(posed.images.device)), where[part])[0].float()
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
