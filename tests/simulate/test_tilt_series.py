"""Simulated tilt series (issue 26, item 2) and their backprojection by particle, exposure-weighted."""

import numpy as np
import pytest
import torch

from cryofield.cli.main import main
from cryofield.examples import ADK_CLOSED, ADK_OPEN, example_path
from cryofield.fourier import fft_center, radius
from cryofield.imaging import exposure_weights
from cryofield.io import read_map, read_particles
from cryofield.io.star import read_star, write_star
from cryofield.metrics import fsc
from cryofield.simulate.particles import Imaging, VolumeProjector, simulate_chunks
from cryofield.simulate.tilt_series import TiltScheme


def test_acquisition_orders():
    assert TiltScheme(-12, 12, 3).angles().tolist() == [0, 3, -3, -6, 6, 9, -9, -12, 12]
    assert TiltScheme(-6, 12, 3, "dose-symmetric").angles().tolist() == [0, 3, -3, -6, 6, 9, 12]
    assert TiltScheme(-6, 9, 3, "bidirectional").angles().tolist() == [0, 3, 6, 9, -3, -6]
    with pytest.raises(ValueError, match="holds 0"):
        TiltScheme(10, 60, 3).angles()


def test_exposure_damps_each_frequency_by_its_weight():
    rng = np.random.default_rng(0)
    volume = rng.random((16, 16, 16))
    imaging = Imaging(pixel_size_angstrom=2.0, ctf=False)
    pose = np.repeat(np.eye(3)[None], 2, 0)
    images = next(simulate_chunks(VolumeProjector([volume]), np.zeros(2, int), pose, np.zeros((2, 2)), None, imaging,
                                  exposure=np.array([0.0, 40.0])))
    ratio = fft_center(torch.from_numpy(images[1]).double()) / fft_center(torch.from_numpy(images[0]).double())
    k = radius(16, 2, dtype=torch.float64) / (16 * 2.0)
    expected = exposure_weights(k, torch.tensor([40.0]), cutoff=False)[0]
    inside = radius(16, 2) <= 7
    torch.testing.assert_close(ratio.real[inside], expected[inside], atol=2e-3, rtol=1e-3)


def test_simulate_tilt_series_and_read_them_back(tmp_path, capsys):
    out = tmp_path / "et"
    assert main(["simulate", "--pdb", str(example_path(ADK_CLOSED)), "--pdb", str(example_path(ADK_OPEN)),
                 "--box", "24", "--apix", "4", "-n", "6", "--states", "3", "--snr", "1", "--tilt-series",
                 "--tilt-range", "-30", "30", "--tilt-step", "10", "--dose-per-tilt", "4", "--float16",
                 "-o", str(out)]) == 0
    assert "6 particles x 7 tilts" in capsys.readouterr().out
    table = read_particles(out / "particles.star", tilt_series=True)
    truth = np.load(out / "truth.npz")
    assert table.n == 42 and table.tilts.counts().tolist() == [7] * 6
    np.testing.assert_allclose(table.tilts.tilt_deg[:7], [0, 10, -10, -20, 20, 30, -30])
    np.testing.assert_allclose(table.tilts.exposure[:7], 4.0 * np.arange(7))
    np.testing.assert_allclose(table.rotations_or_none, truth["image_rotations"], atol=1e-6)
    theta = np.radians(truth["tilt_deg"])
    x, z = truth["position_angstrom"][truth["particle"], 0], truth["position_angstrom"][truth["particle"], 2]
    depth = -np.sin(theta) * x + np.cos(theta) * z  # each tilt's defocus follows the particle's depth
    base = table.ctf["defocus_u_angstrom"].to_numpy() + depth
    np.testing.assert_allclose(base.reshape(6, 7), base.reshape(6, 7)[:, :1].repeat(7, 1), atol=1e-6)
    assert main(["simulate", "--volume", str(out / "truth_vols/vol_000.mrc"), "-n", "2", "--tilt-series",
                 "--junk", "0.1", "-o", str(tmp_path / "x")]) == 2
    assert "--tilt-series cannot be used with --junk" in capsys.readouterr().err


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """100 particles of closed adenylate kinase x 21 tilts (-60 to 60 by 6 degrees, 5 e/A^2 each), 32 px, SNR 0.05."""
    out = tmp_path_factory.mktemp("series")
    assert main(["simulate", "--pdb", str(example_path(ADK_CLOSED)), "--states", "1", "--box", "32", "--apix", "2",
                 "-n", "100", "--snr", "0.05", "--tilt-series", "--tilt-step", "6", "--dose-per-tilt", "5",
                 "-o", str(out)]) == 0
    return out


