import numpy as np
import pytest

from cryofield.cli.main import main
from cryofield.io import read_atomic_model, read_map, read_particles
from cryofield.metrics import kabsch
from cryofield.simulate import atomic


@pytest.fixture
def ake(data):
    return read_atomic_model(data / "pdb/1ake_closed.pdb"), read_atomic_model(data / "pdb/4ake_open_chainA_aligned.pdb")


def test_render_conserves_mass_centres_and_has_molmap_width():
    coords = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0]])
    vol = atomic.render(coords, np.array([1.0, 3.0]), 32, 1.0, 8.0).astype(np.float64)
    assert vol.sum() == pytest.approx(4.0, rel=1e-3)  # sum of weights, in voxel units
    grid = np.arange(32) - 16
    centroid = [(vol.sum(axis=axes) * grid).sum() / vol.sum() for axes in [(1, 2), (0, 2), (0, 1)]]  # z, y, x
    np.testing.assert_allclose(centroid, 0, atol=1e-3)  # the weighted centroid sits at the box centre
    single = atomic.render(np.zeros((1, 3)), np.ones(1), 32, 1.0, 8.0).astype(np.float64)
    profile = single.sum(axis=(0, 1))
    sigma = atomic.SIGMA_PER_RESOLUTION * 8.0
    assert np.sqrt((profile * grid**2).sum() / profile.sum()) == pytest.approx(sigma, rel=0.02)


def test_render_is_band_limited_and_matches_the_sampled_sum_of_wide_gaussians():
    """A narrow atom's map has the same amplitude spectrum wherever it sits within a voxel
    (no aliasing); a wide one's is the Gaussians sampled at the voxel centres."""
    box, apix = 24, 1.5
    below_nyquist = np.delete(np.arange(box), box // 2)  # a real map's Nyquist terms are real: they alias

    def amplitude_change(rendering):
        maps = [atomic.render(np.array([[0.0, 0.0, 0.0], [0.0, 4.0, 0.0]]) + shift, np.ones(2), box, apix, 3.0,
                              np.zeros(3), rendering).astype(np.float64) for shift in (0.0, 0.6)]
        amplitudes = [np.abs(np.fft.fftn(m))[np.ix_(*[below_nyquist] * 3)] for m in maps]
        return np.abs(amplitudes[0] - amplitudes[1]).max() / amplitudes[0].max(), maps[0].min(), maps[0].sum()

    change, lowest, mass = amplitude_change("band-limited")
    assert change < 1e-5 and lowest < 0 and mass == pytest.approx(2.0, rel=1e-6)  # rings below zero, no more
    change, lowest, mass = amplitude_change("molmap")
    # sampled at the voxel centres: never negative, but aliased, and even the mass depends on the position
    assert change > 0.05 and lowest >= 0 and abs(mass - 2.0) > 0.05
    coords = np.array([[1.3, -0.4, 2.2], [-3.1, 2.5, 0.9]])
    sigma = atomic.SIGMA_PER_RESOLUTION * 12.0 / apix  # 1.8 px: aliasing below 1e-6 of the peak
    for size in (box, box + 1):  # even and odd boxes
        wide = atomic.render(coords, np.array([1.0, 2.0]), size, apix, 12.0, center_angstrom=np.zeros(3))
        axis = np.arange(size) - size // 2
        grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)[..., ::-1]  # [z, y, x] -> (x, y, z)
        sampled = sum(w * np.exp(-((grid - c / apix) ** 2).sum(-1) / (2 * sigma**2)) / (2 * np.pi * sigma**2) ** 1.5
                      for c, w in zip(coords, [1.0, 2.0]))
        np.testing.assert_allclose(wide, sampled, atol=1e-5 * sampled.max())


def test_kabsch_recovers_a_rigid_motion(rng):
    a = rng.normal(size=(50, 3)) * 10
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    b = a @ rot.T + [3, -2, 5]
    r, t = kabsch(b, a)
    np.testing.assert_allclose(b @ r.T + t, a, atol=1e-9)


def test_trajectory_between_closed_and_open(ake):
    closed, opened = ake
    model, frames = atomic.interpolation_trajectory(closed, opened, 5)
    assert frames.shape == (5, len(model), 3)
    np.testing.assert_allclose(frames[0], model.coords_angstrom)
    ca = model.atom_name == "CA"
    rmsd = np.sqrt(((frames[-1][ca] - frames[0][ca]) ** 2).sum(1).mean())
    assert 5 < rmsd < 10  # adenylate kinase opens by ~7 A C-alpha RMSD
    steps = np.sqrt(((np.diff(frames, axis=0)[:, ca]) ** 2).sum(-1).mean(-1))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-9)  # even steps


