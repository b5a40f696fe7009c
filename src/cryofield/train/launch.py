"""Runs from a config, start to finish: the library behind ``train-nn``, ``train-vae``, ``abinit``, ``train-cryofold``.

:func:`run` reads the particles a config names, prepares them, resolves the settings that
come from the data, saves ``config.json``, trains on the engine and writes the results;
:func:`resume` continues a run from its last checkpoint under the one ``--resume`` policy
(:meth:`TrainConfig.resumed`). Both return the finished :class:`Run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from dataclasses import replace

from torch import distributed as dist

from cryofield.errors import InputError
from cryofield.io import WorkDir
from cryofield.train.abinit import Abinit, AbinitConfig
from cryofield.train.config import TrainConfig, VaeConfig
from cryofield.train.cryofold import Cryofold, CryofoldConfig
from cryofield.train.distributed import Runtime, init_runtime, release_runtime
from cryofield.train.engine import Callbacks, Method, Trainer
from cryofield.train.inputs import read_table
from cryofield.train.neural_volume import NeuralVolume
from cryofield.train.results import Run

#: The method that runs each config, most derived config first (:func:`register_method` adds to it).
METHODS: list[tuple[type[TrainConfig], type[Method]]] = [
    (AbinitConfig, Abinit), (CryofoldConfig, Cryofold), (VaeConfig, NeuralVolume), (TrainConfig, NeuralVolume)]


def register_method(config_class: type[TrainConfig], method_class: type[Method]) -> None:
    """Make :func:`run`, :func:`resume` and :class:`Run` run ``config_class`` with ``method_class``.

    A saved run is recognised as ``config_class`` when ``config.json`` holds every setting
    the class adds to its parent.
    """
    METHODS.insert(0, (config_class, method_class))


def method_of(config: TrainConfig) -> type[Method]:
    """The :class:`cryofield.train.Method` class that runs ``config``."""
    return next(method for kind, method in METHODS if isinstance(config, kind))


def load_config(workdir: str | os.PathLike | WorkDir) -> TrainConfig:
    """A run's config as the class of its method.

    The first registered config class that adds settings to its parent and whose added
    settings ``config.json`` all holds; otherwise ``VaeConfig`` (``zdim > 0``) or ``TrainConfig``.
    """
    workdir = workdir if isinstance(workdir, WorkDir) else WorkDir(workdir)
    settings = workdir.read_settings()
    for kind, _ in METHODS:
        own = {f.name for f in dataclasses.fields(kind)} - {f.name for f in dataclasses.fields(kind.__mro__[1])} \
            if kind is not TrainConfig else set()
        if own and own <= settings.keys():
            return kind.load(workdir)
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
        Device and process group (default: ``config.device``, joining ``torchrun``'s group for
        the run and leaving it at the end; a group the caller joined is left to the caller).
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
    if resume and not method.resumable(workdir):
        if not workdir.config.is_file():
            raise InputError(workdir.root, "no checkpoint to resume from")
        # stopped (or killed) before its first checkpoint: what was lost is less than one interval
        warnings.warn(f"{workdir.root}: no checkpoint yet; starting the run again from epoch 1 with its settings",
                      stacklevel=2)
        resume = False
    if workdir.root.is_dir():
        with workdir.locked():  # refused at once when another process writes the folder
            pass
    joins = runtime is None and not dist.is_initialized()  # else the caller's runtime or process group
    runtime = runtime or init_runtime(config.device)
    method.check(config, runtime)
    # no run exports the source rows (about 1 KB of strings per particle): not held for the whole run
    table = read_table(config).without_source_rows()
    if config.metadata_in_files:  # the only per-particle memory a lazy run would hold
        table = table.in_mapped_files()
    if not method.reads_tilt_series:  # its searches and restraints apply the CTF to raw images
        table.refuse_premultiplied(method.__name__)
    if not resume and method.reads_tilt_series and table.tilts is not None:
        config = replace(config, tilt_series=True)  # a RELION 5 set is tilt series without being told
    callbacks = callbacks or Callbacks()
    data = method.prepare(config, table, scale=config.data_scale if resume else None, progress=callbacks.reading)
    config = replace(config, device=str(runtime.device), world_size=runtime.world_size)
    if not resume:
        weighted = table.tilts is not None and table.tilts.exposure is not None
        amplitude = "" if table.tilts is None else table.tilts.amplitude_source
        config = method.resolve(replace(config, box=data.box, data_pixel_size=data.pixel_size_angstrom,
                                        data_scale=data.scale, data_exposure_weighted=weighted,
                                        data_tilt_amplitude=amplitude).with_versions(), data)
    with workdir.locked() if runtime.is_main else contextlib.nullcontext():
        if runtime.is_main:
            config.save(workdir)
        if callbacks.start is not None:
            callbacks.start(config)
        instance = method(config, data)
        instance.table = table
        trainer = Trainer(instance, runtime=runtime, callbacks=callbacks)
        trainer.fit(resume)
        written = instance.write_outputs(trainer, table) if runtime.is_main else []
    if joins:
        release_runtime(runtime)  # the group this call joined (under torchrun), once every rank is done
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
    if not workdir.config.is_file():
        raise InputError(workdir.root, "no checkpoint to resume from")
    saved = load_config(workdir)
    config = replace(saved.resumed(changes or {}), outdir=str(workdir.root))
    if "particles" in (changes or {}):
        config = replace(config, particles=str(changes["particles"]))
    return run(config, callbacks=callbacks, runtime=runtime, resume=True)
