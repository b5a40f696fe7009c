"""Tilt series: which particle each image of a per-tilt-image STAR file shows, and its exposure and tilt.

Cryo-ET particles are seen in many tilted images. Files written for subtomogram averaging
by Warp/M, by cryoDRGN's ``parse_relion``/``parse_warptools`` and by nextPYP list one row per
tilt image, the rows of one particle sharing a name (``_rlnTomoParticleName``, else
``_rlnGroupName``). A :class:`~cryofield.io.ParticleTable` keeps one row per image, as
for single particles, and gains a :class:`TiltSeries` that groups the rows. (RELION 5's own
sets, one row per particle, are expanded to that form by :mod:`cryofield.io.relion_tomo`.)

What each image received is read from the first column that says it:

- **exposure** (e/A^2, accumulated): ``_rlnMicrographPreExposure`` (RELION 5 and cryoDRGN's
  converters: the exposure before the tilt, 0 for the first), else ``_rlnCtfBfactor`` where
  every value is <= 0 (Warp/M write ``B = -4 x exposure``, the first tilt's own dose
  included), else unknown;
- **tilt angle** (degrees): ``_rlnTomoNominalStageTiltAngle``, else ``_rlnTomoYTilt``,
  else ``arccos(_rlnCtfScalefactor)`` where every scale factor lies in (0, 1] (Warp's scale
  is ``cos(tilt)``; RELION refines it, to values above 1 too, and then it says nothing
  about the angle and is not used), else unknown. An angle from a cosine has no sign.

A tilted image sees the particle through ice ``1 / cos(tilt)`` times as thick, which leaves
less of its signal: RELION and Warp model this as an amplitude scale of the image's CTF,
``_rlnCtfScalefactor`` (Warp writes ``cos(tilt)``, RELION refines it). Each image's
:attr:`TiltSeries.amplitude` applies that scale once, chosen by :attr:`TiltSeries.weighting`
(:data:`WEIGHTINGS`): ``"auto"`` takes ``_rlnCtfScalefactor`` where the file gives it, else
``cos(tilt)``; ``"cos"`` always ``cos(tilt)``; ``"none"`` no scale. (cryoDRGN 4.3.1's
``--encode-mode tilt`` multiplies its CTF by ``_rlnCtfScalefactor`` and its dose filter by
``cos(tilt)`` again, ``cos^2`` in all.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from cryofield.errors import InputError
from cryofield.io.star import numeric_column

#: Columns naming each row's particle, in order of preference.
GROUP_COLUMNS = ("rlnTomoParticleName", "rlnGroupName")
#: How each image's amplitude scale is chosen (:attr:`TiltSeries.weighting`).
WEIGHTINGS = ("auto", "cos", "none")
#: ``--tilt-weighting``'s help (training and backprojection).
WEIGHTING_HELP = ("tilt images' amplitude scale, applied once to their CTF: auto = _rlnCtfScalefactor where the file "
                  "gives it, else cos(tilt) (default); cos = cos(tilt); none")


@dataclass(frozen=True, eq=False)
class TiltSeries:
    """The particle each image belongs to, and each image's accumulated exposure and tilt.

    Attributes
    ----------
    particle : ndarray, shape (N,), int64
        Index into ``names`` per image (row of the table).
    names : tuple of str
        One per particle (``P``), in order of first appearance.
    exposure : ndarray, shape (N,), float64, or None
        Accumulated exposure of each image, e/A^2 (``exposure_source`` says which kind).
    tilt_deg : ndarray, shape (N,), float64, or None
        Stage tilt of each image, degrees.
    exposure_source, tilt_source : str
        How each was read, e.g. ``"_rlnMicrographPreExposure"`` (``""`` when unknown).
    ctf_scale : ndarray, shape (N,), float64, or None
        ``_rlnCtfScalefactor`` of each image, where the file or its tilt series give it.
    ctf_premultiplied : bool
        The images were multiplied by their CTF when extracted
        (``_rlnCtfDataAreCtfPremultiplied``: RELION 5 and WarpTools do by default).
    weighting : {"auto", "cos", "none"}
        Which amplitude scale :attr:`amplitude` applies (:data:`WEIGHTINGS`; default ``"auto"``).
    """

    particle: np.ndarray
    names: tuple[str, ...]
    exposure: np.ndarray | None = None
    tilt_deg: np.ndarray | None = None
    exposure_source: str = ""
    tilt_source: str = ""
    ctf_scale: np.ndarray | None = None
    ctf_premultiplied: bool = False
    weighting: str = "auto"

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"tilt weighting {self.weighting!r} is not one of {', '.join(WEIGHTINGS)}")

    @property
    def amplitude_source(self) -> str:
        """Where :attr:`amplitude` comes from: ``"_rlnCtfScalefactor"``, ``"cos(tilt)"`` or ``""`` (none)."""
        if self.weighting == "auto" and self.ctf_scale is not None:
            return "_rlnCtfScalefactor"
        if self.weighting != "none" and self.tilt_deg is not None:
            return "cos(tilt)"
        return ""

    @property
    def amplitude(self) -> np.ndarray | None:
        """Each image's signal amplitude relative to an untilted one, shape (N,), float64, or None.

        Multiplies the image's CTF wherever the CTF is applied (training, backprojection);
        :attr:`amplitude_source` says which scale it is.
        """
        source = self.amplitude_source
        if source == "_rlnCtfScalefactor":
            return self.ctf_scale
        if source == "cos(tilt)":
            return np.cos(np.radians(self.tilt_deg))
        return None

    def weighted(self, weighting: str) -> TiltSeries:
        """The same tilt series with the amplitude scale ``weighting`` (:data:`WEIGHTINGS`)."""
        return replace(self, weighting=weighting)

    @property
    def n_particles(self) -> int:
        """Number of particles (tilt series)."""
        return len(self.names)

    def counts(self) -> np.ndarray:
        """Images per particle, shape (P,), int64."""
        return np.bincount(self.particle, minlength=self.n_particles)

    def rows_of(self, particles: np.ndarray) -> np.ndarray:
        """Every image row of the particles ``particles`` (0-based), in table order; shape (K,), int64."""
        particles = np.asarray(particles, dtype=np.int64)
        if particles.size and (particles.min() < 0 or particles.max() >= self.n_particles):
            raise IndexError(f"particle indices must lie in [0, {self.n_particles})")
        keep = np.zeros(self.n_particles, bool)
        keep[particles] = True
        return np.flatnonzero(keep[self.particle])

    @property
    def order(self) -> str:
        """What :meth:`members` orders each particle's images by: ``"exposure"``, ``"tilt"`` or ``"file"``."""
        return "exposure" if self.exposure is not None else "tilt" if self.tilt_deg is not None else "file"

    def members(self, ntilts: int | None = None) -> np.ndarray:
        """Each particle's image rows, least damaged first: at most ``ntilts`` of them, ``-1`` where it has fewer.

        Images are ordered by accumulated exposure, else by ``|tilt|``, else as the file lists
        them (:attr:`order`); ties keep the file's order.

        Parameters
        ----------
        ntilts : int, optional
            Images kept per particle (default: all of the particle with most).

        Returns
        -------
        ndarray, shape (P, T), int64
            ``T = min(ntilts, most images of a particle)``; row indices of the table.
        """
        counts = self.counts()
        width = int(counts.max(initial=0)) if ntilts is None else min(int(ntilts), int(counts.max(initial=0)))
        key = (self.exposure if self.exposure is not None
               else np.abs(self.tilt_deg) if self.tilt_deg is not None else np.zeros(len(self.particle)))
        # by particle, then by the key, then by row: a stable order of every image
        rows = np.lexsort((np.arange(len(self.particle)), key, self.particle))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(len(rows)) - starts[self.particle[rows]]
        members = np.full((self.n_particles, width), -1, np.int64)
        keep = rank < width
        members[self.particle[rows[keep]], rank[keep]] = rows[keep]
        return members

    def subset(self, rows: np.ndarray) -> TiltSeries:
        """The images ``rows`` (in that order); particles renumbered in order of first appearance."""
        rows = np.asarray(rows, dtype=np.int64)
        old = self.particle[rows]
        present, first = np.unique(old, return_index=True)
        kept = present[np.argsort(first, kind="stable")]  # in order of first appearance
        new_of_old = np.full(self.n_particles, -1, np.int64)
        new_of_old[kept] = np.arange(len(kept))

        def take(a):
            return None if a is None else a[rows]

        return replace(self, particle=new_of_old[old], names=tuple(self.names[i] for i in kept),
                       exposure=take(self.exposure), tilt_deg=take(self.tilt_deg), ctf_scale=take(self.ctf_scale))


