"""Write particles back: STAR (original layout and columns), cryoSPARC .cs, MRC stacks."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from cryofield.conventions import matrix_to_cryosparc_pose, matrix_to_relion_euler
from cryofield.io._atomic import atomic_outputs
from cryofield.io.cryosparc import group_yaml
from cryofield.io.mrc import MrcStackWriter
from cryofield.io.star import StarBlock, write_star
from cryofield.io.table import ImageRefs, ParticleTable, SourceRecord

#: ``transform(images, indices) -> images`` applied to each chunk of a stack being written.
ChunkTransform = Callable[[np.ndarray, np.ndarray], np.ndarray]


def write_particles(table: ParticleTable, path: str | os.PathLike, *,
                    extra_columns: dict[str, np.ndarray] | None = None) -> None:
    """Write the table's metadata as ``.star`` or ``.cs`` (by the extension of ``path``).

    A STAR source keeps its layout (RELION 3.0 stays 3.0), its optics table and every
    column, with the rows of ``table`` in its order; a ``.cs`` source keeps every field and
    ``uid``, with the fields its input's group passed through from earlier jobs in
    ``NAME_passthrough.cs``. Other sources are written as RELION 3.1 STAR files or as
    ``.cs`` tables built from the table's fields (as cryoSPARC imports particles: new
    ``uid``s, ``blob``, ``ctf`` and, with poses, ``alignments3D``). A ``.cs`` always gets
    its result group beside it, ``NAME.csg``, for cryoSPARC's "Import Result Group".

    Parameters
    ----------
    table : ParticleTable
    path : str or PathLike
        ``.star`` or ``.cs``; replaced whole or not at all (with the ``.csg`` and passthrough
        table of a ``.cs``).
    extra_columns : dict of str to ndarray, optional
        More particle columns for a STAR file built from the fields, by RELION label without
        the underscore (``{"rlnMicrographName": names}``), one value per particle.
    """
    path = Path(path)
    record = table.record
    if extra_columns and record.kind in ("star", "cs"):
        raise ValueError("extra columns are for tables built from their fields, not a STAR or .cs source")
    if path.suffix.lower() == ".cs":
        _write_cs_group(path, table)
        return
    if record.kind == "star":
        blocks = dict(record.star)
        old = blocks[record.particles_block]
        blocks[record.particles_block] = StarBlock(old.name, record.star_rows(), dict(old.pairs),
                                                   list(old.comments))
    else:
        blocks = _fresh_star_blocks(table)
        for label, values in (extra_columns or {}).items():
            blocks["particles"].table[label] = np.asarray(values)
    write_star(path, blocks)


def output_paths(table: ParticleTable, path: str | os.PathLike) -> list[Path]:
    """Every file :func:`write_particles` writes for ``path``: it, and a ``.cs``'s passthrough table(s) and ``.csg``.

    Parameters
    ----------
    table : ParticleTable
    path : str or PathLike

    Returns
    -------
    list of Path
    """
    path = Path(path)
    if path.suffix.lower() != ".cs":
        return [path]
    return [path.parent / name for name in _cs_tables(path, table)] + [path.with_suffix(".csg")]


def _cs_tables(path: Path, table: ParticleTable) -> dict[str, np.ndarray]:
    """``{file name: rows}`` of a ``.cs`` output: the particles' own table, then the passthrough ones."""
    record = table.record
    if record.kind != "cs":
        return {path.name: _fresh_cs(table)}
    tables = {path.name: record.cs[record.rows]}
    passthrough = list((record.passthrough or {}).values())
    for i, part in enumerate(passthrough):
        tables[f"{path.stem}_passthrough{'' if len(passthrough) == 1 else i + 1}.cs"] = part[record.rows]
    return tables


