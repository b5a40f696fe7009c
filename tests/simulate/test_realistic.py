"""`simulate` as real data look: junk, pose errors, micrographs, float16, and `evaluate` of a selection (issue 24)."""

import json

import mrcfile
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryofield.cli.main import main
from cryofield.io import read_particles, read_star


@pytest.fixture(scope="module")
def realistic(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("realistic") / "sim"
    assert main(["simulate", "--volume", str(data / "maps/hand-vol.mrc"), "-n", "400", "--snr", "0.05",
                 "--snr-radius", "20", "--shift-px", "2", "--ctf-from", str(data / "relion/relion31.star"),
                 "--junk", "0.25", "--pose-error", "2", "--shift-error", "0.5", "--micrographs", "8", "--float16",
                 "--seed", "3", "-o", str(out)]) == 0
    return out


def test_the_recipe_writes_what_it_says(realistic):
    truth = np.load(realistic / "truth.npz")
    table = read_particles(realistic / "particles.star")
    assert table.n == 400 and table.box_size == 64
    junk = truth["junk_kind"] > 0
    assert junk.sum() == 100 and (truth["state"][junk] == -1).all() and np.isnan(truth["coordinates"][junk]).all()
    assert set(truth["junk_kind"][junk]) == {1, 2, 3, 4} and list(truth["junk_kinds"]) == ["ice", "aggregate",
                                                                                           "other", "broken"]
    # poses in the metadata are 2 degrees (RMS) from the truth, shifts 0.5 px per axis
    errors = np.degrees(Rotation.from_matrix(np.swapaxes(truth["rotations"], 1, 2) @ table.rotations).magnitude())
    assert np.sqrt(np.mean(errors**2)) == pytest.approx(2.0, rel=0.15)
    assert np.std(table.shifts_px - truth["shifts_px"]) == pytest.approx(0.5, rel=0.15)
    # 8 micrographs, a stack each, float16; one defocus per micrograph up to the ice height
    stacks = sorted((realistic / "Particles").glob("mic_*.mrcs"))
    assert len(stacks) == 8 and all(mrcfile.open(s, header_only=True).header.mode == 12 for s in stacks)
    particles = read_star(realistic / "particles.star")["particles"].table
    assert particles["rlnMicrographName"].nunique() == 8
    defocus = table.ctf["defocus_u_angstrom"].to_numpy()
    mean_of_micrograph = np.array([defocus[truth["micrograph"] == m].mean() for m in range(8)])
    assert np.std(defocus - mean_of_micrograph[truth["micrograph"]]) == pytest.approx(100, rel=0.2)  # the ice
    # empty ice is noise alone: less variance than a particle image at the same noise
    images = table.images(np.arange(400))
    ice, particle = truth["junk_kind"] == 1, truth["junk_kind"] == 0
    assert images[ice].var() < images[particle].var()


def test_evaluate_scores_a_selection_against_the_junk(realistic, tmp_path, capsys):
    truth = np.load(realistic / "truth.npz")
    assert main(["train-nn", str(realistic / "particles.star"), "-o", str(tmp_path / "run"), "-n", "1",
                 "--dec-dim", "16", "--dec-layers", "1", "-b", "32"]) == 0
    junk = np.flatnonzero(truth["junk_kind"] > 0)
    removed = np.concatenate([junk[:80], np.flatnonzero(truth["junk_kind"] == 0)[:20]])  # 80 of 100 junk, 20 good
    np.savetxt(tmp_path / "kept.txt", np.setdiff1d(np.arange(400), removed), fmt="%d")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--truth", str(realistic), "--images", "10", "--selection",
                 str(tmp_path / "kept.txt"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["junk"]["precision"] == pytest.approx(0.8) and scores["junk"]["recall"] == pytest.approx(0.8)
    assert scores["junk"]["junk_kept_fraction"] == pytest.approx(20 / 300)
    assert set(scores["junk"]["recall_by_kind"]) == {"ice", "aggregate", "other", "broken"}
    assert scores["images_scored"] == 10  # particles only


@pytest.mark.parametrize("flags, message", [(["--junk", "1.5"], "junk fraction must be in [0, 1)"),
                                            (["--junk", "0.1", "--junk-kinds", "ice,dust"], "junk kinds are"),
                                            (["--micrographs", "4", "--tilt-pairs"], "cannot be used together")])
def test_bad_recipes_are_one_line(data, tmp_path, capsys, flags, message):
    assert main(["simulate", "--volume", str(data / "maps/hand-vol.mrc"), "-n", "10", "-o", str(tmp_path / "s"),
                 *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "s").exists()
