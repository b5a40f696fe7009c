"""``read_particles``: one entry point for every particle format cryofield reads."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cryofield.conventions import cryosparc_pose_to_matrix, relion_euler_to_matrix
from cryofield.errors import InputError
from cryofield.io.arrays import load_npy
from cryofield.io.cryosparc import merged_fields, passthrough_tables, read_group
from cryofield.io.legacy import read_legacy_ctf, read_legacy_poses
from cryofield.io.relion_tomo import is_tomo_particle_set, read_tomo_particles
from cryofield.io.star import StarBlock, numeric_column, read_star
from cryofield.io.table import CTF_FIELDS, ImageRefs, ParticleTable, SourceRecord
from cryofield.io.tilts import read_tilt_series

STACK_EXTENSIONS = (".mrcs", ".mrc", ".st", ".map")
METADATA_EXTENSIONS = (".star", ".cs", ".csg", ".txt")
#: RELION's amplitude contrast when a STAR file gives none.
DEFAULT_AMPLITUDE_CONTRAST = 0.1


def read_particles(path: str | os.PathLike, datadir: str | os.PathLike | None = None,
                   poses: str | os.PathLike | None = None, ctf: str | os.PathLike | None = None,
                   *, apix: float | None = None, tilt_series: bool = False,
                   tomograms: str | os.PathLike | None = None) -> ParticleTable:
    """Read particles from any format cryofield knows.

    Parameters
    ----------
    path : str or PathLike
        ``.mrcs``/``.mrc`` stack, ``.txt`` (one stack per line), RELION ``.star`` (3.0 to
        5), cryoSPARC ``.cs`` (with the fields its ``.csg`` result group passes through
        from other tables, when one beside it lists it) or a ``.csg`` (its particles' table).
    datadir : str or PathLike, optional
        Folder where the image stacks named in the metadata are looked for first (as
        written below it, then by base name); otherwise they are found as written or
        relative to the metadata file.
    poses : str or PathLike, optional
        Poses from another file: a cryoDRGN pickle (``(rot, trans)`` or ``rot``), a
        ``.star`` or a ``.cs``; rows in the order of ``path``.
    ctf : str or PathLike, optional
        CTF parameters from another file: a cryoDRGN (N, 9) pickle, ``.star`` or ``.cs``.
    apix : float, optional
        Pixel size in Angstrom, overriding every other source.
    tilt_series : bool
        The rows of a ``.star`` are tilt images: group them into particles by
        ``_rlnTomoParticleName`` or ``_rlnGroupName`` and read each image's exposure and tilt
        (:mod:`cryofield.io.tilts`; ``ParticleTable.tilts``). RELION 5 tomography sets (an
        optimisation set, or a particles file with ``_rlnTomoVisibleFrames``) are always read
        as tilt series, one row per visible tilt image (:mod:`cryofield.io.relion_tomo`).
    tomograms : str or PathLike, optional
        The tomograms file of a RELION 5 particles file given without its optimisation set.

    Returns
    -------
    ParticleTable
        Metadata are read now; images only when asked for.

    Raises
    ------
    InputError
        With the file (and row) at fault: unknown extension, unreadable or inconsistent
        metadata, counts that disagree, no pixel size anywhere (pass ``apix``).
    """
    path = Path(path)
    datadir = Path(datadir) if datadir is not None else None
    if datadir is not None and not datadir.is_dir():
        raise InputError(datadir, "data directory not found")
    if not path.exists():
        raise InputError(path, "file not found")
    ext = path.suffix.lower()
    if tilt_series and ext != ".star":
        raise InputError(path, "tilt series are read from a .star file with one row per tilt image")
    if ext in STACK_EXTENSIONS:
        table = _read_stacks(path, [str(path.resolve())], datadir)
    elif ext == ".txt":
        table = _read_txt(path, datadir)
    elif ext == ".star":
        blocks = read_star(path)
        if is_tomo_particle_set(blocks):
            table = read_tomo_particles(path, blocks, datadir, None if tomograms is None else Path(tomograms))
        else:
            table = _read_star(path, datadir, tilt_series, blocks)
    elif ext == ".cs":
        table = _read_cs(path, datadir)
    elif ext == ".csg":  # a cryoSPARC result group: the table of its particle images
        main = read_group(path).get("blob")
        if main is None:
            raise InputError(path, "this result group has no 'blob' result (the particle images)")
        if not main.is_file():
            raise InputError(path, f"its blob metafile {main.name} is not there")
        table = _read_cs(main, datadir)
    else:
        known = ", ".join(STACK_EXTENSIONS + METADATA_EXTENSIONS)
        raise InputError(path, f"unknown extension {ext or '(none)'!r}; cryofield reads {known}")
    return _finish(table, poses=poses, ctf=ctf, apix=apix)


# -- stacks ----------------------------------------------------------------------------------

def _read_stacks(path: Path, names: list[str], datadir: Path | None) -> dict:
    # one row per stack first, so that a missing stack is reported by its line
    lines = ImageRefs(tuple(names), np.arange(len(names), dtype=np.int32), np.zeros(len(names), np.int64),
                      path, datadir)
    stacks = [lines.stack(i) for i in range(len(names))]
    counts = [len(s) for s in stacks]
    if not sum(counts):
        raise InputError(path, "holds no images" if names == [path.name] or len(names) == 1 else
                         f"its {len(names)} stacks hold no images")
    refs = ImageRefs(tuple(names), np.repeat(np.arange(len(names), dtype=np.int32), counts),
                     np.concatenate([np.arange(c) for c in counts]).astype(np.int64), path, datadir,
                     lines._opened)
    apix = next((s.pixel_size_angstrom for s in stacks if s.pixel_size_angstrom), None)
    n = len(refs)
    return dict(refs=refs, record=SourceRecord("none", path, np.arange(n)),
                pixel_size=None if apix is None else np.full(n, apix), header_apix=apix)


def _read_txt(path: Path, datadir: Path | None) -> dict:
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise InputError(path, "lists no image stacks")
    return _read_stacks(path, names, datadir)


# -- RELION ----------------------------------------------------------------------------------

def _particles_block(path: Path, blocks: dict[str, StarBlock]) -> str:
    for name, block in sorted(blocks.items(), key=lambda item: item[0] != "particles"):
        if block.table is not None and "rlnImageName" in block.table.columns:
            return name
    raise InputError(path, "no particle table (a loop with _rlnImageName)")


def _merge_optics(path: Path, blocks: dict[str, StarBlock], particles: pd.DataFrame) -> dict[str, pd.Series]:
    """Per-particle columns by name, with the optics group's values where the particle has none."""
    optics = blocks.get("optics")
    if optics is None or optics.table is None or "rlnOpticsGroup" not in particles.columns:
        return {c: particles[c] for c in particles.columns}
    table = optics.table
    if "rlnOpticsGroup" not in table.columns:
        raise InputError(path, "data_optics has no _rlnOpticsGroup column")
    groups = table["rlnOpticsGroup"].to_numpy()
    if len(set(groups.tolist())) != len(groups):
        raise InputError(path, "data_optics lists an optics group more than once")
    row_of = pd.Index(groups).get_indexer(particles["rlnOpticsGroup"].to_numpy())
    if (row_of < 0).any():
        bad = int(np.flatnonzero(row_of < 0)[0])
        raise InputError(path, f"row {bad + 1} of data_particles: optics group "
                               f"{particles['rlnOpticsGroup'].iloc[bad]} is not in data_optics")
    merged = {c: particles[c] for c in particles.columns}
    for column in table.columns:
        if column not in merged:
            merged[column] = pd.Series(table[column].to_numpy()[row_of])
    return merged


def _split_image_names(path: Path, names: pd.Series) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    names = names.astype(str)
    parts = names.str.partition("@")
    has_at = parts[1] == "@"
    stack = parts[2].where(has_at, parts[0])
    index_text = parts[0].where(has_at, "1")
    index = pd.to_numeric(index_text, errors="coerce").to_numpy()
    bad = ~np.isfinite(index) | (index < 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(path, f"row {row + 1}: image name {names.iloc[row]!r} is not INDEX@STACK")
    codes, uniques = pd.factorize(stack, sort=False)
    return tuple(str(u) for u in uniques), codes.astype(np.int32), index.astype(np.int64) - 1


def _read_star(path: Path, datadir: Path | None, tilt_series: bool = False,
               blocks: dict[str, StarBlock] | None = None) -> dict:
    blocks = read_star(path) if blocks is None else blocks
    block_name = _particles_block(path, blocks)
    raw = blocks[block_name].table
    df = _merge_optics(path, blocks, raw)
    n = len(raw)
    if n == 0:
        raise InputError(path, f"the particle table (data_{block_name}) has no rows")
    names, stack_id, image_index = _split_image_names(path, df["rlnImageName"])
    refs = ImageRefs(names, stack_id, image_index, path, datadir)

    if "rlnImagePixelSize" in df:
        apix = numeric_column(path, df, "rlnImagePixelSize")
    elif "rlnDetectorPixelSize" in df and "rlnMagnification" in df:
        apix = numeric_column(path, df, "rlnDetectorPixelSize") * 1e4 / numeric_column(path, df, "rlnMagnification")
    else:
        apix = None

    ctf = None
    if "rlnDefocusU" in df:
        missing = [c for c in ("rlnVoltage", "rlnSphericalAberration") if c not in df]
        if missing:
            raise InputError(path, "has _rlnDefocusU but no " + ", ".join("_" + m for m in missing))
        if "rlnAmplitudeContrast" not in df:
            warnings.warn(f"{path}: no _rlnAmplitudeContrast; using RELION's default "
                          f"{DEFAULT_AMPLITUDE_CONTRAST}", stacklevel=2)
        dfu = numeric_column(path, df, "rlnDefocusU")

        def column(name: str, default: np.ndarray | float) -> np.ndarray:
            return numeric_column(path, df, name) if name in df else np.broadcast_to(default, (n,)).astype(float)

        ctf = pd.DataFrame(dict(zip(CTF_FIELDS, [
            dfu, column("rlnDefocusV", dfu), column("rlnDefocusAngle", 0.0),
            numeric_column(path, df, "rlnVoltage"), numeric_column(path, df, "rlnSphericalAberration"),
            column("rlnAmplitudeContrast", DEFAULT_AMPLITUDE_CONTRAST), column("rlnPhaseShift", 0.0)])))

    rotations = None
    if all(c in df for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")):
        euler = np.stack([numeric_column(path, df, c) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")], 1)
        rotations = relion_euler_to_matrix(euler)

    shifts_angstrom = shifts_px = None
    if "rlnOriginXAngst" in df and "rlnOriginYAngst" in df:
        shifts_angstrom = np.stack([numeric_column(path, df, "rlnOriginXAngst"),
                                    numeric_column(path, df, "rlnOriginYAngst")], 1)
    elif "rlnOriginX" in df and "rlnOriginY" in df:  # RELION 3.0: pixels
        shifts_px = np.stack([numeric_column(path, df, "rlnOriginX"), numeric_column(path, df, "rlnOriginY")], 1)

    box = numeric_column(path, df, "rlnImageSize").astype(np.int64) if "rlnImageSize" in df else None
    groups = (numeric_column(path, df, "rlnOpticsGroup").astype(np.int64) if "rlnOpticsGroup" in df
              else np.ones(n, np.int64))
    record = SourceRecord("star", path, np.arange(n), star=blocks, particles_block=block_name)
    return dict(refs=refs, record=record, pixel_size=apix, ctf=ctf, rotations=rotations,
                shifts_angstrom=shifts_angstrom, shifts_px=shifts_px, box=box, groups=groups,
                tilts=read_tilt_series(path, df) if tilt_series else None)


# -- cryoSPARC -------------------------------------------------------------------------------

def _load_cs(path: Path) -> np.ndarray:
    cs = load_npy(path, "cryoSPARC .cs")
    if not isinstance(cs, np.ndarray) or cs.dtype.names is None:
        raise InputError(path, "not a cryoSPARC .cs file (no named fields)")
    return cs


def _cs_text(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8", "replace")  # a damaged name is then not found, by row
    return np.asarray(values, dtype=str)


def _read_cs(path: Path, datadir: Path | None) -> dict:
    original = _load_cs(path)
    passthrough = passthrough_tables(path, original)  # fields of earlier jobs, when a .csg lists them
    cs = merged_fields(original, passthrough)
    fields = set(cs.dtype.names)
    n = len(cs)
    if "blob/path" not in fields or "blob/idx" not in fields:
        raise InputError(path, "no blob/path and blob/idx fields: not a particle .cs file")
    paths = pd.Series(_cs_text(cs["blob/path"])).str.lstrip(">")
    codes, uniques = pd.factorize(paths, sort=False)
    refs = ImageRefs(tuple(str(u) for u in uniques), codes.astype(np.int32),
                     cs["blob/idx"].astype(np.int64), path, datadir)
    apix = cs["blob/psize_A"].astype(np.float64) if "blob/psize_A" in fields else None
    box = cs["blob/shape"][:, 0].astype(np.int64) if "blob/shape" in fields else None
    ctf = None
    if "ctf/df1_A" in fields:
        def get(name, default=0.0, scale=1.0):
            return cs[name].astype(np.float64) * scale if name in fields else np.full(n, default)

        deg = 180.0 / np.pi
        ctf = pd.DataFrame(dict(zip(CTF_FIELDS, [
            get("ctf/df1_A"), get("ctf/df2_A"), get("ctf/df_angle_rad", scale=deg),
            get("ctf/accel_kv", 300.0), get("ctf/cs_mm", 2.7), get("ctf/amp_contrast", 0.1),
            get("ctf/phase_shift_rad", scale=deg)])))
    rotations = (cryosparc_pose_to_matrix(cs["alignments3D/pose"].astype(np.float64))
                 if "alignments3D/pose" in fields else None)
    shifts_px = cs["alignments3D/shift"].astype(np.float64) if "alignments3D/shift" in fields else None
    groups = (cs["ctf/exp_group_id"].astype(np.int64) if "ctf/exp_group_id" in fields
              else np.ones(n, np.int64))
    return dict(refs=refs, record=SourceRecord("cs", path, np.arange(n), cs=original, passthrough=passthrough),
                pixel_size=apix,
                ctf=ctf, rotations=rotations, shifts_px=shifts_px, box=box, groups=groups)


# -- assembling the table --------------------------------------------------------------------

def _external(kind: str, source: str | os.PathLike, n: int) -> dict:
    """Poses or CTF from a separate .star/.cs (rows must match the particles)."""
    source = Path(source)
    ext = source.suffix.lower()
    if ext not in (".star", ".cs"):
        raise InputError(source, f"{kind} files must be .pkl, .star or .cs")
    other = _read_star(source, None) if ext == ".star" else _read_cs(source, None)
    if len(other["refs"]) != n:
        raise InputError(source, f"{len(other['refs'])} rows of {kind} for {n} particles")
    return other


def _refuse_impossible(ctf: pd.DataFrame | None, ctf_source: Path, rotations: np.ndarray | None,
                       shifts_angstrom: np.ndarray | None, pose_source: Path) -> None:
    """An :class:`InputError` naming the file and row of a NaN/Inf pose, shift or CTF value, or an impossible one.

    Impossible: a voltage <= 0, a negative defocus, an amplitude contrast outside [0, 1).

    STAR values are checked as they are read; this covers every source (``.cs``, pickles).
    """
    checks = []
    if ctf is not None:
        values = ctf.to_numpy(np.float64)
        checks.append((ctf_source, ~np.isfinite(values).all(1), "the CTF parameters hold NaN or Inf"))
        if "voltage_kv" in ctf:
            checks.append((ctf_source, ~(ctf["voltage_kv"].to_numpy(np.float64) > 0), "the voltage is not positive"))
        for column in ("defocus_u_angstrom", "defocus_v_angstrom"):
            if column in ctf:
                checks.append((ctf_source, ctf[column].to_numpy(np.float64) < 0,
                               f"the defocus ({column.split('_')[1].upper()}) is negative (overfocus)"))
        if "amplitude_contrast" in ctf:
            w = ctf["amplitude_contrast"].to_numpy(np.float64)
            checks.append((ctf_source, (w < 0) | (w >= 1), "the amplitude contrast is outside [0, 1)"))
    if rotations is not None:
        checks.append((pose_source, ~np.isfinite(rotations.reshape(len(rotations), -1)).all(1),
                       "the pose holds NaN or Inf"))
    if shifts_angstrom is not None:
        checks.append((pose_source, ~np.isfinite(shifts_angstrom).all(1), "the shift holds NaN or Inf"))
    for source, bad, what in checks:
        if bad.any():
            raise InputError(source, f"row {int(np.flatnonzero(bad)[0]) + 1}: {what}")


def _finish(parts: dict, *, poses, ctf, apix: float | None) -> ParticleTable:
    refs: ImageRefs = parts["refs"]
    n = len(refs)
    box = parts.get("box")
    ctf_table = parts.get("ctf")
    rotations = parts.get("rotations")
    pixel_size = parts.get("pixel_size")

    if ctf is not None:
        ctf_path = Path(ctf)
        if ctf_path.suffix.lower() == ".pkl":
            array = read_legacy_ctf(ctf_path, n)
            ctf_table = pd.DataFrame(array[:, 2:], columns=list(CTF_FIELDS))
            if pixel_size is None or parts["record"].kind == "none":
                pixel_size = array[:, 1].copy()
            box = array[:, 0].astype(np.int64) if box is None else box
        else:
            other = _external("CTF", ctf_path, n)
            if other.get("ctf") is None:
                raise InputError(ctf_path, "has no CTF parameters")
            ctf_table = other["ctf"]
            pixel_size = other["pixel_size"] if pixel_size is None else pixel_size
    if apix is not None:
        if not apix > 0:
            raise InputError(None, f"--apix must be positive, got {apix}")
        pixel_size = np.full(n, float(apix))
    if pixel_size is None and n:
        header = parts.get("header_apix")
        if header is None and parts["record"].kind != "none":
            try:
                header = refs.stack(int(refs.stack_id[0])).pixel_size_angstrom
            except InputError:
                header = None
        if header is None:
            raise InputError(refs.metadata_path, "no pixel size in the metadata or the MRC header; "
                                                 "pass --apix")
        pixel_size = np.full(n, header)
    pixel_size = np.zeros(0) if pixel_size is None else np.asarray(pixel_size, np.float64)
    bad = ~(pixel_size > 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(refs.metadata_path, f"row {row + 1}: pixel size {pixel_size[row]} is not "
                                             "positive; pass --apix")

    shifts_angstrom = parts.get("shifts_angstrom")
    if parts.get("shifts_px") is not None:
        shifts_angstrom = parts["shifts_px"] * pixel_size[:, None]
    if poses is not None:
        pose_path = Path(poses)
        if pose_path.suffix.lower() == ".pkl":
            d = int(box[0]) if box is not None and n else (
                refs.stack(int(refs.stack_id[0])).shape[-1] if n else 1)
            rotations, shifts_px = read_legacy_poses(pose_path, n, d)
            shifts_angstrom = None if shifts_px is None else shifts_px * pixel_size[:, None]
        else:
            other = _external("poses", pose_path, n)
            if other.get("rotations") is None:
                raise InputError(pose_path, "has no particle poses")
            rotations = other["rotations"]
            other_apix = other["pixel_size"] if other["pixel_size"] is not None else pixel_size
            shifts_angstrom = (other.get("shifts_angstrom") if other.get("shifts_px") is None
                               else other["shifts_px"] * other_apix[:, None])
    _refuse_impossible(ctf_table, Path(ctf) if ctf is not None else refs.metadata_path, rotations, shifts_angstrom,
                       Path(poses) if poses is not None else refs.metadata_path)
    groups = parts.get("groups")
    return ParticleTable(refs=refs, pixel_size_angstrom=pixel_size, box_size_px=box, ctf=ctf_table,
                         rotations_or_none=rotations, shifts_angstrom=shifts_angstrom,
                         optics_group=groups if groups is not None else np.ones(n, np.int64),
                         record=parts["record"], tilts=parts.get("tilts"))
