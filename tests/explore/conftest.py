"""A small trained and analysed run for the explorer's tests."""

import pytest

from cryofield.cli.main import main
from cryofield.simulate.toy import make_toy_dataset


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory):
    """train-vae (zdim 2, one epoch) on 300 toy particles of 24 px, analysed (3 clusters, no UMAP) and its landscape."""
    root = tmp_path_factory.mktemp("explore")
    star = make_toy_dataset(root / "data", n=300, box=24, apix=4.0, snr=2, seed=2)["star"]
    run = root / "run"
    assert main(["train-vae", str(star), "-o", str(run), "--zdim", "2", "-n", "1", "--enc-dim", "32", "--dec-dim",
                 "32", "--enc-layers", "1", "--dec-layers", "1", "-b", "32"]) == 0
    assert main(["analyze", str(run), "--ksample", "3", "--pc", "1", "--pc-points", "3", "--no-umap"]) == 0
    assert main(["landscape", str(run), "--sketch", "20", "--pcs", "2", "--pc-points", "3", "-M", "3",
                 "--phi-samples", "50", "--phi-epochs", "2"]) == 0
    return run


@pytest.fixture(scope="session")
def star_of(toy_run):
    return toy_run.parent / "data" / "particles.star"


@pytest.fixture(scope="session")
def toy_run_b(toy_run):
    """Another run on the same particles (seed 1), not analysed."""
    run = toy_run.parent / "run_b"
    assert main(["train-vae", str(toy_run.parent / "data/particles.star"), "-o", str(run), "--zdim", "2", "-n", "1",
                 "--enc-dim", "32", "--dec-dim", "32", "--enc-layers", "1", "--dec-layers", "1", "-b", "32",
                 "--seed", "1"]) == 0
    return run