def group_column(columns) -> str | None:
    """The column that names each row's particle (:data:`GROUP_COLUMNS`), or ``None``."""
    return next((c for c in GROUP_COLUMNS if c in columns), None)


def read_tilt_series(path, df: dict[str, pd.Series]) -> TiltSeries:
    """Group the rows of a per-tilt-image STAR particle table into particles.

    Parameters
    ----------
    path : Path
        The STAR file, for error messages.
    df : dict of str to Series
        The particle table's columns (with the optics group's values merged in).

    Returns
    -------
    TiltSeries

    Raises
    ------
    InputError
        No column names the particles, or a particle's rows are not contiguous (a file that
        interleaves them is not a per-particle tilt series).
    """
    key = group_column(df)
    if key is None:
        raise InputError(path, "no _rlnTomoParticleName or _rlnGroupName column to group the tilt images "
                               "into particles")
    labels = df[key].astype(str).to_numpy()
    codes, names = pd.factorize(labels, sort=False)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    if len(starts) != len(names):  # a name that comes back after another's rows
        seen = np.zeros(len(names), bool)
        for start in starts:
            if seen[codes[start]]:
                raise InputError(path, f"row {start + 1}: particle {labels[start]!r} (_{key}) resumes after other "
                                       "particles' rows; a tilt series lists each particle's images together")
            seen[codes[start]] = True
    exposure, exposure_source = _exposure(path, df)
    tilt, tilt_source = _tilt(path, df)
    return TiltSeries(codes.astype(np.int64), tuple(str(name) for name in names), exposure, tilt,
                      exposure_source, tilt_source, ctf_scale=ctf_scale_column(path, df),
                      ctf_premultiplied=_premultiplied(path, df))


