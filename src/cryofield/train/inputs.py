"""A run's particles: read as its config names them, subset, paired with tilted partners, prepared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from cryofield.data import LazyParticles, ParticleSource, TiltSeriesParticles, prepare_particles, store_particles
from cryofield.errors import InputError
from cryofield.io import ParticleTable, read_indices, read_particles
from cryofield.io.mapped import mapped_array
from cryofield.so3 import rotation_about_x
from cryofield.train.config import TrainConfig

Progress = Callable[[int, int], None]  # (images prepared, of total)


def read_table(config: TrainConfig, particles: str | None = None, *, tilted: bool = False) -> ParticleTable:
    """The run's particle table: ``config.particles`` (or ``particles``) with its metadata options and subset.

    Parameters
    ----------
    config : TrainConfig
        ``datadir``, ``poses``, ``ctf``, ``apix``, ``ind`` and ``tilt_weighting``.
    particles : str, optional
        Another file of particles (then the config's ``poses`` and ``ctf`` do not apply).
    tilted : bool
        Read ``config.tilt``, the tilted partners (their own metadata only).
    """
    own = particles is None and not tilted
    path = config.tilt if tilted else (particles or config.particles)
    table = read_particles(path, datadir=config.datadir, poses=config.poses if own else None,
                           ctf=config.ctf if own else None, apix=config.apix,
                           tilt_series=config.tilt_series and not tilted).with_tilt_weighting(config.tilt_weighting)
    if table.n == 0:
        raise InputError(path, "holds no particles")
    if config.ind is not None and (own or tilted):
        table = (table.subset(read_indices(config.ind, table.n)) if table.tilts is None
                 else table.subset_particles(read_indices(config.ind, table.tilts.n_particles)))  # whole tilt series
    return table


def tilt_partners(config: TrainConfig, table: ParticleTable, tilt: str | None = None) -> ParticleTable:
    """The tilted partner of each particle of ``table`` (``config.tilt`` or ``tilt``), checked to pair up.

    Partners without a CTF take their particle's.
    """
    partners = read_table(config, tilted=True) if tilt is None else read_particles(
        tilt, datadir=config.datadir, apix=config.apix)
    source = tilt or config.tilt
    if partners.n != table.n:
        raise InputError(source, f"{partners.n} tilted images for {table.n} particles; they must pair up in order")
    if partners.box_size != table.box_size:
        raise InputError(source, f"tilted images are {partners.box_size} px, the particles {table.box_size} px")
    if partners.ctf is None and table.ctf is not None:
        partners = replace(partners, ctf=table.ctf)
    return partners


def tilted_poses(config: TrainConfig, table: ParticleTable, partners: ParticleTable) -> tuple[np.ndarray, np.ndarray]:
    """The partners' rotations (N, 3, 3) and shifts (N, 2) px: their own, or the stage tilt of the particles'."""
    if partners.rotations_or_none is not None:
        return partners.rotations, partners.shifts_px
    # a stage tilt rotates the specimen in the microscope's frame: R_tilt = Rx(tilt) R
    return rotation_about_x(config.tilt_deg).numpy() @ table.rotations, table.shifts_px


def prepare(config: TrainConfig, table: ParticleTable, *, scale: float | None = None, posed: bool = True,
            tilt: ParticleTable | None = None, compact: bool = True,
            progress: Progress | None = None) -> ParticleSource:
    """The particles as training reads them: in memory, or lazily (``config.lazy``); tilted partners attached.

    In memory they are held compactly (:class:`~cryofield.data.CompactParticles`, each batch
    made ready when read), or with ``compact=False`` every image ready
    (:class:`~cryofield.data.PreparedParticles`, three times the bytes). A VAE over tilt
    series (``config.encodes_tilt_series``) reads them as particles of ``config.ntilts``
    images each, lowest exposure first (:class:`~cryofield.data.TiltSeriesParticles`).

    Parameters
    ----------
    config : TrainConfig
        ``uninvert_data``, ``window_r``, ``lazy``, ``tilt_deg``, ``tilt_series``, ``ntilts``.
    table : ParticleTable
    scale : float, optional
        The normalisation (a trained model's); default: from the data.
    posed : bool
        Centre the images by the table's shifts, with its rotations; False prepares them
        uncentred with identity rotations (ab initio finds the poses).
    tilt : ParticleTable, optional
        The tilted partners (:func:`tilt_partners`).
    compact : bool
        In memory, hold the images compactly (default).
    progress : callable, optional
        ``progress(done, total)`` while images are prepared in memory.
    """
    if not config.encodes_tilt_series:
        return _images(config, table, scale=scale, posed=posed, tilt=tilt, compact=compact, progress=progress)
    if table.tilts is None:
        raise InputError(config.particles, "is not read as tilt series (one row per tilt image): "
                                           "pass --tilt-series with a file that groups its rows into particles")
    members = table.tilts.members(config.ntilts)
    used = np.unique(members[members >= 0])
    if len(used) < table.n:  # only the tilts the encoder reads are read (and held)
        table = table.subset(used)
        table = table.in_mapped_files() if config.metadata_in_files else table
        members = table.tilts.members(config.ntilts)
    data = _images(config, table, scale=scale, posed=posed, tilt=tilt, compact=compact, progress=progress)
    return TiltSeriesParticles(data, members)


def _images(config: TrainConfig, table: ParticleTable, *, scale: float | None, posed: bool,
            tilt: ParticleTable | None, compact: bool, progress: Progress | None) -> ParticleSource:
    """Every image of ``table`` as :func:`prepare` reads them (one per row), tilted partners attached."""
    invert, window_r = not config.uninvert_data, config.window_r
    unposed = {} if posed else {"rotations": np.broadcast_to(np.eye(3), (table.n, 3, 3)).copy(),
                                "shifts_px": np.zeros((table.n, 2))}
    tilt_poses = {}
    if tilt is not None:
        tilt_poses = unposed if not posed else dict(zip(("rotations", "shifts_px"), tilted_poses(config, table, tilt)))
    if config.lazy:
        poses = unposed
        if config.metadata_in_files:  # the poses it would compute and hold (shifts in pixels), in files too
            if posed and table.rotations_or_none is not None:
                poses = {"shifts_px": table.shifts_px}
            poses = {name: mapped_array(values) for name, values in poses.items()}
            tilt_poses = {name: mapped_array(values) for name, values in tilt_poses.items()}
            tilt = None if tilt is None else tilt.in_mapped_files()
        tilted = None if tilt is None else LazyParticles(tilt, invert=invert, window_r=window_r, scale=1.0,
                                                         **tilt_poses)
        return LazyParticles(table, invert=invert, window_r=window_r, scale=scale, tilted=tilted, **poses)
    total = table.n * (2 if tilt is not None else 1)
    done = 0

    def count(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    hold = store_particles if compact else prepare_particles
    data = hold(table, invert=invert, window_r=window_r, scale=scale, progress=count, **unposed)
    if tilt is not None:
        data.tilted = hold(tilt, invert=invert, window_r=window_r, scale=data.scale, progress=count, **tilt_poses)
    return data
