import numpy as np

from cryofield.io import read_map, read_particles
from cryofield.simulate.toy import make_toy_dataset


def test_toy_dataset_reads_back_with_its_truth(tmp_path):
    paths = make_toy_dataset(tmp_path, n=40, box=32, apix=3.0, snr=1e6, seed=3)
    table = read_particles(paths["star"])
    truth = np.load(paths["truth"])
    assert table.n == 40 and table.box_size == 32 and table.pixel_size_angstrom[0] == 3.0
    np.testing.assert_allclose(table.rotations, truth["rotations"], atol=1e-10)
    np.testing.assert_allclose(table.shifts_px, truth["shifts_px"], atol=1e-10)
    np.testing.assert_allclose(table.ctf_array(), truth["ctf"], rtol=1e-12)
    state_a = np.loadtxt(paths["state_a"], dtype=int)
    assert len(state_a) == 20 and np.all(truth["state"][state_a] == 0)
    a, b = (read_map(paths["volumes"] / f"vol_{i:03d}.mrc")[0] for i in (0, 1))
    assert a.min() > -1e-3 * a.max() and np.abs(a - b).max() > 0.1 * a.max()  # two different states
    images = table.images()
    assert np.isfinite(images).all() and images.std() > 0


def test_toy_images_follow_the_contrast_convention(tmp_path):
    """X = -(CTF * P) with CTF(0) = -w: the noiseless image has a positive mean."""
    paths = make_toy_dataset(tmp_path, n=10, box=32, snr=1e9)
    assert (read_particles(paths["star"]).images().mean(axis=(1, 2)) > 0).all()
