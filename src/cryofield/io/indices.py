"""Particle index files: which particles of a stack a subset or a run holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io.arrays import load_npy
from cryofield.io.legacy import load_legacy_pickle


def read_indices(path: str | Path, n: int) -> np.ndarray:
    """Particle indices from ``.npy``, ``.txt`` (whitespace-separated) or a cryoDRGN ``.pkl``.

    Parameters
    ----------
    path : str or Path
        ``.npy`` (integers or a boolean mask of ``n``), ``.txt``/``.ind`` (whitespace),
        ``.csv`` or ``.pkl``.
    n : int
        The number of particles the indices refer to.

    Returns
    -------
    ndarray, shape (M,), int64
        Sorted unique 0-based indices.

    Raises
    ------
    InputError
        For values that are not integers or fall outside ``[0, n)``, naming the entry.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        if ext == ".npy":
            values = load_npy(path, "index")
        elif ext == ".pkl":
            values = np.asarray(load_legacy_pickle(path))
        elif ext in (".txt", ".csv", ".ind"):
            values = np.loadtxt(path, dtype=np.float64, ndmin=1, delimiter="," if ext == ".csv" else None)
        else:
            raise InputError(path, "index file must be .npy, .txt or .pkl")
    except ValueError as exc:
        raise InputError(path, f"not a list of particle indices ({exc})") from None
    values = np.asarray(values).ravel()
    if values.dtype == bool:
        if len(values) != n:
            raise InputError(path, f"boolean mask of {len(values)} values for {n} particles")
        return np.flatnonzero(values)
    if values.size and not np.all(np.equal(np.mod(values, 1), 0)):
        bad = int(np.flatnonzero(np.mod(values, 1))[0])
        raise InputError(path, f"entry {bad + 1} ({values[bad]}) is not an integer index")
    values = values.astype(np.int64)
    outside = (values < 0) | (values >= n)
    if outside.any():
        bad = int(np.flatnonzero(outside)[0])
        raise InputError(path, f"entry {bad + 1}: index {values[bad]} is outside 0..{n - 1} "
                               f"({n} particles)")
    return np.unique(values)
