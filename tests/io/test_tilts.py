"""Tilt series read from per-tilt-image STAR files: grouping, exposure, tilt, per-particle selection."""

import json

import numpy as np
import pytest

from cryofield.cli.main import main
from cryofield.errors import InputError
from cryofield.io import read_particles, read_star, write_mrc

TILTS = "tilt/sta_testing_bin8.star"


def test_warp_tilt_series_are_grouped_into_particles(data):
    table = read_particles(data / TILTS, tilt_series=True)
    tilts = table.tilts
    assert table.n == 219 and tilts.n_particles == 6
    assert tilts.counts().tolist() == [39, 39, 39, 39, 39, 24]
    assert tilts.names[0].endswith("_bin8_0000000") and tilts.particle[38] == 0 and tilts.particle[39] == 1
    # Warp writes B = -4 x exposure: 3.25 e/A^2 per tilt, the first tilt's own included
    np.testing.assert_allclose(tilts.exposure[:39], 3.25 * np.arange(1, 40))
    assert tilts.exposure_source.startswith("-_rlnCtfBfactor")
    # the scale factor is cos(tilt): 0, 3, 3, 6, 6, ... degrees (dose-symmetric), 60 last
    np.testing.assert_allclose(tilts.tilt_deg[[0, 1, 2, 3, 38]], [0, 3, 3, 6, 60], atol=0.1)
    assert read_particles(data / TILTS).tilts is None  # single particles unless asked


def test_a_selection_of_particles_keeps_every_tilt_image(data):
    table = read_particles(data / TILTS, tilt_series=True)
    chosen = table.subset_particles(np.array([5, 1]))  # in table order, whatever the order asked
    assert chosen.n == 63 and chosen.tilts.names == (table.tilts.names[1], table.tilts.names[5])
    assert chosen.tilts.counts().tolist() == [39, 24] and chosen.tilts.particle[39] == 1
    np.testing.assert_array_equal(chosen.record.rows, np.r_[39:78, 195:219])
    np.testing.assert_allclose(chosen.tilts.exposure[39:], table.tilts.exposure[195:])
    with pytest.raises(InputError, match=r"particle indices must lie in \[0, 6\)"):
        table.subset_particles(np.array([6]))
    with pytest.raises(InputError, match="not read as tilt series"):
        read_particles(data / TILTS).subset_particles(np.array([0]))


