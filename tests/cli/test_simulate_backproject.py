import numpy as np
import pytest
import torch

from cryofield.cli.main import main
from cryofield.io import read_map, read_particles
from cryofield.metrics import fsc


def test_simulate_then_backproject_through_the_star_file(data, tmp_path, capsys):
    hand = data / "maps/hand-vol.mrc"
    assert main(["simulate", "--volume", str(hand), "-n", "1500", "--shift-px", "3", "-o", str(tmp_path / "sim")]) == 0
    table = read_particles(tmp_path / "sim/particles.star")
    truth = np.load(tmp_path / "sim/truth.npz")
    assert table.n == 1500 and table.box_size == 64 and table.pixel_size_angstrom[0] == 1.0
    np.testing.assert_allclose(table.rotations, truth["rotations"], atol=1e-9)
    np.testing.assert_allclose(table.shifts_px, truth["shifts_px"], atol=1e-9)
    np.testing.assert_allclose(table.ctf_array(), truth["ctf"], rtol=1e-9)
    np.testing.assert_array_equal(read_map(tmp_path / "sim/truth_vols/vol_000.mrc")[0], read_map(hand)[0])

    assert main(["backproject", str(tmp_path / "sim/particles.star"), "-o", str(tmp_path / "bp")]) == 0
    assert "half-map FSC 0.143 at" in capsys.readouterr().out
    volume, apix = read_map(tmp_path / "bp/volume.mrc")
    assert apix == 1.0
    _, curve = fsc(torch.from_numpy(volume), torch.from_numpy(read_map(hand)[0]))
    assert curve[:17].min() > 0.9  # FSC against the truth above 0.9 up to half Nyquist
    table = np.loadtxt(tmp_path / "bp/fsc.txt")
    assert table.shape == (33, 4) and table[1, 3] > 0.99
    assert (tmp_path / "bp/fsc.png").stat().st_size > 1000


def test_mixture_counts_tilt_pairs_and_noise(data, tmp_path):
    hand = data / "maps/hand-vol.mrc"  # two states of the same map: the mechanics are what is tested here
    assert main(["simulate", "--volume", str(hand), "--volume", str(hand), "--counts", "30", "10", "--snr", "0.5",
                 "--tilt-pairs", "--tilt-deg", "30", "-o", str(tmp_path / "mix")]) == 0
    truth = np.load(tmp_path / "mix/truth.npz")
    assert np.bincount(truth["state"]).tolist() == [30, 10]
    untilted, tilted = read_particles(tmp_path / "mix/particles.star"), read_particles(tmp_path / "mix/tilt.star")
    angle = np.degrees(np.arccos((np.trace(untilted.rotations.transpose(0, 2, 1) @ tilted.rotations, axis1=1,
                                           axis2=2) - 1) / 2))
    np.testing.assert_allclose(angle, 30, atol=1e-6)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    stage = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])  # the stage tilts the specimen in the lab frame
    np.testing.assert_allclose(tilted.rotations, stage @ untilted.rotations, atol=1e-5)
    images = untilted.images()
    assert images.shape == (40, 64, 64) and np.isfinite(images).all()


def test_simulate_bad_input(data, tmp_path, capsys):
    assert main(["simulate", "--volume", str(data / "maps/hand-vol.mrc"), "-o", str(tmp_path / "x")]) == 2
    assert "-n N" in capsys.readouterr().err
    assert main(["simulate", "--volume", str(data / "maps/hand-vol.mrc"), "--volume",
                 str(data / "maps/EMD-3197.map"), "-n", "5", "-o", str(tmp_path / "x")]) == 2
    assert "EMD-3197.map: map is (20, 20, 20), the first is (64, 64, 64)" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["backproject"])
def test_backproject_needs_poses(data, tmp_path, capsys, command):
    assert main([command, str(data / "particles/hand.mrcs"), "-o", str(tmp_path / "bp")]) == 2
    assert "no particle poses" in capsys.readouterr().err
    assert not (tmp_path / "bp").exists()
