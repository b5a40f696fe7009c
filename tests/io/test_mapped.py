"""Arrays and particle tables in files mapped into memory (cryofield.io.mapped)."""

import gc
import tempfile
from pathlib import Path

import numpy as np

from cryofield.io import read_particles
from cryofield.io.mapped import is_mapped_array, mapped_array
from cryofield.simulate.toy import make_toy_dataset


def test_mapped_array_copies_values_into_a_writable_mapping():
    values = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    with tempfile.TemporaryDirectory() as folder:  # a scratch folder, as TMPDIR (not a test's output folder)
        mapped = mapped_array(values, folder)
        assert list(Path(folder).iterdir()) == []  # unlinked at once: nothing left behind
    assert is_mapped_array(mapped) and not is_mapped_array(values)
    assert mapped.dtype == values.dtype and np.array_equal(mapped, values)
    mapped[1] = -1  # writable, and apart from the original
    assert values[1, 0, 0] == 12 and mapped[1, 0, 0] == -1
    view = mapped[:, 1]
    del mapped
    gc.collect()
    assert is_mapped_array(view) and view[0, 0] == 4  # a view keeps the mapping alive
    empty = mapped_array(np.zeros((0, 3)))
    assert empty.shape == (0, 3) and not is_mapped_array(empty)


def test_a_table_in_mapped_files_holds_the_same_particles(tmp_path):
    star = make_toy_dataset(tmp_path / "toy", n=30, box=16, apix=4.0, snr=10, seed=3)["star"]
    table = read_particles(star)
    mapped = table.in_mapped_files()
    for name in ("rotations", "shifts_px", "pixel_size_angstrom", "optics_group"):
        assert is_mapped_array(getattr(mapped, name)) or name == "shifts_px", name  # shifts_px is computed
        assert np.array_equal(getattr(mapped, name), getattr(table, name)), name
    assert is_mapped_array(mapped.ctf.to_numpy()) and mapped.ctf.equals(table.ctf)
    assert is_mapped_array(mapped.refs.image_index) and np.array_equal(mapped.refs.image_index, table.refs.image_index)
    rows = np.array([4, 0, 17])
    assert np.array_equal(mapped.subset(rows).images(), table.subset(rows).images())
