"""RELION 5 tomography particle sets (and WarpTools' exports of them) as tilt images.

RELION 5 lists one row per particle: its position in the tomogram, its orientation, and in
``_rlnTomoVisibleFrames`` which rows of its tilt series' table show it; its 2D stack
(``_rlnImageName``, no ``N@``) holds those tilt images, in that order. The tilt series are
described in the tomograms file (an optimisation set names both). :func:`read_tomo_particles`
expands each particle into one row per visible tilt image, as per-tilt STAR files list them
(:mod:`cryofield.io.tilts`), following RELION's own geometry (``src/jaz/tomography``):

- the tilt's rotation ``R_f = Rz(ZRot) Ry(YTilt) Rx(XTilt)`` (``_rlnTomoXTilt`` ...), or
  the 3 x 3 block of ``_rlnTomoProjX/Y/Z`` (WarpTools, RELION 4);
- the image's pose ``R_f A_sub A`` (``A_sub`` from ``_rlnTomoSubtomogramRot/Tilt/Psi``, ``A``
  from ``_rlnAngleRot/Tilt/Psi``) and its shift, the first two components of
  ``R_f A_sub o`` for the 3D origin ``o`` (``_rlnOriginX/Y/ZAngst``);
- its defocus, the tilt's ``_rlnDefocusU/V`` plus ``hand x depth``, the depth being the z
  component of ``R_f (c - A_sub o)`` for the particle's centred position ``c`` (A);
- its exposure ``_rlnMicrographPreExposure`` and tilt ``_rlnTomoNominalStageTiltAngle``.

Stacks written by RELION (and WarpTools since July 2026) hold the visible tilts only; older
WarpTools stacks hold every tilt (zeros where not visible): a stack with one image per row
of its tilt series is read that way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from cryofield.conventions import relion_euler_to_matrix, relion_tilt_matrix
from cryofield.errors import InputError
from cryofield.io.star import StarBlock, numeric_column, read_star
from cryofield.io.table import CTF_FIELDS, ImageRefs, SourceRecord
from cryofield.io.tilts import TiltSeries, ctf_scale_column


def is_tomo_particle_set(blocks: dict[str, StarBlock]) -> bool:
    """Whether a STAR file is a RELION 5 optimisation set or tomography particle set (one row per particle)."""
    for block in blocks.values():
        if "rlnTomoParticlesFile" in block.pairs or (block.table is not None and "rlnTomoParticlesFile" in
                                                     block.table.columns):
            return True
        if block.table is not None and "rlnTomoVisibleFrames" in block.table.columns:
            return True
    return False


@dataclass(frozen=True)
class _Series:
    """One tilt series: its frames' rotations, defocus, exposure, tilt and CTF scale; the tomogram's size and hand."""

    rotations: np.ndarray  # (F, 3, 3) R_f
    defocus: np.ndarray  # (F, 3): U, V (A), angle (deg)
    phase_shift: np.ndarray  # (F,) degrees
    exposure: np.ndarray  # (F,) e/A^2 before the tilt
    tilt_deg: np.ndarray | None
    ctf_scale: np.ndarray | None
    hand: float
    size_px: np.ndarray  # (3,) tomogram size, tilt-series pixels
    pixel_size: float  # tilt-series pixel size, A


def read_tomo_particles(path: Path, blocks: dict[str, StarBlock], datadir: Path | None,
                        tomograms: Path | None) -> dict:
    """A RELION 5 tomography particle set (or optimisation set) expanded to one row per visible tilt image.

    Parameters
    ----------
    path : Path
        The optimisation set or particles STAR file.
    blocks : dict of str to StarBlock
        Its blocks.
    datadir : Path or None
        Where the stacks are looked for first; by default the RELION project folder (the
        first folder above the particles file below which its first stack is).
    tomograms : Path or None
        The tomograms STAR file, for a particles file given without its optimisation set.

    Returns
    -------
    dict
        The parts of a :class:`~cryofield.io.ParticleTable` (as the other readers return
        them): refs, pixel size, box, CTF, rotations, shifts, optics groups, the source record
        (one row per particle, kept for export) and the :class:`TiltSeries`.

    Raises
    ------
    InputError
        A file not found, a tomogram the tomograms file does not describe, a visible-frames
        list of the wrong length, a particle with no visible tilt, missing columns.
    """
    names = _optimisation_set(blocks)
    project = path.resolve().parent  # where names are relative to, when nothing says better
    if names is not None:
        particles_name, tomograms_name = names
        particles_path = _find(particles_name, path)
        project = Path(str(particles_path)[:-len(particles_name)])
        tomograms = tomograms or _find(tomograms_name, path)
        blocks = read_star(particles_path)
    else:
        particles_path = path
        if tomograms is None:
            raise InputError(path, "a RELION 5 tomography particle set: read it through its optimisation set, or "
                                   "name its tomograms file (--tomograms)")
    table = next((b.table for b in blocks.values() if b.table is not None and "rlnTomoVisibleFrames" in
                  b.table.columns), None)
    if table is None:
        raise InputError(particles_path, "no particle table with _rlnTomoVisibleFrames")
    block_name = next(name for name, b in blocks.items() if b.table is table)
    series = _read_tomograms(Path(tomograms))
    optics = _optics_columns(particles_path, blocks, table)
    if datadir is None:  # the stacks are named from the project folder
        first = str(table["rlnImageName"].iloc[0]).rpartition("@")[2]
        datadir = next((folder for folder in (particles_path.resolve().parent, *particles_path.resolve().parents)
                        if (folder / first).is_file()), project)
    return _expand(particles_path, blocks, block_name, table, optics, series, datadir)


def _optimisation_set(blocks: dict[str, StarBlock]) -> tuple[str, str] | None:
    """``(particles file, tomograms file)`` named by an optimisation set, or ``None``."""
    for block in blocks.values():
        pairs = dict(block.pairs)
        if block.table is not None and len(block.table) == 1:
            pairs |= {c: str(block.table[c].iloc[0]) for c in block.table.columns}
        if "rlnTomoParticlesFile" in pairs:
            if "rlnTomoTomogramsFile" not in pairs:
                raise InputError(None, "the optimisation set names no _rlnTomoTomogramsFile")
            return pairs["rlnTomoParticlesFile"], pairs["rlnTomoTomogramsFile"]
    return None


def _find(relative: str, named_in: Path) -> Path:
    """A file named in ``named_in`` relative to the RELION project folder: the first folder above that has it."""
    folder = named_in.resolve().parent
    for candidate in (folder, *folder.parents):
        if (candidate / relative).is_file():
            return candidate / relative
    raise InputError(named_in, f"names {relative}, which is not found below any folder above it")


def _read_tomograms(path: Path) -> dict[str, _Series]:
    """Every tilt series the tomograms file describes, by tomogram name."""
    blocks = read_star(path)
    glob = blocks.get("global")
    if glob is None or glob.table is None or "rlnTomoName" not in glob.table.columns:
        raise InputError(path, "no data_global table with _rlnTomoName: not a RELION tomograms file")
    g = glob.table
    out = {}
    for row in range(len(g)):
        name = str(g["rlnTomoName"].iloc[row])
        if "rlnTomoTiltSeriesStarFile" in g.columns:  # RELION 5: one file per tilt series
            own = _find(str(g["rlnTomoTiltSeriesStarFile"].iloc[row]), path)
            frames = next(b.table for b in read_star(own).values() if b.table is not None)
            where = own
        else:  # WarpTools: a block per tilt series in the same file
            block = blocks.get(name)
            if block is None or block.table is None:
                raise InputError(path, f"no data_{name} block for tomogram {name}")
            frames, where = block.table, path
        out[name] = _series(where, frames, g.iloc[row], path)
    return out


def _series(path: Path, frames: pd.DataFrame, tomogram: pd.Series, tomograms: Path) -> _Series:
    def column(name: str) -> np.ndarray:
        if name not in frames.columns:
            raise InputError(path, f"no _{name} column")
        return numeric_column(path, frames, name)

    if "rlnTomoXTilt" in frames.columns:
        rotations = relion_tilt_matrix(column("rlnTomoXTilt"), column("rlnTomoYTilt"), column("rlnTomoZRot"))
    elif "rlnTomoProjX" in frames.columns:
        rows = [[[float(v) for v in str(text).strip("[]").split(",")[:3]] for text in frames[f"rlnTomoProj{a}"]]
                for a in "XYZ"]  # the rows of each frame's matrix
        rotations = np.stack([np.array(r) for r in rows], 1)
    else:
        raise InputError(path, "neither _rlnTomoXTilt/YTilt/ZRot nor _rlnTomoProjX/Y/Z: no tilt geometry")
    u = column("rlnDefocusU")
    v = numeric_column(path, frames, "rlnDefocusV") if "rlnDefocusV" in frames.columns else u
    angle = numeric_column(path, frames, "rlnDefocusAngle") if "rlnDefocusAngle" in frames.columns else 0 * u
    phase = numeric_column(path, frames, "rlnPhaseShift") if "rlnPhaseShift" in frames.columns else 0 * u
    tilt = next((numeric_column(path, frames, c) for c in ("rlnTomoNominalStageTiltAngle", "rlnTomoYTilt")
                 if c in frames.columns), None)
    scale = ctf_scale_column(path, frames)

    def value(name: str, default: float | None = None) -> float:
        if name in tomogram.index:
            return float(tomogram[name])
        if default is None:
            raise InputError(tomograms, f"no _{name} for tomogram {tomogram['rlnTomoName']}")
        return default

    return _Series(rotations, np.stack([u, v, angle], 1), phase, column("rlnMicrographPreExposure"), tilt, scale,
                   value("rlnTomoHand", -1.0) * value("rlnTomoDefocusSlope", 1.0),
                   np.array([value(f"rlnTomoSize{a}") for a in "XYZ"]), value("rlnTomoTiltSeriesPixelSize"))


def _optics_columns(path: Path, blocks: dict[str, StarBlock], table: pd.DataFrame) -> pd.DataFrame:
    """Each particle's optics-group values (voltage, Cs, amplitude contrast, pixel size, box, premultiplied)."""
    optics = blocks.get("optics")
    if optics is None or optics.table is None or "rlnOpticsGroup" not in table.columns:
        raise InputError(path, "no data_optics table (or no _rlnOpticsGroup): not a RELION 5 particle set")
    at = pd.Index(optics.table["rlnOpticsGroup"].to_numpy()).get_indexer(table["rlnOpticsGroup"].to_numpy())
    if (at < 0).any():
        row = int(np.flatnonzero(at < 0)[0])
        raise InputError(path, f"row {row + 1}: optics group {table['rlnOpticsGroup'].iloc[row]} is not in data_optics")
    return optics.table.iloc[at].reset_index(drop=True)