def _truth_auc(series, volume_path) -> float:
    """The mean FSC of a map against the simulation's true map."""
    truth, _ = read_map(series / "truth_vols/vol_000.mrc")
    volume, _ = read_map(volume_path)
    return float(fsc(torch.from_numpy(volume), torch.from_numpy(truth))[1].mean())


def test_backprojection_takes_particles_whole_and_weights_their_exposure(series, tmp_path, capsys):
    out = series
    auc = {}
    for flag in ("", "--tilt-series"):
        assert main(["backproject", str(out / "particles.star"), "-o", str(tmp_path / f"bp{flag}")]
                    + ([flag] if flag else [])) == 0
        auc[flag] = _truth_auc(series, tmp_path / f"bp{flag}/volume.mrc")
    assert "100 particles in 2100 tilt images" in capsys.readouterr().out
    assert auc["--tilt-series"] > auc[""] + 0.02  # damaged frequencies weighted by what they hold
    (tmp_path / "keep.txt").write_text("\n".join(map(str, range(0, 100, 2))) + "\n")
    assert main(["backproject", str(out / "particles.star"), "--tilt-series", "--ind", str(tmp_path / "keep.txt"),
                 "-o", str(tmp_path / "half")]) == 0
    assert "50 particles in 1050 tilt images" in capsys.readouterr().out


def test_halves_hold_whole_particles(tmp_path, monkeypatch):
    import cryofield.recon.backproject as backproject

    out = tmp_path / "et"
    assert main(["simulate", "--pdb", str(example_path(ADK_CLOSED)), "--states", "1", "--box", "16", "--apix", "4",
                 "-n", "9", "--tilt-series", "--tilt-step", "20", "-o", str(out)]) == 0
    table = read_particles(out / "particles.star", tilt_series=True)
    inserted = {}  # each half's accumulator: the rotations of the images it took
    original = backproject.Backprojector.insert

    def insert(self, images, rotations, weights=None, **options):
        inserted.setdefault(id(self), []).append(rotations.double().numpy())
        return original(self, images, rotations, weights, **options)

    monkeypatch.setattr(backproject.Backprojector, "insert", insert)
    result = backproject.backproject_table(table)
    assert sum(result.counts) == 9 and abs(result.counts[0] - result.counts[1]) == 1
    halves = [np.concatenate(r) for r in inserted.values()]
    assert len(halves) == 2 and sum(map(len, halves)) == table.n
    for particle in range(9):
        own = table.rotations_or_none[table.tilts.particle == particle]
        in_half = [sum(np.abs(h - r).sum((1, 2)).min() < 1e-4 for r in own) for h in halves]
        assert sorted(in_half) == [0, len(own)], particle  # all of its tilt images in one half


