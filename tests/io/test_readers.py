import pickle
import shutil

import numpy as np
import pytest

from cryofield.errors import InputError
from cryofield.io import load_legacy_pickle, read_particles


def test_relion5_images_in_another_folder(data):
    star = data / "relion/relion5.star"
    with pytest.raises(InputError, match="relion5.star: row 1: image stack .* not found.*--datadir"):
        read_particles(star).images([0])
    table = read_particles(star, datadir=data / "relion/toy_datadir")
    images = table.images()
    assert images.shape[0] == 17 and images.dtype == np.float32
    assert len(table.refs.stack_names) == 2


def test_stack_found_by_base_name_in_datadir(data, tmp_path, write_stack):
    write_stack(tmp_path / "parts.mrcs", np.arange(3 * 16).reshape(3, 4, 4))
    star = tmp_path / "meta" / "p.star"
    star.parent.mkdir()
    star.write_text("data_\nloop_\n_rlnImageName\n_rlnImagePixelSize\n"
                    "2@Extract/job9/parts.mrcs 1.5\n3@Extract/job9/parts.mrcs 1.5\n")
    table = read_particles(star, datadir=tmp_path)
    np.testing.assert_array_equal(table.images(), np.arange(3 * 16).reshape(3, 4, 4)[[1, 2]])


def test_relion31_images_next_to_star(data):
    table = read_particles(data / "relion/relion31.star")
    assert table.images([4, 0]).shape == (2, 256, 256)
    np.testing.assert_array_equal(table.images([4, 0]), table.images()[[4, 0]])


def test_txt_list_of_stacks(tmp_path, write_stack, rng):
    a, b = rng.normal(size=(3, 8, 8)), rng.normal(size=(2, 8, 8))
    write_stack(tmp_path / "a.mrcs", a, apix=2.0)
    (tmp_path / "sub").mkdir()
    write_stack(tmp_path / "sub/b.mrcs", b, apix=2.0)
    (tmp_path / "list.txt").write_text("a.mrcs\nsub/b.mrcs\n\n")
    table = read_particles(tmp_path / "list.txt")
    assert table.n == 5 and table.pixel_size_angstrom[0] == 2.0
    np.testing.assert_allclose(table.images(), np.concatenate([a, b]), rtol=1e-6)
    (tmp_path / "bad.txt").write_text("a.mrcs\nsub/missing.mrcs\n")
    with pytest.raises(InputError, match="bad.txt: row 2: image stack sub/missing.mrcs not found"):
        read_particles(tmp_path / "bad.txt")


def test_cryosparc_blob_path_with_leading_marker_and_zero_rows(data, tmp_path):
    cs = np.load(data / "empiar10076/empiar_10076_7.cs")
    marked = cs.copy().astype([(n, ("S80" if n == "blob/path" else cs.dtype[n])) for n in cs.dtype.names])
    marked["blob/path"] = [b">" + p for p in cs["blob/path"]]
    shutil.copy(data / "empiar10076/empiar_10076_7.mrc", tmp_path)
    with open(tmp_path / "marked.cs", "wb") as fh:
        np.save(fh, marked)
    table = read_particles(tmp_path / "marked.cs")
    assert table.refs.stack_names == ("empiar_10076_7.mrc",)
    assert table.images([6]).shape == (1, 320, 320)
    with open(tmp_path / "empty.cs", "wb") as fh:
        np.save(fh, cs[:0])
    empty = read_particles(tmp_path / "empty.cs")
    assert empty.n == 0 and empty.ctf_array().shape == (0, 9)


def test_legacy_pickles_with_stack(data):
    parts = data / "particles"
    table = read_particles(parts / "toy_projections.mrcs", poses=parts / "toy_rot_trans_legacy.pkl",
                           ctf=parts / "ctf_legacy_1000.pkl")
    rot, trans = load_legacy_pickle(parts / "toy_rot_trans_legacy.pkl")
    np.testing.assert_allclose(table.rotations, rot, atol=1e-7)
    np.testing.assert_allclose(table.shifts_px, trans * 30, atol=1e-6)
    np.testing.assert_allclose(table.ctf_array(), load_legacy_pickle(parts / "ctf_legacy_1000.pkl"), rtol=1e-6)
    hand = read_particles(parts / "hand.mrcs", poses=parts / "hand_rot_legacy.pkl")
    assert hand.rotations.shape == (100, 3, 3) and np.all(hand.shifts_px == 0)