def _expand(path: Path, blocks: dict[str, StarBlock], block_name: str, table: pd.DataFrame, optics: pd.DataFrame,
            series: dict[str, _Series], datadir: Path) -> dict:
    """One row per visible tilt image of every particle (module docstring)."""
    def column(name: str, default: float | None = None) -> np.ndarray:
        if name in table.columns:
            return numeric_column(path, table, name)
        if default is None:
            raise InputError(path, f"no _{name} column")
        return np.full(len(table), default)

    def optic(name: str) -> np.ndarray:
        if name not in optics.columns:
            raise InputError(path, f"data_optics has no _{name}")
        return numeric_column(path, optics, name)

    angles = [f"rlnAngle{a}" for a in ("Rot", "Tilt", "Psi")]
    sub = [f"rlnTomoSubtomogram{a}" for a in ("Rot", "Tilt", "Psi")]
    particle_matrix = relion_euler_to_matrix(np.stack([column(c, 0.0) for c in angles], 1))
    subtomogram = relion_euler_to_matrix(np.stack([column(c, 0.0) for c in sub], 1))
    origin = np.stack([column(f"rlnOrigin{a}Angst", 0.0) for a in "XYZ"], 1)
    centred = _centred_positions(path, table, series)
    images, stacks = _visible_frames(path, table, series, datadir)
    particle = np.repeat(np.arange(len(table)), [len(f) for f in images])
    frame = np.concatenate(images)
    tomo = table["rlnTomoName"].astype(str).to_numpy()[particle]
    rotations_f = np.empty((len(frame), 3, 3))
    defocus, phase, exposure = np.empty((len(frame), 3)), np.empty(len(frame)), np.empty(len(frame))
    tilt = np.full(len(frame), np.nan)
    scale = np.full(len(frame), np.nan)
    hand = np.empty(len(frame))
    for name in np.unique(tomo):
        at, s = np.flatnonzero(tomo == name), series[name]
        rotations_f[at], defocus[at], phase[at], exposure[at] = (s.rotations[frame[at]], s.defocus[frame[at]],
                                                                 s.phase_shift[frame[at]], s.exposure[frame[at]])
        hand[at] = s.hand
        if s.tilt_deg is not None:
            tilt[at] = s.tilt_deg[frame[at]]
        if s.ctf_scale is not None:
            scale[at] = s.ctf_scale[frame[at]]
    image_frame = rotations_f @ subtomogram[particle]
    rotations = image_frame @ particle_matrix[particle]
    shifts = np.einsum("nij,nj->ni", image_frame, origin[particle])[:, :2]
    depth = np.einsum("nij,nj->ni", rotations_f,
                      centred[particle] - np.einsum("nij,nj->ni", subtomogram[particle], origin[particle]))[:, 2]
    defocus[:, :2] += (hand * depth)[:, None]
    ctf = pd.DataFrame(dict(zip(CTF_FIELDS, [
        defocus[:, 0], defocus[:, 1], defocus[:, 2], optic("rlnVoltage")[particle],
        optic("rlnSphericalAberration")[particle], optic("rlnAmplitudeContrast")[particle], phase])))
    stack_names, stack_id = stacks
    refs = ImageRefs(stack_names, stack_id[particle].astype(np.int32),
                     np.concatenate([np.arange(len(f)) for f in images]), path, datadir)  # RELION's: visible only
    if _holds_every_tilt(refs, len(series[str(tomo[0])].exposure), len(images[0])):
        refs = replace(refs, image_index=frame.astype(np.int64))
    names = (table["rlnTomoParticleName"].astype(str).tolist() if "rlnTomoParticleName" in table.columns
             else [f"{t}/{i + 1}" for i, t in enumerate(table["rlnTomoName"].astype(str))])
    premultiplied = ("rlnCtfDataAreCtfPremultiplied" in optics.columns
                     and bool((optic("rlnCtfDataAreCtfPremultiplied") != 0).any()))
    tilts = TiltSeries(particle.astype(np.int64), tuple(names), exposure,
                       None if np.isnan(tilt).any() else tilt, "_rlnMicrographPreExposure",
                       "" if np.isnan(tilt).any() else "_rlnTomoNominalStageTiltAngle",
                       ctf_scale=None if np.isnan(scale).any() else scale, ctf_premultiplied=premultiplied)
    record = SourceRecord("star", path, particle.astype(np.int64), star=blocks, particles_block=block_name,
                          one_row_per_particle=True)
    return dict(refs=refs, record=record, pixel_size=optic("rlnImagePixelSize")[particle],
                box=optic("rlnImageSize").astype(np.int64)[particle], ctf=ctf, rotations=rotations,
                shifts_angstrom=shifts, groups=column("rlnOpticsGroup").astype(np.int64)[particle], tilts=tilts)