def ctf_scale_column(path, df: dict[str, pd.Series]) -> np.ndarray | None:
    """``_rlnCtfScalefactor`` of each row (values <= 0 read as 0), or None where the file has none.

    RELION refines the scale of each tilt's CTF and gives a tilt it finds no signal in a scale
    of about 0, sometimes below (the real ``TS_54.star`` of ``tomo/relion5`` has -0.16): such
    tilts are given no weight, with a warning.

    Raises
    ------
    InputError
        A scale that is not a finite number (the row is named).
    """
    if "rlnCtfScalefactor" not in df:
        return None
    scale = numeric_column(path, df, "rlnCtfScalefactor")
    dropped = np.flatnonzero(scale <= 0)
    if dropped.size:
        warnings.warn(f"{path}: {dropped.size} rows have _rlnCtfScalefactor <= 0 (row {int(dropped[0]) + 1}: "
                      f"{scale[dropped[0]]:g}): their tilts get no weight", stacklevel=2)
        scale = np.maximum(scale, 0.0)
    return scale


def _premultiplied(path, df: dict[str, pd.Series]) -> bool:
    """Whether ``_rlnCtfDataAreCtfPremultiplied`` says the images were multiplied by their CTF (all or none)."""
    if "rlnCtfDataAreCtfPremultiplied" not in df:
        return False
    flags = numeric_column(path, df, "rlnCtfDataAreCtfPremultiplied") != 0
    if flags.any() and not flags.all():
        raise InputError(path, f"row {int(np.flatnonzero(flags != flags[0])[0]) + 1}: _rlnCtfDataAreCtfPremultiplied "
                               "differs between optics groups; split the file by them")
    return bool(flags.all())


def _exposure(path, df: dict[str, pd.Series]) -> tuple[np.ndarray | None, str]:
    if "rlnMicrographPreExposure" in df:
        values = numeric_column(path, df, "rlnMicrographPreExposure")
        if (values < 0).any():
            row = int(np.flatnonzero(values < 0)[0])
            raise InputError(path, f"row {row + 1}: _rlnMicrographPreExposure is negative ({values[row]:g})")
        return values, "_rlnMicrographPreExposure"
    if "rlnCtfBfactor" in df:
        b = numeric_column(path, df, "rlnCtfBfactor")
        if (b <= 0).all() and (b < 0).any():
            return -b / 4.0, "-_rlnCtfBfactor / 4 (Warp's)"
    return None, ""


def _tilt(path, df: dict[str, pd.Series]) -> tuple[np.ndarray | None, str]:
    for column in ("rlnTomoNominalStageTiltAngle", "rlnTomoYTilt"):
        if column in df:
            return numeric_column(path, df, column), "_" + column
    if "rlnCtfScalefactor" in df:
        scale = numeric_column(path, df, "rlnCtfScalefactor")
        if ((scale > 0) & (scale <= 1)).all():
            return np.degrees(np.arccos(scale)), "arccos(_rlnCtfScalefactor), unsigned"
    return None, ""
