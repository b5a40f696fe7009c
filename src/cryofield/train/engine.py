"""The run engine: one trainer for every method.

:class:`Trainer` owns what every run shares: the device and the process group, mixed
precision and its gradient scaler, ``DistributedDataParallel``, CUDA graphs,
``torch.compile``, the optimisers, the running average of the weights (:class:`WeightAverage`:
what a run's maps come from), the epoch order, checkpoints and exact resume (model,
optimisers, average, scaler, epoch and RNG state), ``log.jsonl`` and ``train.log``, and the callbacks
that report progress. A :class:`Method` says what differs: its networks (``build_models``, by stage),
its loss (``restraint``), its schedule (``epoch``: a training pass by default; ab initio
searches poses and resets the model; Cryofold warms up first) and the state it adds to a
checkpoint. Adding a method is a config, a :class:`Method` and, if it needs one, a model;
nothing here changes.

Under ``torchrun`` every process runs the same loop on its share of each batch
(:func:`cryofield.data.epoch_plan`); rank 0 writes the log, the checkpoints and the
outputs.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cryofield.data import CompactParticles, ParticleSource, PreparedParticles, TiltSeriesParticles, epoch_plan
from cryofield.errors import RunInterrupted, RunStopped
from cryofield.io import ParticleTable, WorkDir
from cryofield.train.averaging import WeightAverage
from cryofield.train.checkpoint import adam, load_adam, load_checkpoint, restore_rng, rng_state, save_checkpoint
from cryofield.train.config import TrainConfig
from cryofield.train.distributed import Runtime, needs_grad_scaler, resolve_device
from cryofield.train.graphs import GraphedStep, can_graph
from cryofield.train.host_memory import keep_freed_memory
from cryofield.train.models import Models
from cryofield.train.objective import Restraint, band_pixels, optimizer_step
from cryofield.train.tables import MappedTables

#: Returns to the last checkpoint a run with ``on_nan="rollback"`` makes before it stops.
ROLLBACKS = 3


@dataclass
class Callbacks:
    """What the caller of a run hears (on rank 0).

    Attributes
    ----------
    reading : callable, optional
        ``reading(images_done, total)`` while the particles are prepared.
    start : callable, optional
        ``start(config)`` with the run's resolved config, before the first epoch.
    progress : callable, optional
        ``progress(images_done, total, epoch, stage)`` after each batch; ``stage`` names the
        part of the epoch ("" for a plain training pass; "search", "warm-up", ...).
    epoch_end : callable, optional
        ``epoch_end(record)`` with each epoch's record, as appended to ``log.jsonl``.
    poses_found : callable, optional
        ``poses_found(epoch, poses)`` after each pose search (ab initio).
    """

    reading: Callable[[int, int], None] | None = None
    start: Callable[[TrainConfig], None] | None = None
    progress: Callable[[int, int, int, str], None] | None = None
    epoch_end: Callable[[dict], None] | None = None
    poses_found: Callable[[int, Any], None] | None = None

    def progress_of(self, total: int, stage: str = "") -> Callable[[int, int], None] | None:
        """``progress`` as ``(done, epoch)`` for ``total`` images of one stage, or None."""
        if self.progress is None:
            return None
        return lambda done, epoch: self.progress(done, total, epoch, stage)


class Method:
    """A reconstruction method on the engine: its networks, its loss and its schedule.

    The defaults train one set of networks for ``config.epochs`` passes over the data, a
    checkpoint every ``config.checkpoint`` epochs and at the end.

    Parameters
    ----------
    config : TrainConfig
        The method's config, resolved (the data's box, pixel size and scale filled in).
    data : ParticleSource
        The prepared particles.
    """

    #: Whether full batches may be replayed as CUDA graphs (see :func:`cryofield.train.can_graph`).
    graphs = True
    #: Whether a signal may stop an epoch after any step (exactly resumable); otherwise at its end.
    stops_mid_epoch = True
    #: Whether particles read as tilt series are trained on as such (``config.tilt_series``), not image by image,
    #: and their images may have been multiplied by their CTF when extracted (``imaging.ctf_at_pixels``).
    reads_tilt_series = False
    #: The particles' metadata, one row per item of ``data`` (:func:`cryofield.train.run` sets it before
    #: :meth:`begin`; ``None`` for a method made without it).
    table: ParticleTable | None = None

    def __init__(self, config: TrainConfig, data: ParticleSource):
        self.config, self.data = config, data

    @classmethod
    def resumable(cls, workdir: WorkDir) -> bool:
        """Whether a run in ``workdir`` can be continued (by default: it has a config and a last checkpoint)."""
        return workdir.is_trained()

    @classmethod
    def check(cls, config: TrainConfig, runtime: Runtime) -> None:
        """Refuse settings the method cannot run (an :class:`InputError`; by default ``config.check()``)."""
        config.check()

    @classmethod
    def resolve(cls, config: TrainConfig, data: ParticleSource) -> TrainConfig:
        """The config with any setting that comes from the data filled in (a new run; as given by default)."""
        return config

    def build_models(self, stage: int = 1) -> Models:
        """Fresh networks for ``stage`` (1 unless the schedule has stages)."""
        raise NotImplementedError

    def restraint(self, models: Models) -> Restraint | None:
        """An energy of the model added to the loss (none by default)."""
        return None

    def stage(self, epoch: int) -> int:
        """The stage ``epoch`` belongs to (one stage by default)."""
        return 1

    def start(self, trainer: Trainer, resume: bool) -> bool:
        """Before the first epoch: anything to run first; returns whether the main loop resumes."""
        return resume

    def begin(self, trainer: Trainer, first_epoch: int) -> None:
        """After the networks are built (and restored), before ``first_epoch``."""

    def epoch(self, trainer: Trainer, epoch: int) -> dict:
        """Run one epoch; return its record for ``log.jsonl`` (a training pass by default)."""
        return trainer.train_pass(trainer.data, epoch, progress=trainer.callbacks.progress_of(len(trainer.data)))

    def end_of_epoch(self, trainer: Trainer, epoch: int, record: dict) -> None:
        """After the epoch is logged, before its checkpoint (rank 0)."""

    def checkpoint_due(self, epoch: int) -> bool:
        """Whether a checkpoint is written after ``epoch``."""
        return (epoch + 1) % self.config.checkpoint == 0 or epoch + 1 == self.config.epochs

    def extra_state(self) -> dict:
        """What the method adds to a checkpoint (plain tensors and values)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore :meth:`extra_state` from a checkpoint."""


class Trainer:
    """Runs a :class:`Method` (module docstring).

    Parameters
    ----------
    method : Method
    runtime : Runtime, optional
        Device and process group (default: ``config.device``, one process).
    callbacks : Callbacks, optional
        Heard on rank 0 only (the other processes' are empty).

    Attributes
    ----------
    models : Models
        The networks being trained, on the runtime's device.
    average : WeightAverage or None
        The running average of their weights (``config.ema_decay``; None when 0).
    net : Models
        The same networks as this process calls them (wrapped for distributed training).
    data : ParticleSource
        The method's data, on the device when it fits there.
    """

    def __init__(self, method: Method, *, runtime: Runtime | None = None, callbacks: Callbacks | None = None):
        self.method, self.config = method, method.config
        self.runtime = runtime or Runtime(resolve_device(self.config.device))
        if self.runtime.device.type == "cpu":
            keep_freed_memory()  # a step's large activations reused, not re-mapped (host_memory)
        self.callbacks = (callbacks if self.runtime.is_main else None) or Callbacks()
        self.workdir = WorkDir(self.config.outdir)
        self.sampler = torch.Generator().manual_seed(self.config.seed)  # the epochs' order
        self.data = method.data
        self.graph: GraphedStep | None = None
        self.stops = _Stops()
        self._partial: dict | None = None  # a stopped epoch to continue (from a checkpoint)
        self._rollbacks = 0  # returns to the last checkpoint after a loss that is not finite
        self.mapped = MappedTables() if self._tables_on_disk() else None  # per-particle tables in files

    def _tables_on_disk(self) -> bool:
        """Whether the per-particle tables live in mapped files (``config.table_storage``; auto: lazy on a CPU)."""
        where = self.config.table_storage
        wanted = self.config.lazy if where == "auto" else where == "disk"
        return bool(wanted) and self.runtime.device.type == "cpu"

    def _map_tables(self) -> None:
        """Move the per-particle tables and their moments into mapped files, where the run keeps them there."""
        if self.mapped is not None:
            self.mapped.map_tables(self.models.tables())
            self.mapped.map_moments(self.pose_optimizer)

    def fresh(self, stage: int = 1) -> None:
        """New networks for ``stage``, their optimisers and gradient scaler."""
        device = self.runtime.device
        self.models = self.method.build_models(stage).to(device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(device, self.config.amp))
        self.graphed = self.method.graphs and can_graph(self.config, self.runtime, self.models, self.scaler)
        self.optimizer = adam(self.models.network_parameters(), self.config.lr, capturable=self.graphed)
        # the per-particle tables' optimiser (latents first, then poses): sparse steps, their own rates
        groups = [{"params": list(table.parameters()),
                   "lr": self.config.pose_lr if name == "poses" else self.config.z_lr}
                  for name, table in self.models.tables().items()]
        self.pose_optimizer = torch.optim.SparseAdam(groups) if groups else None
        self.average = WeightAverage(self.models, self.config.ema_decay) if self.config.ema_decay else None
        self._map_tables()
        # wrapped at once: a method that starts afresh mid-run (ab initio's reset) trains on
        self.net, self.graph = _wrap(self.models, self.runtime), None

    def attach_poses(self, poses: nn.Module) -> None:
        """Add per-particle poses to the networks mid-run (ab initio's pose table), with their own optimiser.

        Parameters
        ----------
        poses : nn.Module
            A :class:`cryofield.nn.PoseTable` or :class:`cryofield.nn.PoseCorrections`; stepped by
            ``SparseAdam`` at ``config.pose_lr``.
        """
        self.models.poses = poses.to(self.runtime.device)
        group = {"params": list(self.models.poses.parameters()), "lr": self.config.pose_lr}
        if self.pose_optimizer is None:
            self.pose_optimizer = torch.optim.SparseAdam([group])
        else:  # after a latent table's group, in the order fresh() makes them
            self.pose_optimizer.add_param_group(group)
        self._map_tables()
        self.net = _wrap(self.models, self.runtime)

    @property
    def averaged(self) -> Models:
        """The networks a run reads its maps and latents from: the running average, else the live ones.

        The averaged networks share the live per-particle tables, and follow the live weights
        step by step (:meth:`WeightAverage.update`): a reference taken once stays current.
        """
        return self.models if self.average is None else self.average.models()

    def state(self, epoch: int) -> dict:
        """The checkpoint after ``epoch``: networks (and their average), optimisers, scaler, RNG, the method's state."""
        state = {"models": self.models.parts_state(), "optimizer": self.optimizer.state_dict(), "epoch": epoch,
                 "scaler": self.scaler.state_dict(), "rng": rng_state(self.sampler)}
        if self.average is not None:
            state |= {"averaged": self.average.state_dict(), "averaged_steps": self.average.steps}
        if self.pose_optimizer is not None:
            state["pose_optimizer"] = self.pose_optimizer.state_dict()
        return state | self.method.extra_state()

    def restore(self, state: dict) -> int:
        """Load a checkpoint into the networks, optimisers, scaler and RNG; returns the next epoch."""
        self.models.load_parts_state(state["models"])
        if self.average is not None:
            if "averaged" in state:
                self.average.load_state_dict(state["averaged"])
                self.average.steps = int(state["averaged_steps"])
            else:  # a checkpoint that kept none: the average starts here
                self.average.reset()
        load_adam(self.optimizer, state["optimizer"], capturable=self.graphed)
        if self.pose_optimizer is not None:
            self.pose_optimizer.load_state_dict(state["pose_optimizer"])
            self._map_tables()  # loading made the moments afresh in memory
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"], self.sampler)
        self.method.load_extra_state(state)
        return int(state["epoch"]) + 1

    def prepare_steps(self, first_epoch: int) -> None:
        """Compile, wrap for distributed training and set up CUDA graphs, before ``first_epoch``."""
        if self.runtime.world_size > 1:  # the same plan everywhere, different noise in each process
            torch.manual_seed(self.config.seed + 7919 * self.runtime.rank + first_epoch)
        if self.config.compile_mode:
            for part in (self.models.decoder, self.models.encoder):
                if part is not None:
                    part.compile(mode=self.config.compile_mode)
        self.net = _wrap(self.models, self.runtime)
        device = self.runtime.device
        images = self.data.images if isinstance(self.data, TiltSeriesParticles) else self.data  # a series' images
        if isinstance(images, PreparedParticles | CompactParticles) and _fits_on_device(images.nbytes, device):
            self.data = self.data.to(device)  # one transfer instead of one per batch
            if isinstance(images, CompactParticles) and _fits_on_device(images.ready_nbytes, device):
                self.data = self.data.ready()  # made ready once on the GPU, as fast as steps get
        if self.graphed:
            self.graph = GraphedStep(self.optimizer, self.config.batch_size, self.runtime.device)

    def train_pass(self, data: ParticleSource, epoch: int,
                   progress: Callable[[int, int], None] | None = None, stoppable: bool | None = None,
                   band_px: float | None = None) -> dict:
        """One pass of the optimisers over ``data`` (:func:`run_epoch`) with the trainer's state.

        A method that :attr:`Method.stops_mid_epoch` makes one pass per epoch: a signal ends
        it after the current step (the record then holds the ``partial`` pass), and a
        checkpoint continues it exactly. ``stoppable`` overrides that for one pass (ab
        initio's whole-data passes stop mid-pass, its online search's chunk passes do not).
        ``band_px`` limits the pixels the decoder is fit at (:func:`run_epoch`).
        """
        stoppable = self.method.stops_mid_epoch if stoppable is None else stoppable
        partial = self.take_partial() if stoppable else None
        rows, before = self._table_rows(data)
        record = run_epoch(self.net, data, self.config, self.optimizer, self.scaler, self.sampler, self.runtime,
                           epoch=epoch, pose_optimizer=self.pose_optimizer, graph=self.graph, progress=progress,
                           restraint=self.method.restraint(self.models), average=self.average,
                           stop=self.stops.requested if stoppable else None, partial=partial, band_px=band_px)
        if before is not None:
            self._merge_table_rows(rows, before)
        return record

    def _table_rows(self, data: ParticleSource) -> tuple[torch.Tensor | None, dict | None]:
        """In several processes: the table rows a pass over ``data`` may step, and their values now.

        Each process steps the per-particle tables' rows of its share of each batch only; after
        the pass :meth:`_merge_table_rows` gives every process every row. ``(None, None)`` in
        one process or without tables.
        """
        if self.runtime.world_size == 1 or self.pose_optimizer is None:
            return None, None
        rows = torch.as_tensor(getattr(data, "particle_indices", np.arange(len(data))), dtype=torch.long)
        return rows, {key: t[rows.to(t.device)].clone() for key, t in _table_tensors(self.pose_optimizer).items()}

    def _merge_table_rows(self, rows: torch.Tensor, before: dict) -> None:
        """Every process's changes to the tables' ``rows`` (values and moments) in every process.

        A row is one particle's, and a pass steps each particle in one process only, so the
        process where a row differs from ``before`` has its new value (:meth:`Runtime.merge_rows`).
        """
        for key, table in _table_tensors(self.pose_optimizer).items():
            at = rows.to(table.device)
            now = table[at]
            earlier = before.get(key)  # moments the optimiser made during the pass were zeros before
            earlier = torch.zeros_like(now) if earlier is None else earlier
            own = (now != earlier).reshape(len(rows), -1).any(1)
            table[at] = self.runtime.merge_rows(now, own)

    def take_partial(self) -> dict | None:
        """The stopped epoch a checkpoint holds (its ``partial``), once; then ``None``.

        :meth:`train_pass` takes it to continue a pass; a method that stops its epochs in its
        own way (ab initio, between the chunks of a search) takes its own.
        """
        partial, self._partial = self._partial, None
        return partial

    @property
    def pending_partial(self) -> dict | None:
        """The stopped epoch still to continue, without taking it (``None`` when there is none)."""
        return self._partial

    def _stop(self, finished: int, partial: dict | None, sampler_at_start) -> None:
        """After a signal: write the checkpoint to continue from (mid-epoch: exactly), and raise RunInterrupted."""
        if partial is not None:
            state = self.state(finished) | {"partial": partial}
            state["rng"]["sampler"] = sampler_at_start  # the epoch's order is drawn again on resume
            save_checkpoint(self.workdir, state, None)
            where = partial.get("where") or f"after step {partial['batches']} of epoch {partial['epoch'] + 1}"
        else:
            where = f"after epoch {finished + 1}"
        name = signal.Signals(self.stops.signum).name
        message = f"{name} {where}; checkpoint written to {self.workdir.last_checkpoint} (--resume continues exactly)"
        self.workdir.note("stopped: " + message)
        raise RunInterrupted(self.stops.signum, message)

    @staticmethod
    def _finite(record: dict) -> bool:
        return all(record.get(key) is None or math.isfinite(record[key]) for key in ("mse", "kl", "restraint"))

    def _roll_back(self, record: dict, epoch: int) -> int:
        """After an epoch whose loss is no longer finite: go back to the last checkpoint, or stop.

        With ``on_nan="rollback"`` (at most :data:`ROLLBACKS` times) the networks, optimisers
        and RNG return to the last checkpoint, the learning rates are halved, the log loses
        the epochs after it, and the next epoch to run is returned. Otherwise, or with no
        checkpoint to return to, the run stops (:class:`RunStopped`) before a poisoned
        checkpoint is written.
        """
        step = record.get("first_nonfinite_step")
        where = f"epoch {epoch + 1}" + ("" if step is None else f", step {step + 1}")
        if (self.config.on_nan != "rollback" or self._rollbacks >= ROLLBACKS
                or not self.workdir.last_checkpoint.is_file()):
            self._guard(where)
        self._rollbacks += 1
        following = self._from_last_checkpoint(lr_factor=0.5)
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.runtime.is_main:
            self.workdir.note(f"the loss is no longer finite ({where}): rolled back to {self.workdir.last_checkpoint} "
                              f"(after epoch {following}) with learning rate {lrs[0]:.3g} "
                              f"(rollback {self._rollbacks} of {ROLLBACKS})")
        return following

    def _from_last_checkpoint(self, lr_factor: float = 1.0) -> int:
        """Networks, optimisers, RNG and method state as the last checkpoint left them; returns the next epoch.

        The optimisers' learning rates are multiplied by ``lr_factor`` (before any CUDA graph
        is captured), and the log loses the epochs after the checkpoint (a run killed or rolled
        back runs them again).
        """
        state = load_checkpoint(self.workdir, self.runtime.device)
        # the networks of the epoch the checkpoint stopped in, else of the last it finished
        stopped_in = state["partial"]["epoch"] if "partial" in state else max(int(state["epoch"]), 0)
        self.fresh(self.method.stage(stopped_in))
        following = self.restore(state)
        self._partial = state.get("partial")
        for optimizer in (self.optimizer, self.pose_optimizer):
            for group in [] if optimizer is None or lr_factor == 1.0 else optimizer.param_groups:
                group["lr"] *= lr_factor
        if self.runtime.is_main:
            self.workdir.keep_log_until(following)
        self.prepare_steps(following)
        self.method.begin(self, following)
        return following

    def _guard(self, where: str) -> None:
        """Stop before a loss that is no longer finite reaches a checkpoint (:class:`RunStopped`)."""
        after = f" after {self._rollbacks} rollback(s) with lower learning rates" if self._rollbacks else ""
        message = f"the loss is no longer finite ({where}){after}; no checkpoint of this epoch was written; "
        if self.workdir.last_checkpoint.is_file():
            message += f"the last good one is {self.workdir.last_checkpoint} (--resume continues from it)"
        else:
            message += "there is no earlier one: start again with a lower --lr"
        if self.runtime.is_main:
            self.workdir.note("stopped: " + message)
        raise RunStopped(message)

    def fit(self, resume: bool = False) -> Models:
        """Train for ``config.epochs`` epochs, continuing from the last checkpoint when ``resume``.

        Returns
        -------
        Models
            On the runtime's device.
        """
        resume = self.method.start(self, resume)
        if self.runtime.is_main:
            if resume:
                self.workdir.checkpoints.mkdir(parents=True, exist_ok=True)
            else:  # a fresh run in an old work directory starts a fresh log
                self.workdir.start_log()
        if resume:
            first = self._from_last_checkpoint()
        else:
            first = 0
            self.fresh(1)
            self.prepare_steps(first)
            self.method.begin(self, first)
        if self.runtime.is_main:
            what = f"{'resumed' if resume else 'started'} {type(self.method).__name__}"
            self.workdir.note(f"{what} at epoch {first + 1} of {self.config.epochs}, on {self.runtime.device} "
                              f"({self.runtime.world_size} process(es))")
        with self.stops.installed(self.runtime):
            epoch = first
            while epoch < self.config.epochs:
                at_start = self.sampler.get_state()
                record = self.method.epoch(self, epoch)
                if "partial" in record:
                    self._stop(epoch - 1, record["partial"] | {"epoch": epoch}, at_start)
                if not self._finite(record):
                    epoch = self._roll_back(record, epoch)
                    continue
                epoch += 1
                if not self.runtime.is_main:
                    continue
                done = epoch - 1
                self.workdir.append_log(record)
                if self.callbacks.epoch_end is not None:
                    self.callbacks.epoch_end(record)
                self.method.end_of_epoch(self, done, record)
                if self.method.checkpoint_due(done) or self.stops.requested():
                    save_checkpoint(self.workdir, self.state(done), done)
                if self.stops.requested() and epoch < self.config.epochs:
                    self._stop(done, None, None)
        if self.runtime.is_main:
            self.workdir.note(f"finished {self.config.epochs} epochs")
        return self.models


def run_epoch(net: Models, data: ParticleSource, config: TrainConfig, optimizer: torch.optim.Optimizer,
              scaler: torch.amp.GradScaler, sampler: torch.Generator, runtime: Runtime, *, epoch: int = 0,
              pose_optimizer: torch.optim.Optimizer | None = None, graph: GraphedStep | None = None,
              progress: Callable[[int, int], None] | None = None, restraint: Restraint | None = None,
              stop: Callable[[], bool] | None = None, partial: dict | None = None,
              average: WeightAverage | None = None, band_px: float | None = None) -> dict:
    """One pass over the particles in the order of :func:`epoch_plan`, one optimiser step per batch.

    Parameters
    ----------
    net : Models
        The networks as this process calls them (wrapped for distributed training).
    data : ParticleSource
        Every image ready in memory (possibly on the device already), held compactly (each
        batch made ready when read), or read lazily through a shuffling buffer.
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
    restraint : callable, optional
        The model's restraint energy, added to the loss.
    stop : callable, optional
        Asked after each step; True ends the pass there, returning ``{"epoch", "partial"}``
        (what :func:`run_epoch` needs to continue it exactly).
    partial : dict, optional
        Continue a pass stopped that way: its first ``batches`` steps were taken (the
        sampler must be at the epoch's start again, the global generator where it stopped).
    average : WeightAverage, optional
        Updated after each step.
    band_px : float, optional
        Fit the decoder at the pixels with ``|k| < band_px`` (cycles per box) only (ab initio's
        passes before its full-resolution stage); every pixel without.

    Returns
    -------
    dict
        ``epoch``, ``mse`` and ``kl`` (means per image over all processes), ``seconds``,
        ``images_per_second`` (tilt series: also ``particles_per_second``); ``restraint`` (the
        mean energy) for models that have one;
        ``first_nonfinite_step`` (0-based, in this process) when a step's loss was NaN or Inf.
    """
    started = time.perf_counter()
    n = len(data)
    in_memory = isinstance(data, PreparedParticles)  # every image ready: batches are taken from it
    per_batch = not in_memory and data.random_access  # held compactly: each batch made ready when read
    # a buffer holds config.buffer_size images: a T-th as many tilt series (batches count particles)
    per_item = data.ntilts if isinstance(data, TiltSeriesParticles) else 1
    buffered = config.lazy and not (in_memory or per_batch)
    plan = epoch_plan(n, config.batch_size, sampler, buffer_size=max(1, config.buffer_size // per_item)
                      if buffered else None, chunk_size=max(1, 1024 // per_item), rank=runtime.rank,
                      world_size=runtime.world_size)
    partial = partial or {"batches": 0, "sums": [0.0, 0.0, 0.0], "seen": 0, "images": 0}
    # a subset of the particles (ab initio's pretraining) maps its positions to the particles' own
    # indices, the rows of the per-particle tables
    particle_indices = getattr(data, "particle_indices", None)
    sums = torch.tensor(partial["sums"], dtype=torch.float64, device=runtime.device)  # mse, kl, restraint x images
    first_bad = torch.full((), -1, dtype=torch.long, device=runtime.device)  # first step with a non-finite loss
    seen_here, steps, done = partial["seen"], 0, 0
    images_here = partial.get("images", seen_here)  # tilt images (padding left out); else the particles
    pixels, n_pixels = None, data.n_pixels  # the pixels fit (a band's, found at the first batch), and their count

    def images_of(indices: np.ndarray) -> int:
        return int((data.members[indices] >= 0).sum()) if per_item > 1 else len(indices)

    for members, batches in plan:
        if steps + len(batches) <= partial["batches"]:  # a buffer the stopped pass finished: not even read
            steps, done = steps + len(batches), done + sum(map(len, batches)) * runtime.world_size
            continue
        buffer = None  # the last buffer goes before the next is read: one buffer in memory, not two
        if per_batch:
            positions = [None] * len(batches)
        else:
            # read from the stacks: a buffer held compactly, each batch made ready from it
            buffer = data if in_memory else data.load_compact(members)
            # every batch's positions in the buffer, moved to its device at once: one transfer, not one per step
            positions = np.concatenate(batches) if in_memory else np.searchsorted(members, np.concatenate(batches))
            positions = torch.from_numpy(positions).to(buffer.device).split([len(b) for b in batches])
        for indices, where in zip(batches, positions):
            steps, done = steps + 1, done + len(indices) * runtime.world_size
            if steps <= partial["batches"]:
                continue
            batch = (data.load(indices) if per_batch else buffer.subset(where)).to(runtime.device)
            if band_px is not None and pixels is None:
                pixels = band_pixels(batch.coords, band_px)
                n_pixels = len(pixels)

            rows = indices if particle_indices is None else particle_indices[indices]

            def step(batch: PreparedParticles, rows: np.ndarray = rows, pixels: torch.Tensor | None = pixels,
                     n_pixels: int = n_pixels) -> torch.Tensor:
                return optimizer_step(net, batch, config, optimizer, scaler, pose_optimizer,
                                      indices=torch.from_numpy(rows), n_pixels=n_pixels, restraint=restraint,
                                      pixels=pixels)

            losses = step(batch) if graph is None else graph(step, batch)
            if average is not None:
                average.update()
            sums += losses.double() * len(indices)  # no sync
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(losses).all(), steps - 1, first_bad)
            seen_here += len(indices)
            images_here += images_of(indices)
            if progress is not None and runtime.is_main:
                progress(min(done, n), epoch)
            if stop is not None and stop():
                return {"epoch": epoch, "partial": {"batches": steps, "sums": sums.tolist(), "seen": seen_here,
                                                    "images": images_here}}
    totals = runtime.all_sum(torch.cat([sums, sums.new_tensor([seen_here, images_here])])).cpu()
    seconds = time.perf_counter() - started
    seen = max(float(totals[3]), 1.0)
    record = {"epoch": epoch, "mse": float(totals[0]) / seen, "kl": float(totals[1]) / seen,
              "seconds": round(seconds, 3), "images_per_second": round(float(totals[4]) / seconds, 1)}
    if per_item > 1:  # tilt series: the steps count particles
        record["particles_per_second"] = round(seen / seconds, 1)
    if int(first_bad) >= 0:
        record["first_nonfinite_step"] = int(first_bad)
    return record | ({"restraint": float(totals[2]) / seen} if float(totals[2]) else {})


class _Stops:
    """SIGINT and SIGTERM, caught while a run trains in one process: the run stops at the next safe point."""

    def __init__(self):
        self.signum: int | None = None

    def requested(self) -> bool:
        """Whether a signal asked the run to stop."""
        return self.signum is not None

    @contextlib.contextmanager
    def installed(self, runtime: Runtime):
        """Catch the signals in the main thread of a single process (a second signal ends at once)."""
        if runtime.world_size > 1 or threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def catch(signum, frame):
            self.signum = signum
            for sig, handler in previous.items():  # a second signal: the default, at once
                signal.signal(sig, handler)

        for sig in previous:
            signal.signal(sig, catch)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _wrap(models: Models, runtime: Runtime) -> Models:
    """The networks as this process calls them: wrapped in DistributedDataParallel across processes.

    The per-particle tables are not wrapped: each process steps the rows of its share of the
    batch, and :meth:`Trainer.train_pass` gathers them after each pass.
    """
    if runtime.world_size == 1:
        return models
    if models.pose_encoder is not None:
        raise ValueError("pose encoders run in a single process (not under torchrun)")
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    tables = models.tables()
    encoder = models.encoder
    if encoder is not None and "encoder" not in tables:
        encoder = DistributedDataParallel(encoder, device_ids=ids)
    return Models(DistributedDataParallel(models.decoder, device_ids=ids), encoder, models.poses)


def _table_tensors(optimizer: torch.optim.Optimizer) -> dict[tuple[int, str], torch.Tensor]:
    """The per-particle tables (rows first) and their optimiser's moments, by (parameter number, name)."""
    out = {}
    for i, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        out[(i, "value")] = param.data
        for name, value in optimizer.state.get(param, {}).items():
            if torch.is_tensor(value) and value.dim() > 0 and len(value) == len(param):
                out[(i, name)] = value
    return out


def _fits_on_device(nbytes: int, device: torch.device, fraction: float = 0.5) -> bool:
    """Whether ``device`` is a GPU with more than ``nbytes / fraction`` free (never true on CPU)."""
    return device.type == "cuda" and nbytes < fraction * torch.cuda.mem_get_info(device)[0]
