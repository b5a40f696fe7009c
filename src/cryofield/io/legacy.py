"""cryoDRGN's legacy pickles (poses and CTF), read without ever running pickled code."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import pickletools
from pathlib import Path

import numpy as np

from cryofield.errors import InputError

# The only globals a pickle of plain numpy arrays needs.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _check_plain(obj, path: Path):
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise InputError(path, "pickle holds an object array; only numeric arrays are accepted")
        return obj
    if isinstance(obj, (tuple, list)):
        return type(obj)(_check_plain(o, path) for o in obj)
    if isinstance(obj, (int, float)):
        return obj
    raise InputError(path, f"pickle holds a {type(obj).__name__}; only numpy arrays, "
                           "tuples and lists are accepted")


def _refuse_huge_memo(path: Path, data: bytes) -> None:
    """Refuse memo indices no real pickle of this size uses: the C unpickler would allocate a memo that large."""
    indices = []
    with contextlib.suppress(Exception):  # a damaged opcode ends the scan: the unpickler says what is wrong
        for op, arg, _ in pickletools.genops(data):
            if op.name.endswith(("PUT", "GET")) and isinstance(arg, int):
                indices.append(arg)
    huge = [i for i in indices if not 0 <= i <= len(data)]
    if huge:
        raise InputError(path, f"not a readable pickle (memo index {huge[0]} in a file of {len(data)} bytes)")


def load_legacy_pickle(path: str | os.PathLike):
    """Load a legacy cryoDRGN pickle that holds only numpy arrays, tuples and lists.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    ndarray, tuple or list
        The pickled object.

    Raises
    ------
    InputError
        The file is missing, not a pickle, or would need any other class or function to
        load (such a pickle could run code, and is refused before anything runs).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    data = path.read_bytes()
    _refuse_huge_memo(path, data)
    try:  # from memory: a length field that claims gigabytes then fails as truncated, with nothing allocated
        obj = _ArrayOnlyUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise InputError(path, f"unsafe or corrupt pickle ({exc}); only pickles of numpy "
                               "arrays are read") from None
    except Exception as exc:  # untrusted bytes: any failure (a memo index of 2**32: MemoryError) is a bad file
        raise InputError(path, f"not a readable pickle ({type(exc).__name__}: {exc})"[:200]) from None
    return _check_plain(obj, path)


def read_legacy_poses(path: str | os.PathLike, n: int, box_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Rotations and shifts from a cryoDRGN pose pickle.

    Parameters
    ----------
    path : str or PathLike
        ``(rot, trans)`` with ``rot`` (N, 3, 3) and ``trans`` (N, 2) a fraction of the box,
        or ``rot`` alone.
    n : int
        Expected number of particles.
    box_size : int
        Box size in pixels, to turn ``trans`` into pixels.

    Returns
    -------
    rotations : ndarray, shape (N, 3, 3), float64
    shifts_px : ndarray, shape (N, 2), float64, or None
        RELION-sign shifts in pixels.
    """
    obj = load_legacy_pickle(path)
    path = Path(path)
    rot, trans = (obj[0], obj[1]) if isinstance(obj, (tuple, list)) else (obj, None)
    rot = np.asarray(rot, dtype=np.float64)
    if rot.ndim != 3 or rot.shape[1:] != (3, 3):
        raise InputError(path, f"rotations have shape {rot.shape}, expected (N, 3, 3)")
    if len(rot) != n:
        raise InputError(path, f"{len(rot)} poses for {n} particles")
    if trans is None:
        return rot, None
    trans = np.asarray(trans, dtype=np.float64)
    if trans.shape != (n, 2):
        raise InputError(path, f"translations have shape {trans.shape}, expected ({n}, 2)")
    return rot, trans * box_size


def read_legacy_ctf(path: str | os.PathLike, n: int) -> np.ndarray:
    """The (N, 9) CTF array of a cryoDRGN CTF pickle (columns as ``conventions.CTF_COLUMNS``)."""
    ctf = load_legacy_pickle(path)
    path = Path(path)
    ctf = np.asarray(ctf, dtype=np.float64)
    if ctf.ndim != 2 or ctf.shape[1] != 9:
        raise InputError(path, f"CTF array has shape {ctf.shape}, expected (N, 9)")
    if len(ctf) != n:
        raise InputError(path, f"CTF for {len(ctf)} particles, but the images hold {n}")
    return ctf