def test_rigid_motion_keeps_the_rest_and_the_axis(ake):
    closed, _ = ake
    motion = atomic.rigid_motion(closed, "A:122-159", "A:121:CA,A:122:CA")
    moved = motion.apply(closed.coords_angstrom, 40)
    np.testing.assert_array_equal(moved[~motion.moving], closed.coords_angstrom[~motion.moving])
    assert np.abs(moved[motion.moving] - closed.coords_angstrom[motion.moving]).max() > 5
    distance = np.linalg.norm(moved[motion.moving] - motion.origin, axis=1)
    np.testing.assert_allclose(distance, np.linalg.norm(closed.coords_angstrom[motion.moving] - motion.origin,
                                                        axis=1))
    with pytest.raises(ValueError, match="matches no atom"):
        atomic.parse_selection(closed, "Z:1-5")
    with pytest.raises(ValueError, match="CHAIN:RESNUM:NAME"):
        atomic.rigid_motion(closed, "A:122-159", "A:121,A:122:CA")


def test_populations(rng):
    assert np.bincount(atomic.population(3, 0, rng, kind="counts", counts=[2, 0, 5])).tolist() == [2, 0, 5]
    states = atomic.population(10, 20000, rng, kind="gaussian", means=[2, 7], widths=[0.5, 0.5])
    counts = np.bincount(states, minlength=10)
    assert counts[2] > 5000 and counts[7] > 5000 and counts[0] + counts[9] < 100
    assert set(np.unique(atomic.population(4, 1000, rng))) == {0, 1, 2, 3}


def test_simulate_command_with_atomic_models(data, tmp_path, capsys):
    pdb = data / "pdb"
    assert main(["simulate", "--pdb", str(pdb / "1ake_closed.pdb"), "--pdb", str(pdb / "4ake_open_chainA_aligned.pdb"),
                 "--states", "4", "--box", "48", "--apix", "2", "-n", "40", "--snr", "1",
                 "-o", str(tmp_path / "t")]) == 0
    truth = np.load(tmp_path / "t/truth.npz")
    assert truth["coordinates"].shape == (40, 1) and set(np.unique(truth["coordinates"])) <= {0, 1 / 3, 2 / 3, 1}
    maps = [read_map(tmp_path / f"t/truth_vols/vol_{i:03d}.mrc") for i in range(4)]
    # positive density, band-limited: the rings around narrow atoms dip a little below zero
    assert all(m[1] == 2.0 and m[0].shape == (48, 48, 48) and 0 < -m[0].min() < m[0].max() / 4 for m in maps)
    assert read_particles(tmp_path / "t/particles.star").n == 40

    assert main(["simulate", "--pdb", str(pdb / "1ake_closed.pdb"), "--rotate", "A:122-159", "--axis",
                 "A:121:CA,A:122:CA", "--rotate2", "A:30-59", "--axis2", "A:29:CA,A:30:CA", "--states", "3",
                 "--box", "48", "--apix", "2", "--ca-only", "--render", "molmap", "--counts"] + ["2"] * 9
                + ["-o", str(tmp_path / "g")]) == 0
    truth = np.load(tmp_path / "g/truth.npz")
    assert truth["coordinates"].shape == (18, 2)
    assert len(list((tmp_path / "g/truth_vols").iterdir())) == 9
    assert read_map(tmp_path / "g/truth_vols/vol_000.mrc")[0].min() >= 0  # molmap's sampling: no rings

    assert main(["simulate", "--pdb", str(pdb / "1ake_closed.pdb"), "--rotate", "A:122-159", "--axis",
                 "A:121:CA,A:122:CA", "--circular", "--states", "6", "--box", "48", "--apix", "2", "-n", "12",
                 "--population", "gaussian", "--means", "1", "--widths", "0.5", "-o", str(tmp_path / "c")]) == 0
    angles = np.load(tmp_path / "c/truth.npz")["coordinates"]
    assert set(np.unique(angles)) <= {0, 60, 120, 180, 240, 300}

    assert main(["simulate", "--pdb", str(pdb / "1ake_closed.pdb"), "-n", "5", "-o", str(tmp_path / "x")]) == 2
    assert "need --box and --apix" in capsys.readouterr().err


def test_random_configurations_ctf_from_and_snr_radius(data, tmp_path):
    pdb = data / "pdb/1ake_closed.pdb"
    assert main(["simulate", "--pdb", str(pdb), "--rotate", "A:122-159", "--axis", "A:121:CA,A:122:CA",
                 "--angles", "-20", "20", "--random-configs", "5", "--box", "48", "--apix", "2", "-n", "30",
                 "--ctf-from", str(data / "relion/relion31.star"), "--snr", "2", "--snr-radius", "15",
                 "-o", str(tmp_path / "r")]) == 0
    truth = np.load(tmp_path / "r/truth.npz")
    angles = np.unique(truth["coordinates"])
    assert len(angles) <= 5 and angles.min() >= -20 and angles.max() <= 20
    source = read_particles(data / "relion/relion31.star").ctf["defocus_u_angstrom"].to_numpy()
    assert set(truth["ctf"][:, 2]) <= set(source)  # defocus drawn from the star file
    assert np.all(truth["ctf"][:, 1] == 2.0) and np.all(truth["ctf"][:, 0] == 48)