def test_ctf_of_a_tilt_image_is_damped_by_its_exposure():
    from cryofield.fourier import lattice
    from cryofield.imaging import ctf_at_pixels

    coords = lattice(16, 2, normalized=False).reshape(-1, 2)
    params = torch.tensor([[16, 2.0, 15000, 14000, 30, 300, 2.7, 0.1, 0],
                           [16, 2.0, 15000, 14000, 30, 200, 2.7, 0.1, 0]])
    exposure = torch.tensor([[30.0], [12.0]])
    damped = ctf_at_pixels(torch.cat([params, exposure], 1), coords, 16)
    k = (coords / 32.0).norm(dim=-1)
    weights = torch.cat([exposure_weights(k, exposure[i], float(params[i, 5])) for i in range(2)])  # 300, 200 kV
    torch.testing.assert_close(damped, ctf_at_pixels(params, coords, 16) * weights)
    assert weights.min() < 0.5 and (weights[:, k == 0] == 1).all()


def test_ctf_of_a_tilt_image_is_scaled_once_by_its_amplitude():
    from cryofield.fourier import lattice
    from cryofield.imaging import ctf_at_pixels

    coords = lattice(16, 2, normalized=False).reshape(-1, 2)
    params = torch.tensor([[16, 2.0, 15000, 14000, 30, 300, 2.7, 0.1, 0, 20.0]]).repeat(2, 1)
    damped = ctf_at_pixels(params, coords, 16)
    extra = torch.tensor([[0.0, 0.5], [1.0, 0.5]])  # raw, then premultiplied; both at half amplitude
    scaled = ctf_at_pixels(torch.cat([params, extra], 1), coords, 16)
    torch.testing.assert_close(scaled[0], 0.5 * damped[0])
    torch.testing.assert_close(scaled[1], (0.5 * damped[1]) ** 2)


def test_amplitude_scale_comes_from_one_source(series, tmp_path, capsys):
    """The simulation scales each tilt by cos(tilt); ``_rlnCtfScalefactor`` or cos(tilt) models it, once."""
    table = read_particles(series / "particles.star", tilt_series=True)
    truth = np.load(series / "truth.npz")
    tilts = table.tilts
    assert tilts.weighting == "auto" and tilts.amplitude_source == "_rlnCtfScalefactor"
    np.testing.assert_allclose(tilts.amplitude, np.cos(np.radians(truth["tilt_deg"])), atol=1e-5)
    assert tilts.weighted("cos").amplitude_source == "cos(tilt)"
    np.testing.assert_allclose(tilts.weighted("cos").amplitude, tilts.amplitude, atol=1e-5)
    assert tilts.weighted("none").amplitude is None and table.with_tilt_weighting("none").tilts.amplitude is None
    assert main(["info", str(series / "particles.star"), "--tilt-series"]) == 0
    assert "amplitude scale                  0.5 .. 1 (from _rlnCtfScalefactor)" in capsys.readouterr().out
    blocks = read_star(series / "particles.star")
    blocks["particles"].table["rlnCtfScalefactor"] = blocks["particles"].table["rlnCtfScalefactor"].astype(object)
    blocks["particles"].table.loc[2, "rlnCtfScalefactor"] = -0.5  # as RELION refines a tilt with no signal
    refined = tmp_path / "refined.star"
    write_star(refined, blocks)
    with pytest.warns(UserWarning, match=r"1 rows have _rlnCtfScalefactor <= 0 \(row 3: -0.5\)"):
        amplitude = read_particles(refined, tilt_series=True).tilts.amplitude
    assert amplitude[2] == 0 and amplitude[3] > 0
    blocks["particles"].table.loc[2, "rlnCtfScalefactor"] = "inf"
    write_star(refined, blocks)
    assert main(["info", str(refined), "--tilt-series"]) == 2
    assert "row 3: _rlnCtfScalefactor is inf, not a finite number" in capsys.readouterr().err


