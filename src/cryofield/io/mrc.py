"""MRC/MRCS image stacks: lazy memory-mapped reads of any subset, streaming writes.

Reading maps the file only for the duration of one read, so a long sequential pass
over a large stack keeps a bounded resident set and never holds file descriptors.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import mrcfile.utils
import numpy as np

from cryofield.errors import InputError
from cryofield.io._atomic import whole

#: MRC modes that hold real-valued images, and what they hold.
READABLE_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}


@dataclass(frozen=True)
class MrcStack:
    """A lazily read MRC image stack (or single image, or volume read as sections).

    Attributes
    ----------
    path : Path
    shape : tuple of int
        ``(n_images, ny, nx)``.
    dtype : numpy.dtype
        Storage type of the pixels (with the file's byte order).
    data_offset : int
        Byte offset of the first pixel (1024 plus the extended header).
    pixel_size_angstrom : float or None
        From the header (cell size over sampling); ``None`` where the header says 0.
    """

    path: Path
    shape: tuple[int, int, int]
    dtype: np.dtype
    data_offset: int
    pixel_size_angstrom: float | None

    @classmethod
    def open(cls, path: str | os.PathLike) -> MrcStack:
        """Read and check the header of ``path``.

        Raises
        ------
        InputError
            The file is missing, not MRC, of a mode that is not real-valued images, or
            shorter than its header says.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "image stack not found")
        if path.stat().st_size < 1024:
            raise InputError(path, f"truncated: {path.stat().st_size} bytes, shorter than an MRC header")
        try:
            # permissive: older writers (EMAN, early cryoDRGN) leave out the MAP id; the
            # checks below catch real damage
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                    header = mrc.header.copy()
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(path, f"not a readable MRC file: {exc}") from None
        mode = int(header.mode)
        if mode not in READABLE_MODES:
            raise InputError(path, f"MRC mode {mode} is not a real-valued image mode "
                                   f"(readable: {sorted(READABLE_MODES)})")
        try:
            dtype = mrcfile.utils.data_dtype_from_header(header)
        except ValueError as exc:
            raise InputError(path, f"corrupt MRC header: {exc}") from None
        nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
        if min(nx, ny) < 1 or nz < 0 or int(header.nsymbt) < 0:
            raise InputError(path, f"corrupt MRC header: dimensions {nx} x {ny} x {nz}")
        offset = int(header.nbytes) + int(header.nsymbt)
        expected = offset + nx * ny * nz * dtype.itemsize
        actual = path.stat().st_size
        if actual < expected:
            raise InputError(path, f"truncated: header says {nz} images of {ny} x {nx} "
                                   f"({READABLE_MODES[mode]}), {expected} bytes, file has {actual}")
        mx = float(header.mx)
        apix = float(header.cella.x) / mx if mx > 0 else 0.0
        return cls(path, (nz, ny, nx), dtype, offset, round(apix, 6) if apix > 0 else None)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, indices: np.ndarray | slice | None = None) -> np.ndarray:
        """Read images as float32, touching only the pages they occupy.

        Parameters
        ----------
        indices : (K,) int array, slice or None
            0-based image indices (any order, repeats allowed); ``None`` reads all.

        Returns
        -------
        ndarray, shape (K, ny, nx), float32

        Raises
        ------
        InputError
            An index past the end of the stack, or an image with NaN or inf pixels.
        """
        n, ny, nx = self.shape
        if indices is None:
            indices = slice(0, n)
        if isinstance(indices, slice):
            start, stop, step = indices.indices(n)
            if step != 1:
                indices = np.arange(start, stop, step)
        else:
            indices = np.asarray(indices, dtype=np.int64)
            if indices.size and (indices.min() < 0 or indices.max() >= n):
                bad = int(indices[(indices < 0) | (indices >= n)][0])
                raise InputError(self.path, f"image {bad + 1} requested, but the stack "
                                            f"holds {n} images")
            if indices.size and np.all(np.diff(indices) == 1):
                indices = slice(int(indices[0]), int(indices[-1]) + 1)
        if n == 0:
            return np.empty((0, ny, nx), np.float32)
        with open(self.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            stack = np.frombuffer(mm, self.dtype, n * ny * nx, self.data_offset).reshape(n, ny, nx)
            out = stack[indices].astype(np.float32)
            del stack  # release the buffer so the map can close
        finite = np.isfinite(out).all(axis=(1, 2))
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            pos = (indices.start + first) if isinstance(indices, slice) else int(indices[first])
            raise InputError(self.path, f"image {pos + 1} has non-finite pixels (NaN or inf)")
        return out


class MrcStackWriter:
    """Write an image stack sequentially, chunk by chunk, with a correct header.

    The header (size, mode, image-stack space group, pixel size, and the min, max,
    mean and RMS of all pixels) is complete when :meth:`close` returns. The stack is written
    under a temporary name and renamed onto ``path`` by :meth:`close`: it appears whole or not
    at all (an exception inside ``with`` removes it).

    Parameters
    ----------
    path : str or PathLike
        Output file; replaced when the stack is complete.
    shape : tuple of int
        ``(n_images, ny, nx)`` of the whole stack.
    pixel_size_angstrom : float or None
        Written into the header (0 when ``None``).
    dtype : numpy dtype
        ``float32`` (mode 2, default) or ``float16`` (mode 12, half the size).
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int, int],
                 pixel_size_angstrom: float | None, dtype: np.dtype | type = np.float32):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        if self.shape[0] < 1:
            raise ValueError("an MRC stack needs at least one image")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float16):
            raise ValueError(f"MRC stacks are written as float32 or float16, not {self.dtype}")
        with contextlib.ExitStack() as stack:  # the temporary file goes away if the header cannot be written
            self._temp = stack.enter_context(whole(self.path))
            with mrcfile.new_mmap(self._temp, self.shape, mrc_mode=2 if self.dtype == np.float32 else 12,
                                  overwrite=True) as mrc:
                mrc.set_image_stack()
                mrc.voxel_size = pixel_size_angstrom or 0.0
                self._offset = int(mrc.header.nbytes) + int(mrc.header.nsymbt)
            self._fh = open(self._temp, "r+b")
            self._whole = stack.pop_all()  # closed by close() (renamed into place) or __exit__ (removed)
        self._fh.seek(self._offset)
        self.written = 0
        self._min, self._max, self._sum, self._sumsq = np.inf, -np.inf, 0.0, 0.0

    def write(self, images: np.ndarray) -> None:
        """Append ``images``, shape (K, ny, nx), converted to the stack's dtype (statistics of what is stored)."""
        images = np.ascontiguousarray(images, dtype=self.dtype)
        if images.shape[1:] != self.shape[1:] or self.written + len(images) > self.shape[0]:
            raise ValueError(f"chunk of shape {images.shape} does not fit stack {self.shape} "
                             f"after {self.written} images")
        if len(images) == 0:
            return
        self._fh.write(memoryview(images).cast("B"))
        self.written += len(images)
        self._min = min(self._min, float(images.min()))
        self._max = max(self._max, float(images.max()))
        flat = images.reshape(-1).astype(np.float32, copy=False)
        self._sum += float(flat.sum(dtype=np.float64))
        self._sumsq += float(np.dot(flat, flat))  # header statistics: float32 accuracy is plenty

    def close(self) -> None:
        """Finish the file: check that every image was written, set the statistics, put it in place."""
        if self._fh.closed:
            return
        self._fh.close()
        try:
            if self.written != self.shape[0]:
                raise RuntimeError(f"{self.path}: wrote {self.written} of {self.shape[0]} images")
            count = float(np.prod(self.shape))
            mean = self._sum / count
            with mrcfile.mmap(self._temp, "r+") as mrc:
                mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = self._min, self._max, mean
                mrc.header.rms = np.sqrt(max(self._sumsq / count - mean**2, 0.0))
        except BaseException as exc:
            self._whole.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._whole.close()

    def __enter__(self) -> MrcStackWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self._fh.closed:
            self._fh.close()
            self._whole.__exit__(exc_type, exc, tb)  # removes the temporary file


def write_mrc(path: str | os.PathLike, data: np.ndarray, pixel_size_angstrom: float | None,
              *, is_stack: bool = True) -> None:
    """Write a small array (an image stack or a volume) in one go, whole or not at all.

    Parameters
    ----------
    path : str or PathLike
    data : ndarray, shape (N, ny, nx) or (nz, ny, nx)
        Written as float32 (float16 input is kept as mode 12).
    pixel_size_angstrom : float or None
    is_stack : bool
        Mark the file as an image stack (``True``) or a volume.
    """
    data = np.asarray(data)
    if data.dtype != np.float16:
        data = data.astype(np.float32)
    with whole(path) as temp, mrcfile.new(temp, data=data, overwrite=True) as mrc:
        if is_stack:
            mrc.set_image_stack()
        else:
            mrc.set_volume()
        mrc.voxel_size = pixel_size_angstrom or 0.0