def test_counts_that_disagree(data):
    parts = data / "particles"
    with pytest.raises(InputError, match="ctf_legacy_1000.pkl: CTF for 1000 particles, but the images hold 100"):
        read_particles(parts / "hand.mrcs", ctf=parts / "ctf_legacy_1000.pkl")
    with pytest.raises(InputError, match="toy_rot_trans_legacy.pkl: 1000 poses for 100 particles"):
        read_particles(parts / "hand.mrcs", poses=parts / "toy_rot_trans_legacy.pkl")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("payload", [_Evil(), {"rot": np.eye(3)}, (np.eye(3), _Evil())])
def test_unsafe_pickles_are_refused(tmp_path, payload, capsys):
    path = tmp_path / "poses.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(InputError, match="poses.pkl"):
        load_legacy_pickle(path)
    assert "pwned" not in capsys.readouterr().out


def test_separate_star_poses_and_ctf(data, tmp_path):
    star = data / "empiar10076/empiar_10076_7.star"
    stack = read_particles(data / "empiar10076/empiar_10076_7.mrc", ctf=star)
    np.testing.assert_allclose(stack.ctf_array(), read_particles(star).ctf_array())


def test_index_past_end_of_stack(data, tmp_path, write_stack):
    write_stack(tmp_path / "s.mrcs", np.zeros((2, 4, 4)))
    (tmp_path / "p.star").write_text("data_\nloop_\n_rlnImageName\n_rlnImagePixelSize\n"
                                     "1@s.mrcs 1\n3@s.mrcs 1\n")
    table = read_particles(tmp_path / "p.star")
    with pytest.raises(InputError, match=r"p.star: row 2: image 3@s.mrcs is past the end .*\(2 images\)"):
        table.refs.validate()
    with pytest.raises(InputError, match="row 2"):
        table.images()


def test_unknown_extension_and_missing_file(tmp_path):
    (tmp_path / "x.hdf").write_text("")
    with pytest.raises(InputError, match="unknown extension '.hdf'"):
        read_particles(tmp_path / "x.hdf")
    with pytest.raises(InputError, match="nope.star: file not found"):
        read_particles(tmp_path / "nope.star")


def test_missing_pixel_size_asks_for_apix(tmp_path, write_stack):
    write_stack(tmp_path / "s.mrcs", np.zeros((2, 4, 4)), apix=None)
    with pytest.raises(InputError, match="pass --apix"):
        read_particles(tmp_path / "s.mrcs")
    assert read_particles(tmp_path / "s.mrcs", apix=1.2).pixel_size_angstrom.tolist() == [1.2, 1.2]


@pytest.mark.filterwarnings("ignore:.*_rlnAmplitudeContrast")
def test_bad_values_are_named_by_row(tmp_path):
    (tmp_path / "p.star").write_text("data_\nloop_\n_rlnImageName\n_rlnImagePixelSize\n_rlnDefocusU\n"
                                     "_rlnVoltage\n_rlnSphericalAberration\n"
                                     "1@s.mrcs 1 10000 300 2.7\n2@s.mrcs 1 oops 300 2.7\n")
    with pytest.raises(InputError, match="row 2: _rlnDefocusU is 'oops'"):
        read_particles(tmp_path / "p.star")
    (tmp_path / "q.star").write_text("data_\nloop_\n_rlnImageName\n_rlnImagePixelSize\nabc@s.mrcs 1\n")
    with pytest.raises(InputError, match="row 1: image name 'abc@s.mrcs'"):
        read_particles(tmp_path / "q.star")


def test_missing_optics_group(data, tmp_path):
    text = (data / "relion/relion31.star").read_text().replace(
        "000002@relion31.mrcs            1", "000002@relion31.mrcs            7")
    (tmp_path / "p.star").write_text(text)
    with pytest.raises(InputError, match="row 2 of data_particles: optics group 7 is not in data_optics"):
        read_particles(tmp_path / "p.star")


def test_many_optics_groups_merged_per_particle(data):
    table = read_particles(data / "relion/relion31_6opticsgroups.star")
    assert sorted(np.unique(table.optics_group)) == [1, 2, 3, 4, 5, 6]
    # group 4 has Cs 2.6 and group 2 pixel size 1.24 in the optics table
    assert set(table.ctf["cs_mm"][table.optics_group == 4]) == {2.6}
    assert set(table.pixel_size_angstrom[table.optics_group == 2]) == {1.24}
