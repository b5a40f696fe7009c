import mrcfile
import numpy as np
import pytest

from cryofield.errors import InputError
from cryofield.io import read_atomic_model, read_map, read_particles, write_map


@pytest.mark.parametrize("name,shape,apix", [("hand-vol.mrc", (64, 64, 64), 1.0), ("EMD-3197.map", (20, 20, 20), 11.4),
                                             ("spike-vol.mrc", (128, 16, 16), 8.0),
                                             ("50S-vol-float16.mrc", (128, 32, 32), 4.0)])
def test_every_shared_map(data, name, shape, apix):
    volume, pixel = read_map(data / "maps" / name)
    assert volume.shape == shape and volume.dtype == np.float32
    assert pixel == pytest.approx(apix)
    np.testing.assert_array_equal(volume, mrcfile.read(data / "maps" / name))  # all stored x, y, z


def test_axis_order_and_float16_round_trip(tmp_path, rng):
    volume = rng.normal(size=(6, 7, 8)).astype(np.float32)
    write_map(tmp_path / "v.mrc", volume, 1.25)
    back, apix = read_map(tmp_path / "v.mrc")
    np.testing.assert_array_equal(back, volume)
    assert apix == 1.25
    with mrcfile.new(tmp_path / "zyx.mrc", data=np.ascontiguousarray(volume.transpose(2, 1, 0))) as mrc:
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1  # columns are z, sections are x
    np.testing.assert_array_equal(read_map(tmp_path / "zyx.mrc")[0], volume)
    with mrcfile.new(tmp_path / "h.mrc", data=volume.astype(np.float16)) as mrc:
        mrc.voxel_size = 2.0
    assert int(mrcfile.open(tmp_path / "h.mrc", header_only=True).header.mode) == 12
    np.testing.assert_array_equal(read_map(tmp_path / "h.mrc")[0], volume.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("name,chains,residues", [("1ake_closed.pdb", {"A"}, 214),
                                                  ("4ake_open_chainA_aligned.pdb", {"A"}, 214)])
def test_adenylate_kinase_models(data, name, chains, residues):
    model = read_atomic_model(data / "pdb" / name)
    assert set(model.chain) == chains
    calpha = model.select((model.atom_name == "CA") & (model.chain == "A"))
    assert len(calpha) == residues
    assert "HOH" not in set(model.residue_name)
    assert np.all(np.isfinite(model.coords_angstrom))


def test_open_and_closed_are_superposed_but_different(data):
    closed = read_atomic_model(data / "pdb/1ake_closed.pdb")
    opened = read_atomic_model(data / "pdb/4ake_open_chainA_aligned.pdb")

    def ca(m):
        return m.select((m.atom_name == "CA") & (m.chain == "A")).coords_angstrom

    rmsd = np.sqrt(((ca(closed) - ca(opened)) ** 2).sum(1).mean())
    assert 3.0 < rmsd < 15.0  # the LID and NMP domains close over ~7 A


def test_bad_atomic_model(tmp_path):
    (tmp_path / "x.pdb").write_text("not a pdb\n")
    with pytest.raises(InputError, match="x.pdb"):
        read_atomic_model(tmp_path / "x.pdb")


def test_tilt_series_particles(data):
    table = read_particles(data / "tilt/sta_testing_bin8.star")
    assert table.n == 219 and table.pixel_size_angstrom[0] == pytest.approx(1.96)
    assert table.check_images() == 64
    assert table.images(np.arange(0, 219, 50)).shape == (5, 64, 64)
