"""Every file cryofield writes appears whole or not at all.

Outputs are written under a temporary name in their own folder (``.NAME.TAG.partEXT``),
flushed to the disk with ``fsync`` and renamed into place, and the folder's entry is
flushed too: a process killed at any moment, a node that loses power or a disk that fills
leaves either the previous file or the new one, never a piece. A test of the whole suite
(``tests/conftest.py``) fails any cryofield code that opens a final output name for writing.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: Files appended to line by line rather than replaced (a reader skips a cut last line).
APPEND_ONLY = ("log.jsonl", "train.log")


def part_name(path: Path, tag: str) -> Path:
    """The temporary name beside ``path`` (same folder and extension: writers choose the format by it)."""
    return path.with_name(f".{path.stem}.{tag}.part{path.suffix}")


def is_part_name(name: str) -> bool:
    """Whether ``name`` is a temporary name of :func:`part_name` (or a checkpoint's)."""
    return name.startswith(".") and ".part" in name


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``paths``; flush them and rename them onto ``paths`` on success.

    On any exception every temporary file is removed and no final path is touched, so a
    failed command leaves nothing half-written.

    Parameters
    ----------
    *paths : str or PathLike
        The final output paths. Their folders must exist.

    Yields
    ------
    list of Path
        One temporary path per output, in the same folder (so the rename is atomic). A
        temporary path left unwritten leaves its final path untouched.
    """
    finals = [Path(p) for p in paths]
    tag = uuid.uuid4().hex[:8]
    temps = [part_name(p, tag) for p in finals]
    try:
        yield temps
        written = [(t, p) for t, p in zip(temps, finals) if t.exists()]
        for temp, _ in written:
            _fsync(temp)
    except BaseException:
        for t in temps:
            t.unlink(missing_ok=True)
        raise
    for temp, final in written:
        os.replace(temp, final)
    for folder in {final.parent for _, final in written}:
        _fsync_folder(folder)


@contextlib.contextmanager
def whole(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`atomic_outputs` for one file: yields its temporary path."""
    with atomic_outputs(path) as (temp,):
        yield temp


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` at ``path`` (exactly that name), whole or not at all."""
    with whole(path) as temp, open(temp, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` at ``path``, whole or not at all."""
    with whole(path) as temp, open(temp, "wb") as fh:
        np.savez(fh, **arrays)


def save_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) at ``path``, whole or not at all."""
    with whole(path) as temp:
        temp.write_text(text, encoding="utf-8")


def save_table(path: str | os.PathLike, array: np.ndarray, **options) -> None:
    """``numpy.savetxt(path, array, **options)``, whole or not at all."""
    with whole(path) as temp:
        np.savetxt(temp, array, **options)


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the renames); some file systems cannot, which is fine."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