def test_backprojection_scales_each_tilt_by_its_amplitude(tmp_path, capsys):
    """Noise-free tilt series: the map's scale against the truth is right only with the amplitude modelled."""
    out = tmp_path / "et"
    assert main(["simulate", "--pdb", str(example_path(ADK_CLOSED)), "--states", "1", "--box", "24", "--apix", "4",
                 "-n", "40", "--snr", "1000", "--tilt-series", "--tilt-step", "10", "--dose-per-tilt", "1",
                 "-o", str(out)]) == 0
    truth, _ = read_map(out / "truth_vols/vol_000.mrc")
    scale = {}
    for weighting in ("auto", "none"):
        assert main(["backproject", str(out / "particles.star"), "--tilt-series", "--tilt-weighting", weighting,
                     "-o", str(tmp_path / weighting)]) == 0
        volume, _ = read_map(tmp_path / weighting / "volume.mrc")
        scale[weighting] = float((volume * truth).sum() / (truth * truth).sum())
    printed = capsys.readouterr().out
    assert "amplitude scale _rlnCtfScalefactor" in printed and "amplitude scale none" in printed
    assert scale["auto"] > scale["none"] + 0.1, scale  # measured 0.843 against 0.682


def test_training_on_tilt_images_weighs_their_exposure(series, tmp_path):
    """train-nn on tilt images as single particles: the forward model damps each by its exposure."""
    import json

    out = series
    auc = {}
    for flag in ("", "--tilt-series"):
        run = tmp_path / f"nn{flag}"
        assert main(["train-nn", str(out / "particles.star"), "-o", str(run), "-n", "3", "--dec-dim", "64",
                     "--dec-layers", "2", "-b", "16", "--lr", "3e-3"] + ([flag] if flag else [])) == 0
        config = json.loads((run / "config.json").read_text())
        assert config["data_exposure_weighted"] == bool(flag)
        assert config["data_tilt_amplitude"] == ("_rlnCtfScalefactor" if flag else "")
        auc[flag] = _truth_auc(series, run / "volume.mrc")
    assert auc["--tilt-series"] > auc[""] + 0.015  # measured 0.426 against 0.389


def test_premultiplied_images_are_modelled_not_multiplied_again(series, tmp_path, capsys):
    """Stacks extracted premultiplied (RELION 5's and WarpTools' default): backprojection and training model
    them; jobs that would apply the CTF again refuse them."""
    import json

    premultiplied = tmp_path / "premultiplied"
    assert main(["simulate", "--pdb", str(example_path(ADK_CLOSED)), "--states", "1", "--box", "32", "--apix", "2",
                 "-n", "100", "--snr", "0.05", "--tilt-series", "--tilt-step", "6", "--dose-per-tilt", "5",
                 "--premultiply", "-o", str(premultiplied)]) == 0
    star = premultiplied / "particles.star"
    assert read_particles(star, tilt_series=True).tilts.ctf_premultiplied
    capsys.readouterr()
    assert main(["info", str(star), "--tilt-series"]) == 0
    assert "images multiplied by their CTF when extracted" in capsys.readouterr().out
    assert not read_particles(series / "particles.star", tilt_series=True).tilts.ctf_premultiplied
    auc = {}
    for name, data in (("raw", series), ("premultiplied", premultiplied)):
        assert main(["backproject", str(data / "particles.star"), "--tilt-series", "-o", str(tmp_path / name)]) == 0
        auc[name] = _truth_auc(series, tmp_path / name / "volume.mrc")
    assert auc["premultiplied"] > auc["raw"] - 0.01, auc  # measured 0.6715 both: the same sums
    run = tmp_path / "nn"
    assert main(["train-nn", str(star), "--tilt-series", "-o", str(run), "-n", "3", "--dec-dim", "64",
                 "--dec-layers", "2", "-b", "16", "--lr", "3e-3"]) == 0
    assert json.loads((run / "config.json").read_text())["data_exposure_weighted"]
    assert _truth_auc(series, run / "volume.mrc") > 0.40  # measured 0.425; 0.426 from the raw images (test above)
    capsys.readouterr()
    assert main(["phase-flip", str(star), "--tilt-series", "-o", str(tmp_path / "flipped.mrcs")]) == 2
    assert "multiplied by their CTF" in capsys.readouterr().err
