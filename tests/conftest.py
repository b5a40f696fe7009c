import os
import sys
from pathlib import Path

import numpy as np
import pytest

import cryofield
from cryofield.io import MrcStackWriter
from cryofield.io._atomic import APPEND_ONLY, is_part_name

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CRYOFIELD_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data() -> Path:
    """The shared real-data folder; tests that need it skip when it is absent."""
    if not DATA.is_dir():
        pytest.skip(f"shared test data not found at {DATA}")
    return DATA


@pytest.fixture
def one_thread():
    """Small maps: one thread is faster than two that wait for each other on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_stack(path, images, apix=1.5):
    images = np.asarray(images, np.float32)
    with MrcStackWriter(path, images.shape, apix) as writer:
        writer.write(images)
    return path


@pytest.fixture
def write_stack():
    """``write_stack(path, images, apix=1.5) -> path``: a float32 MRC stack."""
    return _write_stack


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# -- every file cryofield writes appears whole or not at all (issue 23, item 3) -------------------
# An audit hook sees every open() for writing. When cryofield's own code opens a final name in a
# test's folder (not a temporary ".NAME.TAG.partEXT" to rename into place, an append-only log or
# the run lock), the test that made it happen fails: the whole suite checks every command's writes.

_PACKAGE = str(Path(cryofield.__file__).parent) + os.sep
_WATCHED: list[str] = []  # the folder watched (pytest's base temporary folder), once known
_UNSAFE_WRITES: list[str] = []


def _audit_open(event: str, args: tuple) -> None:
    if event != "open" or not _WATCHED:
        return
    path, mode, flags = args
    if isinstance(path, int) or path is None:
        return
    writing = any(c in mode for c in "wax+") if mode is not None else bool(flags & (os.O_WRONLY | os.O_RDWR))
    path = os.fsdecode(path)
    name = os.path.basename(path)
    if not writing or not path.startswith(_WATCHED[0]) or is_part_name(name) or name in APPEND_ONLY + (".lock",):
        return
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith(_PACKAGE):
            _UNSAFE_WRITES.append(f"{path} (opened {mode or flags!r} in {frame.f_code.co_filename}:"
                                  f"{frame.f_lineno})")
            return
        frame = frame.f_back


sys.addaudithook(_audit_open)


@pytest.fixture(scope="session", autouse=True)
def _watch_writes(tmp_path_factory):
    _WATCHED.append(str(tmp_path_factory.getbasetemp()))
    yield
    _WATCHED.clear()


@pytest.fixture(autouse=True)
def _every_output_whole():
    """Fail a test in which cryofield wrote a final output name directly (not via ``io._atomic``).

    Writes made while a wider-scoped fixture was set up count against the first test to use it.
    """
    yield
    found, _UNSAFE_WRITES[:] = list(_UNSAFE_WRITES), []
    assert not found, "written in place, not whole-or-nothing: " + "; ".join(found[:3])
