"""Runs from a config, start to finish: the library behind ``train-nn``, ``train-vae``, ``abinit``, ``train-cryofold``.

:func:`run` reads the particles a config names, prepares them, resolves the settings that
come from the data, saves ``config.json``, trains on the engine and writes the results;
:func:`resume` continues a run from its last checkpoint under the one ``--resume`` policy
(:meth:`TrainConfig.resumed`). Both return the finished :class:`Run`.
"""

from __future__ import annotations

import os
from dataclasses import replace

from cryofield.errors import InputError
from cryofield.io import WorkDir
from cryofield.train.abinit import Abinit, AbinitConfig
from cryofield.train.config import TrainConfig, VaeConfig
from cryofield.train.cryofold import Cryofold, CryofoldConfig, resolve_start
from cryofield.train.distributed import Runtime, init_runtime
from cryofield.train.engine import Callbacks, Trainer
from cryofield.train.inputs import read_table
from cryofield.train.neural_volume import NeuralVolume
from cryofield.train.results import Run

#: The method that runs each config (most derived first).
METHODS: tuple[tuple[type[TrainConfig], type], ...] = (
    (AbinitConfig, Abinit), (CryofoldConfig, Cryofold), (TrainConfig, NeuralVolume))


def method_of(config: TrainConfig) -> type:
    """The :class:`cryofield.train.Method` class that runs ``config``."""
    return next(method for kind, method in METHODS if isinstance(config, kind))


def load_config(workdir: str | os.PathLike | WorkDir) -> TrainConfig:
    """A run's config as the class of its method (told apart by the settings each one saves)."""
    workdir = workdir if isinstance(workdir, WorkDir) else WorkDir(workdir)
    settings = workdir.read_settings()
    if settings.get("pdb"):
        return CryofoldConfig.load(workdir)
    if "epochs_search" in settings:
        return AbinitConfig.load(workdir)
    return (VaeConfig if settings.get("zdim") else TrainConfig).load(workdir)


def run(config: TrainConfig, *, callbacks: Callbacks | None = None, runtime: Runtime | None = None,
        resume: bool = False) -> Run:
    """Train the method a config describes and write its results to ``config.outdir``.

    Parameters
    ----------
    config : TrainConfig, AbinitConfig or CryofoldConfig
        Every setting; those that come from the data (box, pixel size, scale, versions and
        checksums) are filled in here.
    callbacks : Callbacks, optional
        Progress of the reading and the epochs, each epoch's record, found poses.
    runtime : Runtime, optional
        Device and process group (default: ``config.device``, joining ``torchrun``'s group).
    resume : bool
        ``config`` is a resumed run's (:func:`resume` passes it); continue from its checkpoint.

    Returns
    -------
    Run
        The finished run; ``Run.written`` lists the files written, ``(path, what)``.

    Raises
    ------
    InputError
        Bad input or settings, naming the file or flag.
    """
    method = method_of(config)
    workdir = WorkDir(config.outdir)
    if resume and not workdir.is_trained():
        raise InputError(workdir.root, "no checkpoint to resume from")
    runtime = runtime or init_runtime(config.device)
    method.check(config, runtime)
    table = read_table(config)
    callbacks = callbacks or Callbacks()
    data = method.prepare(config, table, scale=config.data_scale if resume else None, progress=callbacks.reading)
    config = replace(config, device=str(runtime.device), world_size=runtime.world_size)
    if not resume:
        config = replace(config, box=data.box, data_pixel_size=data.pixel_size_angstrom,
                         data_scale=data.scale).with_versions()
        if method is Cryofold:
            try:
                config = resolve_start(config, data)
            except ValueError as exc:
                raise InputError(config.pdb, str(exc)) from None
    if runtime.is_main:
        config.save(workdir)
    if callbacks.start is not None:
        callbacks.start(config)
    instance = method(config, data)
    trainer = Trainer(instance, runtime=runtime, callbacks=callbacks)
    trainer.fit(resume)
    written = instance.write_outputs(trainer, table) if runtime.is_main else []
    return Run(workdir, written=written, config=config)


def resume(workdir: str | os.PathLike, changes: dict | None = None, *, callbacks: Callbacks | None = None,
           runtime: Runtime | None = None) -> Run:
    """Continue a run from its last checkpoint with its own settings.

    Parameters
    ----------
    workdir : str or PathLike
        The run's folder.
    changes : dict, optional
        Settings asked for (:meth:`TrainConfig.resumed`: ``epochs`` and the runtime's may
        change; others must equal the run's). ``particles`` says where the particles are
        now (checked by their checksum).
    callbacks, runtime
        As in :func:`run`.

    Returns
    -------
    Run
    """
    workdir = WorkDir(workdir)
    if not workdir.is_trained():
        raise InputError(workdir.root, "no checkpoint to resume from")
    saved = load_config(workdir)
    config = replace(saved.resumed(changes or {}), outdir=str(workdir.root))
    if "particles" in (changes or {}):
        config = replace(config, particles=str(changes["particles"]))
    return run(config, callbacks=callbacks, runtime=runtime, resume=True)
