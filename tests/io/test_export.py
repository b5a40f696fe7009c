import numpy as np
import pandas as pd
import pytest

from cryofield.io import export_stack, read_particles, read_star, write_particles
from cryofield.io._atomic import atomic_outputs


def _same_metadata(a, b, rows=None):
    rows = np.arange(a.n) if rows is None else rows
    np.testing.assert_array_equal(a.pixel_size_angstrom[rows], b.pixel_size_angstrom)
    if a.rotations_or_none is not None:
        np.testing.assert_allclose(a.rotations[rows], b.rotations, atol=1e-12)
    if a.shifts_angstrom is not None:
        np.testing.assert_array_equal(a.shifts_angstrom[rows], b.shifts_angstrom)
    if a.ctf is not None:
        np.testing.assert_array_equal(a.ctf.to_numpy()[rows], b.ctf.to_numpy())


@pytest.mark.filterwarnings("ignore:.*_rlnAmplitudeContrast")
@pytest.mark.parametrize("name", ["relion/relion31.star", "relion/relion31_6opticsgroups.star",
                                  "relion/relion5.star", "relion/relion30_PfCRT.star",
                                  "empiar10076/empiar_10076_7.star"])
def test_star_subset_keeps_layout_and_columns(data, tmp_path, name):
    table = read_particles(data / name)
    rows = np.arange(0, table.n, 2)
    write_particles(table.subset(rows), tmp_path / "sub.star")
    original, written = read_star(data / name), read_star(tmp_path / "sub.star")
    assert list(original) == list(written)  # 3.0 in, 3.0 out; optics kept
    for block in original:
        if block == table.record.particles_block:
            expected = original[block].table.iloc[rows].reset_index(drop=True)
            pd.testing.assert_frame_equal(written[block].table, expected, check_exact=True)
        else:
            pd.testing.assert_frame_equal(written[block].table, original[block].table, check_exact=True)
    # image names are kept as written (relative to the project), so point at the original folder
    _same_metadata(table, read_particles(tmp_path / "sub.star", datadir=(data / name).parent), rows)


def test_cs_subset_keeps_every_field(data, tmp_path):
    table = read_particles(data / "cryosparc/cryosparc_P12_J24_001_particles.cs")
    rows = np.array([3, 10, 2000])
    write_particles(table.subset(rows), tmp_path / "sub.cs")
    original = np.load(data / "cryosparc/cryosparc_P12_J24_001_particles.cs")
    written = np.load(tmp_path / "sub.cs")
    assert written.dtype == original.dtype
    np.testing.assert_array_equal(written, original[rows])
    _same_metadata(table, read_particles(tmp_path / "sub.cs"), rows)


def test_stack_and_fresh_star_from_cs(data, tmp_path):
    table = read_particles(data / "empiar10076/empiar_10076_7.cs").subset(np.array([1, 4, 6]))
    new = export_stack(table, tmp_path / "out.mrcs", tmp_path / "out.star")
    again = read_particles(tmp_path / "out.star")
    np.testing.assert_array_equal(again.images(), table.images())
    assert again.refs.stack_names == ("out.mrcs",)
    np.testing.assert_allclose(again.ctf_array(), table.ctf_array(), rtol=1e-12)
    np.testing.assert_allclose(again.pixel_size_angstrom, new.pixel_size_angstrom)


def test_fresh_star_round_trip_of_poses(data, tmp_path):
    table = read_particles(data / "cryosparc/cryosparc_P12_J24_001_particles.cs")
    from cryofield.io.export import _fresh_star_blocks
    from cryofield.io.star import write_star

    write_star(tmp_path / "p.star", _fresh_star_blocks(table))
    again = read_particles(tmp_path / "p.star")
    np.testing.assert_allclose(again.rotations, table.rotations, atol=1e-10)
    np.testing.assert_allclose(again.shifts_px, table.shifts_px, atol=1e-10)
    np.testing.assert_allclose(again.ctf_array(), table.ctf_array(), rtol=1e-12)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_outputs(tmp_path / "a.mrcs", tmp_path / "a.star") as temps:
        temps[0].write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
