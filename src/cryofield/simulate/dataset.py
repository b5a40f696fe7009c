"""Write a simulated particle dataset: stacks, RELION star, ground truth and truth maps."""

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
from cryofield.simulate.junk import JUNK_KINDS, Realism, junk_volumes, micrograph_ctf, micrograph_of, perturb_rotations
from cryofield.simulate.particles import Imaging, VolumeProjector, draw_ctf, draw_poses, simulate_chunks
from cryofield.so3 import rotation_about_x

CTF_FIELDS = CTF_COLUMNS[2:]


@dataclass(frozen=True)
class SimulatedDataset:
    """Paths of a written dataset (``stacks``: one per micrograph, or the one ``stack``)."""

    stack: Path
    star: Path
    truth: Path
    volumes: list[Path]
    tilt_stack: Path | None = None
    tilt_star: Path | None = None
    stacks: tuple[Path, ...] = ()


def stack_table(stacks: list[Path], counts: list[int], star: Path, box: int, apix: float, ctf: np.ndarray | None,
                rotations: np.ndarray, shifts_px: np.ndarray) -> ParticleTable:
    """The table of images written to ``stacks`` (``counts`` each) in order, as ``star`` will name them."""
    n = sum(counts)
    names = tuple(str(p.relative_to(star.parent)) for p in stacks)
    refs = ImageRefs(names, np.repeat(np.arange(len(stacks), dtype=np.int32), counts),
                     np.concatenate([np.arange(c, dtype=np.int64) for c in counts]), star)
    ctf_frame = None if ctf is None else pd.DataFrame(ctf[:, 2:], columns=list(CTF_FIELDS))
    return ParticleTable(refs=refs, pixel_size_angstrom=np.full(n, apix), box_size_px=np.full(n, box),
                         ctf=ctf_frame, rotations_or_none=rotations, shifts_angstrom=shifts_px * apix,
                         optics_group=np.ones(n, np.int64), record=SourceRecord("none", star, np.arange(n)))