def _centred_positions(path: Path, table: pd.DataFrame, series: dict[str, _Series]) -> np.ndarray:
    """Each particle's position relative to its tomogram's centre, A, shape (P, 3).

    RELION 5 writes it (``_rlnCenteredCoordinateX/Y/ZAngst``); RELION 4 and WarpTools write
    ``_rlnCoordinateX/Y/Z`` in pixels of the tomogram, from its corner.
    """
    missing = sorted(set(table["rlnTomoName"].astype(str)) - set(series))
    if missing:
        row = int(np.flatnonzero(table["rlnTomoName"].astype(str) == missing[0])[0])
        raise InputError(path, f"row {row + 1}: tomogram {missing[0]} is not in the tomograms file")
    if all(f"rlnCenteredCoordinate{a}Angst" in table.columns for a in "XYZ"):
        return np.stack([numeric_column(path, table, f"rlnCenteredCoordinate{a}Angst") for a in "XYZ"], 1)
    if all(f"rlnCoordinate{a}" in table.columns for a in "XYZ"):
        corner = np.stack([numeric_column(path, table, f"rlnCoordinate{a}") for a in "XYZ"], 1)
        own = [series[t] for t in table["rlnTomoName"].astype(str)]
        return (corner - np.stack([s.size_px / 2 for s in own])) * np.array([s.pixel_size for s in own])[:, None]
    raise InputError(path, "no _rlnCenteredCoordinateX/Y/ZAngst or _rlnCoordinateX/Y/Z: no particle positions")


