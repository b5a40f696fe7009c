"""``ParticleTable``: per-particle images and metadata, whatever file they came from."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cryofield.conventions import CTF_COLUMNS
from cryofield.errors import InputError
from cryofield.io.mapped import mapped_array
from cryofield.io.mrc import MrcStack
from cryofield.io.star import StarBlock
from cryofield.io.tilts import TiltSeries

#: Per-particle CTF fields, in the order of ``CTF_COLUMNS[2:]``.
CTF_FIELDS = CTF_COLUMNS[2:]


@dataclass(frozen=True, eq=False)
class ImageRefs:
    """Where each particle's image lives: a stack (as named in the metadata) and an index.

    Attributes
    ----------
    stack_names : tuple of str
        Unique stack paths as written in the metadata.
    stack_id : ndarray, shape (N,), int32
        Index into ``stack_names`` per particle.
    image_index : ndarray, shape (N,), int64
        0-based image index within the stack.
    metadata_path : Path
        The file the names were read from (names are relative to its folder), also named
        in error messages.
    datadir : Path or None
        Folder to look in first (``--datadir``).
    """

    stack_names: tuple[str, ...]
    stack_id: np.ndarray
    image_index: np.ndarray
    metadata_path: Path
    datadir: Path | None = None
    #: stacks opened so far, by stack id (shared with subsets)
    _opened: dict[int, MrcStack] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.image_index)

    def subset(self, indices: np.ndarray) -> ImageRefs:
        """References of the particles ``indices`` (same stacks)."""
        return replace(self, stack_id=self.stack_id[indices], image_index=self.image_index[indices])

    def names(self) -> np.ndarray:
        """``"000001@path"`` per particle, as RELION names images; shape (N,), object."""
        stacks = np.asarray(self.stack_names, dtype=object)[self.stack_id]
        return np.array([f"{i + 1:06d}@{s}" for i, s in zip(self.image_index, stacks)], dtype=object)

    def candidates(self, name: str) -> list[Path]:
        """Where a stack named ``name`` is looked for, in order."""
        written = Path(name)
        places = []
        if self.datadir is not None:
            places += [self.datadir / written, self.datadir / written.name]
        places.append(written)
        if not written.is_absolute():
            places.append(self.metadata_path.parent / written)
        return places

    def stack(self, stack_id: int) -> MrcStack:
        """The opened stack ``stack_id``, found by :meth:`candidates`.

        Raises
        ------
        InputError
            Naming the metadata file, the first row that uses the stack, and where it was
            looked for.
        """
        if stack_id in self._opened:
            return self._opened[stack_id]
        name = self.stack_names[stack_id]
        for place in self.candidates(name):
            if place.is_file():
                self._opened[stack_id] = MrcStack.open(place)
                return self._opened[stack_id]
        row = int(np.flatnonzero(self.stack_id == stack_id)[0]) + 1
        looked = ", ".join(str(p) for p in self.candidates(name))
        hint = "" if self.datadir else "; pass --datadir"
        raise InputError(self.metadata_path, f"row {row}: image stack {name} not found "
                                             f"(looked in {looked}){hint}")

    def validate(self) -> tuple[int, int] | None:
        """Check that every stack exists, every index is inside its stack, and image sizes agree.

        Returns
        -------
        tuple of int or None
            ``(ny, nx)`` of the images (``None`` when there are no particles).

        Raises
        ------
        InputError
            The first missing stack, out-of-range index or odd-sized stack, with its row.
        """
        shape = None
        used = np.unique(self.stack_id)
        lengths = np.zeros(len(self.stack_names), np.int64)
        for sid in used:  # one header per stack, O(stacks)
            stack = self.stack(int(sid))
            lengths[sid] = len(stack)
            if shape is None:
                shape = stack.shape[1:]
            elif stack.shape[1:] != shape:
                raise InputError(stack.path, f"images are {stack.shape[1]} x {stack.shape[2]}, but other "
                                             f"stacks of {self.metadata_path} hold {shape[0]} x {shape[1]}")
        past = self.image_index >= lengths[self.stack_id]  # O(particles), vectorised
        if past.any():
            row = int(np.argmax(past))
            sid = int(self.stack_id[row])
            raise InputError(self.metadata_path, f"row {row + 1}: image {self.image_index[row] + 1}@"
                                                 f"{self.stack_names[sid]} is past the end of "
                                                 f"{self.stack(sid).path} ({lengths[sid]} images)")
        return shape

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Images of particles ``indices`` as float32, shape (K, ny, nx)."""
        indices = np.asarray(indices, dtype=np.int64)
        sids = self.stack_id[indices]
        out: np.ndarray | None = None
        for sid in np.unique(sids):
            where = np.flatnonzero(sids == sid)
            local = self.image_index[indices[where]]
            stack = self.stack(int(sid))
            if local.size and local.max() >= len(stack):
                row = int(indices[where][np.argmax(local >= len(stack))])
                raise InputError(self.metadata_path, f"row {row + 1}: image {self.image_index[row] + 1}"
                                                     f"@{self.stack_names[sid]} is past the end of "
                                                     f"{stack.path} ({len(stack)} images)")
            images = stack.read(local)
            if out is None:
                out = np.empty((len(indices),) + images.shape[1:], np.float32)
            elif images.shape[1:] != out.shape[1:]:
                raise InputError(stack.path, f"images are {images.shape[1:]}, but other stacks "
                                             f"of {self.metadata_path} hold {out.shape[1:]}")
            out[where] = images
        if out is None:
            return np.empty((0, 0, 0), np.float32)
        return out