class StackStream:
    """Consecutive stacks written as one stream of images (one stack per micrograph)."""

    def __init__(self, paths: list[Path], counts: list[int], box: int, apix: float, dtype: type):
        self.paths, self.counts, self.box, self.apix, self.dtype = paths, counts, box, apix, dtype
        self.current, self.left, self.writer = -1, 0, None

    def write(self, images: np.ndarray) -> None:
        """Append ``images`` (K, D, D), moving on to the next stack as each fills."""
        while len(images):
            if self.left == 0:
                self._next()
            take = min(self.left, len(images))
            self.writer.write(images[:take])
            images, self.left = images[take:], self.left - take

    def _next(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.current += 1
        self.left = self.counts[self.current]
        self.writer = MrcStackWriter(self.paths[self.current], (self.left, self.box, self.box), self.apix, self.dtype)

    def close(self) -> None:
        """Close the stack being written."""
        if self.writer is not None:
            self.writer.close()


def _ctf(n: int, box: int, imaging: Imaging, ctf_from: np.ndarray | None, micrograph: np.ndarray | None,
         realism: Realism, rng: np.random.Generator, realism_rng: np.random.Generator) -> np.ndarray | None:
    """Each particle's CTF row: drawn per particle, or per micrograph with the particles' heights."""
    if not imaging.ctf:
        return None
    rows = n if micrograph is None else int(micrograph.max()) + 1
    draw = rng if micrograph is None else realism_rng
    if ctf_from is not None:
        ctf = ctf_from[draw.integers(0, len(ctf_from), rows)].copy()
        ctf[:, 0], ctf[:, 1] = box, imaging.pixel_size_angstrom
    else:
        ctf = draw_ctf(rows, imaging, box, draw)
    if micrograph is not None:
        ctf = micrograph_ctf(ctf, micrograph, realism.defocus_spread_angstrom, realism_rng)
    return ctf


def write_dataset(outdir: str | os.PathLike, volumes: list[np.ndarray], states: np.ndarray, imaging: Imaging, *,
                  coordinates: np.ndarray | None = None, ctf_from: np.ndarray | None = None,
                  tilt_deg: float | None = None, realism: Realism | None = None, seed: int = 0,
                  chunk_size: int = 1000, progress: Callable[[int], None] | None = None) -> SimulatedDataset:
    """Simulate particles of ``volumes`` in ``states`` and write them with their ground truth.

    Parameters
    ----------
    outdir : str or PathLike
        Created if needed; gets ``particles.mrcs`` (or ``Particles/mic_XXXXX.mrcs``, one per
        micrograph), ``particles.star`` (RELION 3.1), ``truth.npz`` and
        ``truth_vols/vol_XXX.mrc`` (plus ``tilt.mrcs``/``tilt.star``).
    volumes : list of ndarray, each (D, D, D)
        One positive-density map per state.
    states : ndarray, shape (N,), int
        State of each image (those :class:`Realism` makes junk are replaced).
    imaging : Imaging
    coordinates : ndarray, shape (N, d), optional
        The true conformational coordinates, saved in the truth (default: the state).
    ctf_from : ndarray, shape (M, 9), optional
        CTF rows to draw from (with replacement) instead of the defocus range.
    tilt_deg : float, optional
        Also write a tilt partner of each particle, pose ``Rx(tilt) R`` (a stage tilt about x).
    realism : Realism, optional
        Junk, pose errors in the written metadata, micrographs, float16 (default: none).
    seed : int
    chunk_size : int
    progress : callable, optional
        Called with the number of images done.

    Returns
    -------
    SimulatedDataset

    Notes
    -----
    ``truth.npz`` holds ``state`` (-1 for junk), ``coordinates`` (NaN for junk), the true
    ``rotations`` and ``shifts_px``, ``ctf``, ``junk_kind`` (0 for a particle, ``k`` for junk
    of kind ``junk_kinds[k - 1]``), ``junk_kinds`` and ``micrograph`` (-1 without).
    The STAR file holds the poses with their errors.
    """
    realism = realism or Realism()
    realism.check()
    if realism.micrographs and tilt_deg is not None:
        raise ValueError("micrographs and tilt pairs cannot be simulated together")
    outdir = Path(outdir)
    (outdir / "truth_vols").mkdir(parents=True, exist_ok=True)
    n, box, apix = len(states), volumes[0].shape[-1], imaging.pixel_size_angstrom
    rng = np.random.default_rng(seed)
    realism_rng = np.random.default_rng([seed, 24])  # its own stream: a clean dataset stays as it was
    rotations, shifts = draw_poses(n, imaging.shift_px, rng, seed)
    micrograph = micrograph_of(n, realism.micrographs) if realism.micrographs else None
    ctf = _ctf(n, box, imaging, ctf_from, micrograph, realism, rng, realism_rng)
    states = np.asarray(states, np.int64).copy()
    coordinates = states[:, None].astype(float) if coordinates is None else np.asarray(coordinates, float).copy()
    junk_kind = np.zeros(n, np.int64)
    images_of = states.copy()  # which map each image shows
    all_volumes = list(volumes)
    if realism.junk_fraction:
        maps, codes = junk_volumes(volumes[0], realism.junk_kinds, realism_rng, other=realism.other_volume)
        junk = realism_rng.choice(n, int(round(realism.junk_fraction * n)), replace=False)
        kinds = np.unique(codes)
        chosen = kinds[realism_rng.integers(0, len(kinds), len(junk))]  # the kinds in equal shares
        variant = np.array([realism_rng.choice(np.flatnonzero(codes == k)) for k in chosen], np.int64)
        images_of[junk], junk_kind[junk] = len(volumes) + variant, chosen
        states[junk], coordinates[junk] = -1, np.nan
        all_volumes += maps
    written_rotations = perturb_rotations(rotations, realism.pose_error_deg, realism_rng)
    written_shifts = shifts + (realism_rng.normal(scale=realism.shift_error_px, size=shifts.shape)
                               if realism.shift_error_px else 0.0)
    projector = VolumeProjector(all_volumes)
    if micrograph is None:
        stacks, counts = [outdir / "particles.mrcs"], [n]
    else:
        (outdir / "Particles").mkdir(exist_ok=True)
        counts = np.bincount(micrograph).tolist()
        stacks = [outdir / "Particles" / f"mic_{m + 1:05d}.mrcs" for m in range(len(counts))]
    paths = SimulatedDataset(stacks[0], outdir / "particles.star", outdir / "truth.npz",
                             [outdir / "truth_vols" / f"vol_{i:03d}.mrc" for i in range(len(volumes))],
                             outdir / "tilt.mrcs" if tilt_deg is not None else None,
                             outdir / "tilt.star" if tilt_deg is not None else None, tuple(stacks))
    extra = None if micrograph is None else {
        "rlnMicrographName": np.array([f"Micrographs/mic_{m + 1:05d}.mrc" for m in micrograph])}
    jobs = [(stacks, counts, paths.star, rotations, written_rotations, seed)]
    if tilt_deg is not None:
        tilt = rotation_about_x(tilt_deg).numpy()  # the stage tilts the specimen in the lab frame
        jobs.append(([paths.tilt_stack], [n], paths.tilt_star, tilt @ rotations, tilt @ written_rotations,
                     seed + 1))
    finals = [p for job in jobs for p in [*job[0], job[2]]] + [paths.truth] + paths.volumes
    dtype = np.float16 if realism.float16 else np.float32
    with atomic_outputs(*finals) as temps:
        temp_of = dict(zip(finals, temps))
        for job_stacks, job_counts, star, rots, written, noise_seed in jobs:
            writer = StackStream([temp_of[p] for p in job_stacks], job_counts, box, apix, dtype)
            try:
                for images in simulate_chunks(projector, images_of, rots, shifts, ctf, imaging, seed=noise_seed,
                                              chunk_size=chunk_size, progress=progress, signal=junk_kind == 0):
                    writer.write(images)
            finally:
                writer.close()
            table = stack_table(job_stacks, job_counts, star, box, apix, ctf, written, written_shifts)
            write_particles(table, temp_of[star], extra_columns=extra)
        with open(temp_of[paths.truth], "wb") as fh:
            np.savez(fh, state=states, coordinates=coordinates, rotations=rotations, shifts_px=shifts,
                     ctf=np.zeros((n, 0)) if ctf is None else ctf, junk_kind=junk_kind, junk_kinds=np.array(JUNK_KINDS),
                     micrograph=np.full(n, -1) if micrograph is None else micrograph)
        for path, volume in zip(paths.volumes, volumes):
            write_map(temp_of[path], volume, apix)
    return paths
