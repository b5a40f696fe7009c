import os
from pathlib import Path

import numpy as np
import pytest

from cryofield.io import MrcStackWriter

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
