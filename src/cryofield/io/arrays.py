"""Numeric arrays a user or a run hands back: ``.npy``, ``.npz`` and text tables, read safely.

Every failure (missing, cut short, not an array, pickled objects, wrong shape, NaN) is one
:class:`~cryofield.errors.InputError` naming the file; a pickle inside is never executed.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from cryofield.errors import InputError

TEXT_EXTENSIONS = (".txt", ".csv", ".ind", ".dat")
#: What ``np.load``/``np.loadtxt`` raise on a damaged file (the zip reader's own errors included).
_DAMAGED = (OSError, ValueError, EOFError, UnicodeDecodeError, zipfile.BadZipFile, KeyError)


def read_array(path: str | os.PathLike, *, ndim: int | None = None, rows: int | None = None,
               columns: int | None = None, finite: bool = True, what: str = "array",
               of: str = "particles", missing_ok: bool = False) -> np.ndarray | None:
    """A numeric array from ``.npy`` or a whitespace/comma text table, checked.

    Parameters
    ----------
    path : str or PathLike
        ``.npy`` (read without pickles), or ``.txt``/``.csv``/``.ind``/``.dat`` text.
    ndim : int, optional
        Required number of dimensions; text tables are read with at least this many.
    rows : int, optional
        Required length of the first axis (for example the number of particles).
    columns : int, optional
        Required length of the second axis.
    finite : bool
        Refuse NaN and Inf.
    what : str
        What the array holds, for the message (``"latents"``, ``"labels"``).
    of : str
        What ``rows`` counts, for the message.
    missing_ok : bool
        Return None when there is no such file (an optional output).

    Returns
    -------
    ndarray or None
        As stored (text tables as float64); None only for a missing file with ``missing_ok``.

    Raises
    ------
    InputError
        Naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return None
        raise InputError(path, "not found")
    ext = path.suffix.lower()
    try:
        if ext == ".npy":
            array = load_npy(path, what)
        elif ext in TEXT_EXTENSIONS:
            array = np.loadtxt(path, ndmin=ndim or 1, delimiter="," if ext == ".csv" else None)
        else:
            raise InputError(path, f"{what} must be .npy or a text table ({', '.join(TEXT_EXTENSIONS)})")
    except InputError:
        raise
    except _DAMAGED as exc:
        raise InputError(path, f"not a readable {what} file ({_reason(exc)})") from None
    return check_array(path, array, ndim=ndim, rows=rows, columns=columns, finite=finite, what=what, of=of)


def load_npy(path: str | os.PathLike, what: str = "array") -> np.ndarray:
    """The array of a ``.npy`` file, whatever its dtype, read without pickles.

    The file is mapped before it is copied, so a header that claims more data than the file
    holds is refused without allocating it.

    Parameters
    ----------
    path : str or PathLike
    what : str
        What the file holds, for the message.

    Returns
    -------
    ndarray

    Raises
    ------
    InputError
        Missing, damaged, cut short or pickled.
    """
    path = Path(path)
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        return np.array(mapped)
    except Exception as exc:  # noqa: BLE001 - numpy parses an untrusted header: any failure means a bad file
        raise InputError(path, f"not a readable {what} file ({_reason(exc)})") from None


def read_arrays(path: str | os.PathLike, names: tuple[str, ...], *, what: str = "arrays") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read whole and without pickles; ``names`` must be there.

    Parameters
    ----------
    path : str or PathLike
    names : tuple of str
        The arrays it must hold.
    what : str
        What the file holds, for the message.

    Returns
    -------
    dict of str to ndarray
        Every array in the file, by name.

    Raises
    ------
    InputError
        When the file is missing, damaged or lacks one of ``names``.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [n for n in names if n not in archive.files]
            if missing:
                raise InputError(path, f"{what} file without {', '.join(missing)}")
            return {n: archive[n] for n in archive.files}
    except InputError:
        raise
    except _DAMAGED as exc:
        raise InputError(path, f"not a readable {what} file ({_reason(exc)})") from None


def check_array(path: str | os.PathLike, array: np.ndarray, *, ndim: int | None = None, rows: int | None = None,
                columns: int | None = None, finite: bool = True, what: str = "array",
                of: str = "particles") -> np.ndarray:
    """``array`` (read from ``path``) if it has the shape asked for and numbers in it, else an InputError.

    The arguments are those of :func:`read_array`; ``of`` names what ``rows`` counts.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise InputError(path, f"{what} of type {array.dtype}: expected numbers")
    if ndim is not None and array.ndim != ndim:
        raise InputError(path, f"{what} of shape {array.shape}: expected {ndim} dimension{'s' * (ndim != 1)}")
    if rows is not None and (array.ndim == 0 or len(array) != rows):
        raise InputError(path, f"{len(array) if array.ndim else 1} {what} for {rows} {of}")
    if columns is not None and (array.ndim < 2 or array.shape[1] != columns):
        raise InputError(path, f"{what} of shape {array.shape}: expected {columns} columns")
    if finite and array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise InputError(path, f"{what} hold NaN or Inf (row {int(bad[0]) + 1})" if array.ndim else
                         f"{what} is NaN or Inf")
    return array


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
