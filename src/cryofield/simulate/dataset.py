"""Write a simulated particle dataset: stack, RELION star, ground truth and truth maps."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryofield.conventions import CTF_COLUMNS
from cryofield.io import ImageRefs, MrcStackWriter, ParticleTable, SourceRecord, write_map, write_particles
from cryofield.io._atomic import atomic_outputs
from cryofield.simulate.particles import Imaging, VolumeProjector, draw_ctf, draw_poses, simulate_chunks
from cryofield.so3 import rotation_about_x

CTF_FIELDS = CTF_COLUMNS[2:]


@dataclass(frozen=True)
class SimulatedDataset:
    """Paths of a written dataset."""

    stack: Path
    star: Path
    truth: Path
    volumes: list[Path]
    tilt_stack: Path | None = None
    tilt_star: Path | None = None


def _table(stack: Path, star: Path, n: int, box: int, apix: float, ctf: np.ndarray | None,
           rotations: np.ndarray, shifts_px: np.ndarray) -> ParticleTable:
    refs = ImageRefs((stack.name,), np.zeros(n, np.int32), np.arange(n, dtype=np.int64), star)
    ctf_frame = None if ctf is None else pd.DataFrame(ctf[:, 2:], columns=list(CTF_FIELDS))
    return ParticleTable(refs=refs, pixel_size_angstrom=np.full(n, apix), box_size_px=np.full(n, box),
                         ctf=ctf_frame, rotations_or_none=rotations, shifts_angstrom=shifts_px * apix,
                         optics_group=np.ones(n, np.int64), record=SourceRecord("none", star, np.arange(n)))


def write_dataset(outdir: str | os.PathLike, volumes: list[np.ndarray], states: np.ndarray, imaging: Imaging, *,
                  coordinates: np.ndarray | None = None, ctf_from: np.ndarray | None = None,
                  tilt_deg: float | None = None, seed: int = 0, chunk_size: int = 1000,
                  progress: Callable[[int], None] | None = None) -> SimulatedDataset:
    """Simulate particles of ``volumes`` in ``states`` and write them with their ground truth.

    Parameters
    ----------
    outdir : str or PathLike
        Created if needed; gets ``particles.mrcs``, ``particles.star`` (RELION 3.1),
        ``truth.npz`` and ``truth_vols/vol_XXX.mrc`` (plus ``tilt.mrcs``/``tilt.star``).
    volumes : list of ndarray, each (D, D, D)
        One positive-density map per state.
    states : ndarray, shape (N,), int
        State of each particle.
    imaging : Imaging
    coordinates : ndarray, shape (N, d), optional
        The true conformational coordinates, saved in the truth (default: the state).
    ctf_from : ndarray, shape (M, 9), optional
        CTF rows to draw from (with replacement) instead of the defocus range.
    tilt_deg : float, optional
        Also write a tilt partner of each particle, pose ``Rx(tilt) R`` (a stage tilt about x).
    seed : int
    chunk_size : int
    progress : callable, optional
        Called with the number of images done.

    Returns
    -------
    SimulatedDataset
    """
    outdir = Path(outdir)
    (outdir / "truth_vols").mkdir(parents=True, exist_ok=True)
    n, box, apix = len(states), volumes[0].shape[-1], imaging.pixel_size_angstrom
    rng = np.random.default_rng(seed)
    rotations, shifts = draw_poses(n, imaging.shift_px, rng, seed)
    if not imaging.ctf:
        ctf = None
    elif ctf_from is not None:
        ctf = ctf_from[rng.integers(0, len(ctf_from), n)].copy()
        ctf[:, 0], ctf[:, 1] = box, apix
    else:
        ctf = draw_ctf(n, imaging, box, rng)
    projector = VolumeProjector(volumes)
    paths = SimulatedDataset(outdir / "particles.mrcs", outdir / "particles.star", outdir / "truth.npz",
                             [outdir / "truth_vols" / f"vol_{i:03d}.mrc" for i in range(len(volumes))],
                             outdir / "tilt.mrcs" if tilt_deg is not None else None,
                             outdir / "tilt.star" if tilt_deg is not None else None)
    jobs = [(paths.stack, paths.star, rotations, seed)]
    if tilt_deg is not None:
        tilted = rotation_about_x(tilt_deg).numpy() @ rotations  # the stage tilts the specimen in the lab frame
        jobs.append((paths.tilt_stack, paths.tilt_star, tilted, seed + 1))
    finals = [p for job in jobs for p in job[:2]] + [paths.truth] + paths.volumes
    with atomic_outputs(*finals) as temps:
        for k, (stack, star, rots, noise_seed) in enumerate(jobs):
            with MrcStackWriter(temps[2 * k], (n, box, box), apix) as writer:
                for images in simulate_chunks(projector, states, rots, shifts, ctf, imaging, seed=noise_seed,
                                              chunk_size=chunk_size, progress=progress):
                    writer.write(images)
            write_particles(_table(stack, star, n, box, apix, ctf, rots, shifts), temps[2 * k + 1])
        truth = temps[2 * len(jobs)]
        with open(truth, "wb") as fh:
            np.savez(fh, state=states, coordinates=states[:, None].astype(float) if coordinates is None
                     else coordinates, rotations=rotations, shifts_px=shifts,
                     ctf=np.zeros((n, 0)) if ctf is None else ctf)
        for temp, volume in zip(temps[2 * len(jobs) + 1:], volumes):
            write_map(temp, volume, apix)
    return paths