def _fresh_cs(table: ParticleTable) -> np.ndarray:
    """A cryoSPARC particle table (N,) from a table's fields, with the fields and types cryoSPARC's imports have."""
    import zlib

    n = table.n
    names = table.refs.names()
    paths = np.asarray([name.split("@", 1)[1] for name in names], dtype=bytes)
    fields = [("uid", "<u8"), ("blob/path", paths.dtype.str), ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)),
              ("blob/psize_A", "<f4"), ("blob/sign", "<f4")]
    if table.ctf is not None:
        fields += [("ctf/type", "S9"), ("ctf/exp_group_id", "<u4")] + [(f"ctf/{name}", "<f4") for name in (
            "accel_kv", "cs_mm", "amp_contrast", "df1_A", "df2_A", "df_angle_rad", "phase_shift_rad", "scale",
            "scale_const")]
    rotations = table.rotations_or_none
    if rotations is not None:
        fields += [("alignments3D/shift", "<f4", (2,)), ("alignments3D/pose", "<f4", (3,)),
                   ("alignments3D/psize_A", "<f4")]
    out = np.zeros(n, dtype=fields)
    # uids: random 64-bit numbers as cryoSPARC draws them, seeded by the image names so that a rerun is identical
    out["uid"] = np.random.default_rng(zlib.crc32("\n".join(names).encode())).integers(0, 2**63, n, dtype=np.uint64)
    out["blob/path"], out["blob/idx"] = paths, table.refs.image_index
    out["blob/shape"], out["blob/psize_A"], out["blob/sign"] = table.box_size, table.pixel_size_angstrom, -1.0
    if table.ctf is not None:
        c = table.ctf
        out["ctf/type"], out["ctf/exp_group_id"] = b"imported", table.optics_group
        out["ctf/accel_kv"], out["ctf/cs_mm"] = c["voltage_kv"], c["cs_mm"]
        out["ctf/amp_contrast"] = c["amplitude_contrast"]
        out["ctf/df1_A"], out["ctf/df2_A"] = c["defocus_u_angstrom"], c["defocus_v_angstrom"]
        out["ctf/df_angle_rad"] = np.deg2rad(c["defocus_angle_deg"].to_numpy(np.float64))
        out["ctf/phase_shift_rad"] = np.deg2rad(c["phase_shift_deg"].to_numpy(np.float64))
        out["ctf/scale"] = 1.0
    if rotations is not None:
        out["alignments3D/pose"] = matrix_to_cryosparc_pose(np.asarray(rotations, np.float64))
        out["alignments3D/shift"] = table.shifts_px
        out["alignments3D/psize_A"] = table.pixel_size_angstrom
    return out


def _write_cs_group(path: Path, table: ParticleTable) -> None:
    """``path`` (the particles' rows of the ``.cs``), its passthrough table(s) and ``path.csg``, all or none."""
    tables = _cs_tables(path, table)
    record = table.record
    source = record.path.name if record.path is not None else "their fields"
    title = f"{table.n} particles written by cryofield from {source}"
    group = path.with_suffix(".csg")
    with atomic_outputs(*(path.parent / name for name in tables), group) as temps:
        for temp, table in zip(temps, tables.values()):
            with open(temp, "wb") as fh:
                np.save(fh, table, allow_pickle=False)
        temps[-1].write_text(group_yaml(tables, title), encoding="utf-8")


def _fresh_star_blocks(table: ParticleTable) -> dict[str, StarBlock]:
    """RELION 3.1 blocks from a table's fields."""
    groups, first = np.unique(table.optics_group, return_index=True)
    optics = {"rlnOpticsGroup": groups,
              "rlnOpticsGroupName": [f"opticsGroup{g}" for g in groups],
              "rlnImagePixelSize": table.pixel_size_angstrom[first],
              "rlnImageSize": np.full(len(groups), table.box_size),
              "rlnImageDimensionality": np.full(len(groups), 2)}
    particles = {"rlnImageName": table.refs.names(), "rlnOpticsGroup": table.optics_group}
    if table.ctf is not None:
        c = table.ctf
        optics.update(rlnVoltage=c["voltage_kv"].to_numpy()[first],
                      rlnSphericalAberration=c["cs_mm"].to_numpy()[first],
                      rlnAmplitudeContrast=c["amplitude_contrast"].to_numpy()[first])
        particles.update(rlnDefocusU=c["defocus_u_angstrom"], rlnDefocusV=c["defocus_v_angstrom"],
                         rlnDefocusAngle=c["defocus_angle_deg"], rlnPhaseShift=c["phase_shift_deg"])
    if table.rotations_or_none is not None:
        euler = matrix_to_relion_euler(table.rotations_or_none)
        particles.update(rlnAngleRot=euler[:, 0], rlnAngleTilt=euler[:, 1], rlnAnglePsi=euler[:, 2])
    if table.shifts_angstrom is not None:
        particles.update(rlnOriginXAngst=table.shifts_angstrom[:, 0],
                         rlnOriginYAngst=table.shifts_angstrom[:, 1])
    version = ["# version 30001"]
    return {"optics": StarBlock("optics", pd.DataFrame(optics), comments=version),
            "particles": StarBlock("particles", pd.DataFrame(
                {k: np.asarray(v) for k, v in particles.items()}), comments=list(version))}


