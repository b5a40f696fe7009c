"""Arrays in files mapped into memory, out of a process's own memory.

A long run keeps per-particle arrays (metadata, poses, tables) for its whole length; at 10^6-10^7
particles they are hundreds of MB to GB. Held in an unlinked file of the temporary folder
(``TMPDIR``) mapped with ``MAP_SHARED``, their pages belong to the kernel's page cache, which it
writes back and drops when memory runs short (and which a cluster's memory limit reclaims before
it kills the job), not to the process. The file is unlinked as soon as it is mapped: nothing is
left behind by a run that is killed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def scratch_file(nbytes: int, folder: str | os.PathLike | None = None) -> Iterator[str]:
    """A new file of ``nbytes`` zeros, unlinked when the block ends (a mapping made in it keeps its pages).

    Parameters
    ----------
    nbytes : int
        Its size in bytes (at least 1 is made).
    folder : str or PathLike, optional
        Where it is made (default: the temporary folder, ``TMPDIR``).

    Yields
    ------
    str
        Its path, to map.
    """
    descriptor, path = tempfile.mkstemp(prefix=".cryofield-table-", suffix=".bin", dir=folder)
    try:
        os.ftruncate(descriptor, max(1, nbytes))
        os.close(descriptor)
        yield path
    finally:
        os.unlink(path)


def mapped_array(values: np.ndarray, folder: str | os.PathLike | None = None) -> np.ndarray:
    """A copy of ``values`` in an unlinked file mapped into memory (``MAP_SHARED``).

    Parameters
    ----------
    values : ndarray, any shape, a numeric dtype
        What the new array holds.
    folder : str or PathLike, optional
        Where the file is made (default ``TMPDIR``).

    Returns
    -------
    ndarray
        Same shape and dtype as ``values``, C-contiguous and writable; its pages are the file's
        (empty arrays are plain copies).
    """
    values = np.asarray(values)
    if values.size == 0:
        return values.copy()
    with scratch_file(values.nbytes, folder) as path:
        mapped = np.memmap(path, dtype=values.dtype, mode="r+", shape=values.shape)
    mapped[...] = values
    return mapped.view(np.ndarray)  # a plain array over the mapping (which it keeps alive)


def is_mapped_array(values: np.ndarray) -> bool:
    """Whether ``values`` (or the array it views) was made by :func:`mapped_array`."""
    base = values
    while base is not None:
        if isinstance(base, np.memmap):
            return True
        base = getattr(base, "base", None)
    return False
