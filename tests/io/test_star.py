import numpy as np
import pandas as pd
import pytest

from cryofield.errors import InputError
from cryofield.io import StarBlock, read_star, write_star

STARS = ["relion/relion31.star", "relion/relion31_6opticsgroups.star", "relion/relion5.star",
         "relion/relion30_PfCRT.star", "empiar10076/empiar_10076_7.star", "tilt/sta_testing_bin8.star"]


def assert_blocks_equal(a, b):
    assert list(a) == list(b)
    for name in a:
        assert a[name].pairs == b[name].pairs
        if a[name].table is None:
            assert b[name].table is None
            continue
        pd.testing.assert_frame_equal(a[name].table, b[name].table, check_exact=True)


@pytest.mark.parametrize("name", STARS)
def test_round_trip_changes_no_value(data, tmp_path, name):
    blocks = read_star(data / name)
    write_star(tmp_path / "out.star", blocks)
    assert_blocks_equal(blocks, read_star(tmp_path / "out.star"))


def test_relion31_blocks_and_types(data):
    blocks = read_star(data / "relion/relion31.star")
    assert list(blocks) == ["optics", "particles"]
    particles = blocks["particles"].table
    assert particles.shape == (5, 26)
    assert particles["rlnDefocusU"].dtype == np.float64
    assert particles["rlnClassNumber"].dtype == np.int64
    assert particles["rlnImageName"].iloc[0] == "000001@relion31.mrcs"
    assert blocks["optics"].comments == ["# version 30001"]


def test_floats_with_many_digits_survive(tmp_path):
    values = np.array([1e-7, 0.1, 1 / 3, 123456.7890123456, -2.5e12])
    write_star(tmp_path / "a.star", {"p": StarBlock("p", pd.DataFrame({"rlnX": values}))})
    np.testing.assert_array_equal(read_star(tmp_path / "a.star")["p"].table["rlnX"].to_numpy(), values)


def test_key_value_blocks_quotes_and_empty_loops(tmp_path):
    text = """
data_general
_rlnTomoName   TS_01
_rlnTomoHand  -1

data_particles
loop_
_rlnImageName
_rlnMicrographName
_rlnDefocusU
1@a.mrcs "name with spaces.mrc" 10000.5
2@a.mrcs plain.mrc 12000

data_empty
loop_
_rlnX
"""
    (tmp_path / "x.star").write_text(text)
    blocks = read_star(tmp_path / "x.star")
    assert blocks["general"].pairs == {"rlnTomoName": "TS_01", "rlnTomoHand": "-1"}
    assert blocks["particles"].table["rlnMicrographName"].tolist() == ["name with spaces.mrc", "plain.mrc"]
    assert len(blocks["empty"].table) == 0
    write_star(tmp_path / "y.star", blocks)
    assert_blocks_equal(blocks, read_star(tmp_path / "y.star"))


@pytest.mark.parametrize("row", ["1@a.mrcs 2 3 4", "1@a.mrcs 2"])
def test_rows_with_wrong_number_of_values(tmp_path, row):
    (tmp_path / "bad.star").write_text(f"data_particles\nloop_\n_rlnImageName\n_rlnA\n_rlnB\n"
                                       f"1@a.mrcs 1 2\n{row}\n")
    with pytest.raises(InputError, match="bad.star"):
        read_star(tmp_path / "bad.star")


@pytest.mark.parametrize("text", ["", "just some text\n", "loop_\n_rlnX\n1\n"])
def test_not_a_star_file(tmp_path, text):
    (tmp_path / "bad.star").write_text(text)
    with pytest.raises(InputError, match="bad.star"):
        read_star(tmp_path / "bad.star")
