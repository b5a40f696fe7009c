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