def restack(table: ParticleTable, stack_path: str | os.PathLike, star_path: str | os.PathLike,
            box_size: int, pixel_size_angstrom: np.ndarray) -> ParticleTable:
    """The table for the same particles rewritten, in order, to one new stack.

    Image names point to ``stack_path`` relative to ``star_path``'s folder; pixel size and
    box are updated in the fields and, for a STAR source, in its own columns (optics
    table for RELION 3.1+; ``_rlnMagnification`` or ``_rlnImagePixelSize`` and the
    pixel-valued ``_rlnOriginX/Y`` for RELION 3.0).

    Parameters
    ----------
    table : ParticleTable
    stack_path, star_path : str or PathLike
        Final paths of the new stack and of the STAR file that will list it.
    box_size : int
        Image size in the new stack, pixels.
    pixel_size_angstrom : ndarray, shape (N,)
        Pixel size of the new images.

    Returns
    -------
    ParticleTable
    """
    star_path = Path(star_path)
    n = table.n
    name = os.path.relpath(Path(stack_path).resolve(), star_path.resolve().parent)
    refs = ImageRefs((name,), np.zeros(n, np.int32), np.arange(n, dtype=np.int64), star_path)
    pixel_size_angstrom = np.asarray(pixel_size_angstrom, np.float64)
    record = SourceRecord("none", star_path, np.arange(n))
    if table.record.kind == "star":
        old = table.record
        scale = pixel_size_angstrom / table.pixel_size_angstrom  # > 1 when downsampling
        blocks = dict(old.star)
        df = old.star_rows().copy()
        df["rlnImageName"] = refs.names()
        optics = blocks.get("optics")
        if optics is not None and optics.table is not None and "rlnOpticsGroup" in df:
            opt = optics.table.copy()
            ratio = pd.Series(scale).groupby(df["rlnOpticsGroup"].to_numpy()).first()
            factor = ratio.reindex(opt["rlnOpticsGroup"]).fillna(1.0).to_numpy()
            if "rlnImagePixelSize" in opt:
                opt["rlnImagePixelSize"] = opt["rlnImagePixelSize"] * factor
            if "rlnImageSize" in opt:
                opt["rlnImageSize"] = np.where(factor != 1.0, box_size, opt["rlnImageSize"])
            blocks["optics"] = StarBlock("optics", opt, dict(optics.pairs), list(optics.comments))
        else:  # RELION 3.0 layout
            if "rlnImagePixelSize" in df:
                df["rlnImagePixelSize"] = pixel_size_angstrom
            elif "rlnMagnification" in df:
                df["rlnMagnification"] = df["rlnMagnification"] / scale
            for column in ("rlnOriginX", "rlnOriginY"):
                if column in df:
                    df[column] = df[column] / scale
        block = blocks[old.particles_block]
        blocks[old.particles_block] = StarBlock(block.name, df, dict(block.pairs), list(block.comments))
        record = SourceRecord("star", star_path, np.arange(n), star=blocks,
                              particles_block=old.particles_block)
    return ParticleTable(refs=refs, pixel_size_angstrom=pixel_size_angstrom,
                         box_size_px=np.full(n, box_size, np.int64), ctf=table.ctf,
                         rotations_or_none=table.rotations_or_none,
                         shifts_angstrom=table.shifts_angstrom, optics_group=table.optics_group,
                         record=record)


def export_stack(table: ParticleTable, stack_path: str | os.PathLike,
                 star_path: str | os.PathLike | None = None, *,
                 transform: ChunkTransform | None = None, box_size: int | None = None,
                 pixel_size_angstrom: np.ndarray | None = None, chunk_size: int = 256,
                 progress: Callable[[int], None] | None = None) -> ParticleTable:
    """Stream the table's images, transformed, into a new stack (and a matching STAR file).

    Memory stays bounded by ``chunk_size`` images whatever the number of particles. Both
    outputs are written under temporary names and renamed only when complete.

    Parameters
    ----------
    table : ParticleTable
    stack_path : str or PathLike
        The ``.mrcs`` to write.
    star_path : str or PathLike, optional
        Where to write the particles' metadata pointing to the new stack.
    transform : callable, optional
        ``transform(images (K, D, D) float32, indices (K,)) -> (K, d, d)``.
    box_size : int, optional
        Output image size ``d`` (default: the input's).
    pixel_size_angstrom : ndarray, shape (N,), optional
        Output pixel size (default: the input's).
    chunk_size : int
    progress : callable, optional
        Called with the number of images done after each chunk.

    Returns
    -------
    ParticleTable
        The table of the written stack.
    """
    image_box = table.check_images()
    box_size = image_box if box_size is None else int(box_size)
    apix = table.pixel_size_angstrom if pixel_size_angstrom is None else pixel_size_angstrom
    outputs = [Path(stack_path)] + ([Path(star_path)] if star_path is not None else [])
    names_relative_to = outputs[-1] if star_path is not None else Path(stack_path).with_suffix(".star")
    with atomic_outputs(*outputs) as temps:
        with MrcStackWriter(temps[0], (table.n, box_size, box_size), float(apix[0])) as writer:
            for indices, images in table.iter_chunks(chunk_size):
                writer.write(images if transform is None else transform(images, indices))
                if progress is not None:
                    progress(len(indices))
        new = restack(table, stack_path, names_relative_to, box_size, apix)
        if star_path is not None:
            write_particles(new, temps[1])
    return new