def _tilt_star(path, names, stacks="s.mrcs", extra=None):
    """A per-tilt STAR file with RELION 5's exposure and stage-tilt columns, one row per name."""
    columns = {"rlnImageName": [f"{i + 1}@{stacks}" for i in range(len(names))], "rlnTomoParticleName": names,
               "rlnMicrographPreExposure": [3.0 * i for i in range(len(names))],
               "rlnTomoNominalStageTiltAngle": [(-3.0) ** (i % 2) * i for i in range(len(names))]}
    columns |= extra or {}
    lines = ["data_particles", "loop_"] + [f"_{c} #{i + 1}" for i, c in enumerate(columns)]
    lines += [" ".join(str(v[row]) for v in columns.values()) for row in range(len(names))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_relion_columns_give_the_exposure_and_a_signed_tilt(tmp_path):
    write_mrc(tmp_path / "s.mrcs", np.zeros((5, 8, 8), np.float32), 2.0)
    table = read_particles(_tilt_star(tmp_path / "t.star", ["a/1", "a/1", "a/1", "b/2", "b/2"]), tilt_series=True)
    assert table.tilts.names == ("a/1", "b/2") and table.tilts.exposure_source == "_rlnMicrographPreExposure"
    np.testing.assert_allclose(table.tilts.exposure, [0, 3, 6, 9, 12])
    np.testing.assert_allclose(table.tilts.tilt_deg, [0, -3, 2, -9, 4])
    assert table.tilts.tilt_source == "_rlnTomoNominalStageTiltAngle"


@pytest.mark.parametrize("names, message", [
    (["a", "a", "b", "a"], r"row 4: particle 'a' \(_rlnTomoParticleName\) resumes after other particles' rows"),
])
def test_interleaved_particles_are_refused_by_row(tmp_path, names, message):
    with pytest.raises(InputError, match=message):
        read_particles(_tilt_star(tmp_path / "t.star", names), tilt_series=True)


def test_layouts_that_are_not_per_tilt_star_files_are_refused(data, tmp_path):
    relion5 = data / "tomo/relion5"
    with pytest.raises(InputError, match="RELION 5 tomography particle set: read it through its optimisation set"):
        read_particles(relion5 / "particles_sub25.star")
    table = read_particles(relion5 / "particles_sub25.star", tomograms=relion5 / "Polish/job070/tomograms.star")
    assert (table.n, table.tilts.n_particles) == (25 * 17, 25)
    write_mrc(tmp_path / "s.mrcs", np.zeros((2, 8, 8), np.float32), 2.0)
    with pytest.raises(InputError, match="from a .star file"):
        read_particles(tmp_path / "s.mrcs", tilt_series=True)
    plain = tmp_path / "plain.star"
    plain.write_text("data_\nloop_\n_rlnImageName #1\n1@s.mrcs\n2@s.mrcs\n")
    with pytest.raises(InputError, match="no _rlnTomoParticleName or _rlnGroupName column"):
        read_particles(plain, tilt_series=True)


def test_info_and_select_on_tilt_series(data, tmp_path, capsys):
    assert main(["info", str(data / TILTS)]) == 0
    assert "6 groups of 24-39 rows): if they are tilt images, pass --tilt-series" in capsys.readouterr().out
    assert main(["info", str(data / TILTS), "--tilt-series"]) == 0
    out = capsys.readouterr().out
    assert "6 particles in 219 tilt images, 24-39 per particle (median 39)" in out
    assert "3.25 .. 126.8 e/A^2" in out and "0 .. 60 deg" in out
    (tmp_path / "keep.txt").write_text("1\n5\n")
    out_star = tmp_path / "kept.star"
    assert main(["select", str(data / TILTS), "--tilt-series", "--ind", str(tmp_path / "keep.txt"),
                 "-o", str(out_star)]) == 0
    assert "wrote 2 of 6 particles (63 tilt images)" in capsys.readouterr().out
    rows = read_star(out_star)[""].table
    original = read_star(data / TILTS)[""].table
    assert list(rows.columns) == list(original.columns)  # every column, every tilt row of the two
    assert (rows["rlnImageName"].to_numpy() == original["rlnImageName"].to_numpy()[np.r_[39:78, 195:219]]).all()
    assert main(["select", str(data / TILTS), "--tilt-series", "--exclude", str(tmp_path / "keep.txt"),
                 "-o", str(tmp_path / "rest.mrcs"), "--datadir", str(data / "tilt")]) == 0
    rest = read_particles(tmp_path / "rest.star", tilt_series=True)
    assert rest.tilts.counts().tolist() == [39, 39, 39, 39] and rest.check_images() == 64
    (tmp_path / "bad.txt").write_text("6\n")
    assert main(["select", str(data / TILTS), "--tilt-series", "--ind", str(tmp_path / "bad.txt"),
                 "-o", str(tmp_path / "x.star")]) == 2
    assert not (tmp_path / "x.star").exists()


def test_train_vae_runs_on_real_tilt_series(data, tmp_path):
    """The real Warp tilt series train: one latent per ribosome, its exposure and tilt weights from the file."""
    run = tmp_path / "vae"
    assert main(["train-vae", str(data / TILTS), "--tilt-series", "--datadir", str(data / "tilt"), "-o", str(run),
                 "-n", "1", "--zdim", "2", "--ntilts", "10", "--enc-dim", "16", "--dec-dim", "16", "--enc-layers", "1",
                 "--dec-layers", "1", "--tilt-emb-dim", "8", "-b", "2"]) == 0
    z = np.load(run / "z.npy")
    assert z.shape == (6, 2) and np.isfinite(z).all()
    config = json.loads((run / "config.json").read_text())
    assert config["data_exposure_weighted"] and config["data_tilt_amplitude"] == "_rlnCtfScalefactor"