def _visible_frames(path: Path, table: pd.DataFrame, series: dict[str, _Series],
                    datadir: Path) -> tuple[list[np.ndarray], tuple[tuple[str, ...], np.ndarray]]:
    """Each particle's visible frames (rows of its tilt series), and its stack's name and id."""
    frames = []
    lists, tomograms = table["rlnTomoVisibleFrames"].astype(str), table["rlnTomoName"].astype(str)
    for row, (text, name) in enumerate(zip(lists, tomograms)):
        try:
            flags = np.array([int(v) for v in text.strip("[] ").split(",")], np.int64)
        except ValueError:
            raise InputError(path, f"row {row + 1}: _rlnTomoVisibleFrames {text[:40]!r} is not a list of 0 and 1"
                             ) from None
        count = len(series[name].exposure)
        if len(flags) != count:
            raise InputError(path, f"row {row + 1}: _rlnTomoVisibleFrames lists {len(flags)} tilts, but tilt series "
                                   f"{name} has {count}")
        visible = np.flatnonzero(flags)
        if not len(visible):
            raise InputError(path, f"row {row + 1}: no tilt image is visible (_rlnTomoVisibleFrames all 0)")
        frames.append(visible)
    names = table["rlnImageName"].astype(str).str.rpartition("@")[2]
    codes, uniques = pd.factorize(names, sort=False)
    return frames, (tuple(str(u) for u in uniques), codes)


def _holds_every_tilt(refs: ImageRefs, frames: int, visible: int) -> bool:
    """Whether the stacks hold a slice per tilt (older WarpTools), judged by the first particle's.

    It does when its stack has one image per row of its tilt series and more than it shows;
    RELION's hold the visible tilts only. Stacks not here (``info`` on the metadata alone) are
    taken to be RELION's.
    """
    try:
        held = len(refs.stack(int(refs.stack_id[0])))
    except InputError:
        return False
    return held == frames and held > visible