@dataclass(frozen=True, eq=False)
class SourceRecord:
    """The original metadata rows of each particle, kept for export.

    Attributes
    ----------
    kind : {"star", "cs", "none"}
    path : Path or None
    rows : ndarray, shape (N,), int64
        Row of each particle in the original table.
    star : dict of str to StarBlock, or None
        All blocks of a STAR source (tables unsubset).
    particles_block : str or None
        Name of the STAR block that lists the particles.
    cs : structured ndarray or None
        The whole cryoSPARC table.
    passthrough : dict of str to structured ndarray, or None
        The other tables of the ``.cs``'s result group (``{file name: table}``), rows matched
        to ``cs``'s by ``uid`` (:mod:`cryofield.io.cryosparc`).
    one_row_per_particle : bool
        The source lists a tilt series' images in one row (RELION 5 tomography): ``rows``
        repeats that row for each image, and the source is written back one row per particle.
    """

    kind: Literal["star", "cs", "none"]
    path: Path | None
    rows: np.ndarray
    star: dict[str, StarBlock] | None = None
    particles_block: str | None = None
    cs: np.ndarray | None = None
    passthrough: dict[str, np.ndarray] | None = None
    one_row_per_particle: bool = False

    def star_rows(self) -> pd.DataFrame:
        """The particles' original STAR rows, in table order (each once, where one row lists a particle's images)."""
        rows = self.rows
        if self.one_row_per_particle:
            rows = rows[np.sort(np.unique(rows, return_index=True)[1])]
        return self.star[self.particles_block].table.iloc[rows].reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class ParticleTable:
    """Particle images and per-particle metadata.

    Attributes
    ----------
    refs : ImageRefs
        Image references (stack and index) per particle.
    pixel_size_angstrom : ndarray, shape (N,), float64
    box_size_px : ndarray, shape (N,), int64, or None
        Image size from the metadata; ``None`` to read it from the stacks.
    ctf : DataFrame or None
        Columns ``CTF_FIELDS`` (defocus in Angstrom, angles in degrees, kV, mm).
    rotations_or_none : ndarray, shape (N, 3, 3), float64, or None
        ``R`` per particle (see :mod:`cryofield.conventions`).
    shifts_angstrom : ndarray, shape (N, 2), float64, or None
        ``(x, y)`` shift with RELION's sign.
    optics_group : ndarray, shape (N,), int64
    record : SourceRecord
        The original rows, for export.
    tilts : TiltSeries or None
        For tilt series (one row per tilt image): the particle of each image, its exposure
        and tilt (:mod:`cryofield.io.tilts`); ``None`` for single particles.
    """

    refs: ImageRefs
    pixel_size_angstrom: np.ndarray
    box_size_px: np.ndarray | None
    ctf: pd.DataFrame | None
    rotations_or_none: np.ndarray | None
    shifts_angstrom: np.ndarray | None
    optics_group: np.ndarray
    record: SourceRecord
    tilts: TiltSeries | None = None

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def n(self) -> int:
        """Number of particles."""
        return len(self.refs)

    @property
    def source(self) -> Path:
        """The file the table was read from."""
        return self.refs.metadata_path

    @property
    def rotations(self) -> np.ndarray:
        """Rotation matrices ``R``, shape (N, 3, 3); raises ``InputError`` if the input has none."""
        if self.rotations_or_none is None:
            raise InputError(self.source, "no particle poses (rotations); pass --poses")
        return self.rotations_or_none

    @property
    def shifts_px(self) -> np.ndarray:
        """``(x, y)`` shifts in pixels of the stored images, RELION's sign, shape (N, 2)."""
        if self.shifts_angstrom is None:
            if self.rotations_or_none is not None:
                return np.zeros((self.n, 2))
            raise InputError(self.source, "no particle shifts; pass --poses")
        return self.shifts_angstrom / self.pixel_size_angstrom[:, None]

    @property
    def box_size(self) -> int:
        """Image size in pixels (square images), from the metadata or the first stack."""
        if self.box_size_px is not None and len(self.box_size_px):
            sizes = np.unique(self.box_size_px)
            if len(sizes) > 1:
                raise InputError(self.source, f"particles of different box sizes {sizes.tolist()}")
            return int(sizes[0])
        if self.n == 0:
            raise InputError(self.source, "no particles")
        shape = self.refs.stack(int(self.refs.stack_id[0])).shape
        if shape[1] != shape[2]:
            raise InputError(self.refs.stack(int(self.refs.stack_id[0])).path,
                             f"images are {shape[1]} x {shape[2]}; cryofield needs square images")
        return shape[1]

    def check_images(self) -> int:
        """Check every image reference (see :meth:`ImageRefs.validate`) and return the box size.

        The stacks are authoritative: where the metadata name another box size (as in some
        hand-edited files), a warning says so and the stacks' size is returned.
        """
        shape = self.refs.validate()
        if shape is None:
            raise InputError(self.source, "no particles")
        if shape[0] != shape[1]:
            raise InputError(self.source, f"images are {shape[0]} x {shape[1]}; cryofield needs square images")
        if shape[0] < 8:
            raise InputError(self.source, f"images are {shape[0]} x {shape[1]} px; cryofield needs at least 8 x 8")
        if self.box_size_px is not None and len(self.box_size_px) and self.box_size != shape[0]:
            warnings.warn(f"{self.source}: metadata say box {self.box_size} px but the stacks hold "
                          f"{shape[0]} px images; using the stacks", stacklevel=1)
        return shape[0]

    def ctf_array(self) -> np.ndarray:
        """CTF parameters, shape (N, 9), columns ``conventions.CTF_COLUMNS``.

        Raises
        ------
        InputError
            The input has no CTF parameters.
        """
        if self.ctf is None:
            raise InputError(self.source, "no CTF parameters; pass --ctf")
        out = np.empty((self.n, 9))
        if self.n == 0:
            return out
        out[:, 0] = self.box_size
        out[:, 1] = self.pixel_size_angstrom
        out[:, 2:] = self.ctf[list(CTF_FIELDS)].to_numpy(np.float64)
        return out

    def images(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Read images, shape (K, D, D), float32 (``indices`` default: all, in order)."""
        if indices is None:
            indices = np.arange(self.n)
        return self.refs.read(np.asarray(indices, dtype=np.int64))

    def iter_chunks(self, chunk_size: int = 1024) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(indices, images)`` over all particles in order, ``chunk_size`` at a time."""
        for start in range(0, self.n, chunk_size):
            indices = np.arange(start, min(start + chunk_size, self.n))
            yield indices, self.images(indices)

    def subset(self, indices: np.ndarray) -> ParticleTable:
        """The particles ``indices`` (in that order) as a new table."""
        indices = np.asarray(indices, dtype=np.int64)

        def take(a):
            return None if a is None else a[indices]

        return ParticleTable(
            refs=self.refs.subset(indices),
            pixel_size_angstrom=self.pixel_size_angstrom[indices],
            box_size_px=take(self.box_size_px),
            ctf=None if self.ctf is None else self.ctf.iloc[indices].reset_index(drop=True),
            rotations_or_none=take(self.rotations_or_none),
            shifts_angstrom=take(self.shifts_angstrom),
            optics_group=self.optics_group[indices],
            record=replace(self.record, rows=self.record.rows[indices]),
            tilts=None if self.tilts is None else self.tilts.subset(indices),
        )

    def subset_particles(self, particles: np.ndarray) -> ParticleTable:
        """Tilt series: every image of the particles ``particles`` (0-based), in table order.

        Raises
        ------
        InputError
            The table is not of tilt series, or an index is not a particle's.
        """
        if self.tilts is None:
            raise InputError(self.source, "is not read as tilt series (one row per tilt image)")
        try:
            return self.subset(self.tilts.rows_of(particles))
        except IndexError as error:
            raise InputError(self.source, str(error)) from None

    def with_tilt_weighting(self, weighting: str) -> ParticleTable:
        """The same table with its tilt images' amplitude scale chosen by ``weighting``.

        ``"auto"``, ``"cos"`` or ``"none"`` (:attr:`cryofield.io.tilts.TiltSeries.weighting`);
        single particles are returned as they are.
        """
        return self if self.tilts is None else replace(self, tilts=self.tilts.weighted(weighting))

    def refuse_premultiplied(self, what: str) -> None:
        """Raise an :class:`InputError` when the images were multiplied by their CTF at extraction.

        Jobs that apply the CTF to raw images (phase flipping, ab initio's searches, Cryofold)
        would apply it twice to premultiplied ones. (Training a neural volume or VAE and
        backprojection model premultiplied images.)

        Parameters
        ----------
        what : str
            The job that cannot run, for the message.
        """
        if self.tilts is not None and self.tilts.ctf_premultiplied:
            raise InputError(self.source, f"{what}: these tilt images were multiplied by their CTF when extracted "
                                          "(_rlnCtfDataAreCtfPremultiplied 1, the default of RELION 5 and WarpTools), "
                                          "which this job does not model; train-nn, train-vae and backproject do, or "
                                          "extract them without it (RELION --no_ctf, WarpTools --dont_premultiply)")

    def without_source_rows(self) -> ParticleTable:
        """The same particles without the original STAR/.cs rows kept for export.

        Those rows (strings, about 1 KB per particle) are most of a table's memory; jobs that
        never export (training) drop them so that memory does not grow with ``N`` needlessly.
        """
        return replace(self, record=SourceRecord("none", self.record.path, self.record.rows))

    def in_mapped_files(self, folder: str | os.PathLike | None = None) -> ParticleTable:
        """The same particles with their per-particle arrays in files mapped into memory.

        Poses, CTF parameters, pixel and box sizes, optics groups and stack indices (about 180
        bytes a particle, 180 MB at 10^6) are copied into unlinked files of ``folder`` (default
        ``TMPDIR``) by :func:`~cryofield.io.mapped.mapped_array`, so that a long run holding the
        table keeps them in the page cache instead of its own memory. Values are unchanged;
        a tilt-series grouping stays in memory.

        Parameters
        ----------
        folder : str or PathLike, optional
            Where the files are made.

        Returns
        -------
        ParticleTable
        """
        def mapped(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else mapped_array(values, folder)

        ctf = self.ctf
        if ctf is not None and all(dtype == np.float64 for dtype in ctf.dtypes):  # one mapped block
            ctf = pd.DataFrame(mapped(ctf.to_numpy()), index=ctf.index, columns=ctf.columns, copy=False)
        refs = replace(self.refs, stack_id=mapped(self.refs.stack_id), image_index=mapped(self.refs.image_index))
        return replace(self, refs=refs, pixel_size_angstrom=mapped(self.pixel_size_angstrom),
                       box_size_px=mapped(self.box_size_px), ctf=ctf,
                       rotations_or_none=mapped(self.rotations_or_none), shifts_angstrom=mapped(self.shifts_angstrom),
                       optics_group=mapped(self.optics_group))

    def present(self) -> dict[str, bool]:
        """Which metadata the table holds."""
        return {"ctf": self.ctf is not None, "rotations": self.rotations_or_none is not None,
                "shifts": self.shifts_angstrom is not None, "tilt_series": self.tilts is not None}

