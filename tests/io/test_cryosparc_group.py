"""cryoSPARC result groups: passthrough fields read by uid, and a selection written back as .cs + .csg.

The written tables are also read by cryoSPARC's own data model (`cryosparc-tools`' `Dataset`):
cryoSPARC itself cannot run here, and its library reads and joins result tables as its "Import
Result Group" does (a result's own table joined with its passthrough tables by ``uid``).
"""

import numpy as np
import pytest
import yaml
from cryosparc.dataset import Dataset

from cryofield.errors import InputError
from cryofield.io import read_particles, write_particles

REAL = "cryosparc/cryosparc_P12_J24_001_particles.cs"


def _fields(table, keep):
    """The ``uid`` and the fields of results ``keep``, as a packed table (as cryoSPARC writes them)."""
    from numpy.lib.recfunctions import repack_fields

    return repack_fields(table[["uid", *[f for f in table.dtype.names if f.split("/")[0] in keep]]])


@pytest.fixture
def job(data, tmp_path):
    """A refinement job as cryoSPARC lays it out: its own fields (blob, alignments3D) in one table, the
    CTF passed through from an earlier job in another, in another order and with rows of other particles,
    and the result group naming both (the real table's fields split in two)."""
    real = np.load(data / REAL)
    own = _fields(real, {"blob", "alignments3D"})
    extra = real[:5].copy()
    extra["uid"] += 1  # particles this job dropped
    passed = _fields(np.concatenate([real[::-1], extra]), {"ctf"})
    for name, table in (("J24_particles.cs", own), ("J24_passthrough_particles.cs", passed)):
        with open(tmp_path / name, "wb") as fh:
            np.save(fh, table)
    results = [("blob", "J24_particles.cs"), ("alignments3D", "J24_particles.cs"),
               ("ctf", "J24_passthrough_particles.cs")]
    (tmp_path / "J24_particles.csg").write_text(
        "created: 2026-12-06 10:00:00.000000\ngroup:\n  description: refined particles\n  name: particles\n"
        "  title: Particles\n  type: particle\nresults:\n"
        + "".join(f"  {r}:\n    metafile: '>{f}'\n    num_items: {len(own)}\n    type: particle.{r}\n"
                  for r, f in results) + "version: v4.4.1\n")
    return real, tmp_path


def test_passthrough_fields_are_read_by_uid(job, data):
    real, folder = job
    reference = read_particles(data / REAL)
    for source in (folder / "J24_particles.cs", folder / "J24_particles.csg"):
        table = read_particles(source, datadir=data / "cryosparc")
        np.testing.assert_array_equal(table.ctf_array(), reference.ctf_array())  # the CTF came from the passthrough
        np.testing.assert_allclose(table.rotations, reference.rotations)


def test_selection_goes_back_as_a_result_group(job, data):
    real, folder = job
    table = read_particles(folder / "J24_particles.cs", datadir=data / "cryosparc")
    rows = np.array([7, 3, 1500, 2018])
    write_particles(table.subset(rows), folder / "kept.cs")
    own, passed = np.load(folder / "kept.cs"), np.load(folder / "kept_passthrough.cs")
    np.testing.assert_array_equal(own, np.load(folder / "J24_particles.cs")[rows])  # every field, uids kept
    np.testing.assert_array_equal(passed["uid"], real["uid"][rows])
    np.testing.assert_array_equal(passed["ctf/df1_A"], real["ctf/df1_A"][rows])
    group = yaml.safe_load((folder / "kept.csg").read_text())
    assert group["group"]["type"] == "particle"
    assert {name: r["metafile"] for name, r in group["results"].items()} == {
        "blob": ">kept.cs", "alignments3D": ">kept.cs", "ctf": ">kept_passthrough.cs"}
    assert all(r["num_items"] == 4 and r["type"] == f"particle.{name}" for name, r in group["results"].items())
    again = read_particles(folder / "kept.csg", datadir=data / "cryosparc")
    np.testing.assert_array_equal(again.ctf_array(), table.subset(rows).ctf_array())
    np.testing.assert_allclose(again.rotations, table.subset(rows).rotations)


def test_a_plain_cs_selection_gets_its_result_group(data, tmp_path):
    table = read_particles(data / REAL)
    write_particles(table.subset(np.arange(10)), tmp_path / "ten.cs")
    group = yaml.safe_load((tmp_path / "ten.csg").read_text())
    assert set(group["results"]) == {"blob", "ctf", "alignments3D"}
    assert {r["metafile"] for r in group["results"].values()} == {">ten.cs"}
    assert not (tmp_path / "ten_passthrough.cs").exists()


def test_a_passthrough_without_a_particle_is_one_line(job, data):
    real, folder = job
    passed = np.load(folder / "J24_passthrough_particles.cs")
    with open(folder / "J24_passthrough_particles.cs", "wb") as fh:
        np.save(fh, passed[passed["uid"] != real["uid"][11]])
    with pytest.raises(InputError, match=f"J24_passthrough_particles.cs.*uid {real['uid'][11]} \\(row 12"):
        read_particles(folder / "J24_particles.cs", datadir=data / "cryosparc")
    (folder / "broken.csg").write_text("results: [1, 2]\n")
    with pytest.raises(InputError, match="broken.csg.*no 'results'"):
        read_particles(folder / "broken.csg")


@pytest.mark.filterwarnings("ignore:.*_rlnAmplitudeContrast")
@pytest.mark.parametrize("name", ["relion/relion31.star", "empiar10076/empiar_10076_7.star"])
def test_star_particles_written_as_cryosparc_imports_them(data, tmp_path, name):
    """A STAR file's particles as a fresh .cs + .csg (RELION -> cryoSPARC): the same images, poses and CTF."""
    table = read_particles(data / name)
    write_particles(table, tmp_path / "from_star.cs")
    cs = np.load(tmp_path / "from_star.cs")
    assert len(np.unique(cs["uid"])) == table.n and cs["blob/sign"][0] == -1
    group = yaml.safe_load((tmp_path / "from_star.csg").read_text())
    assert set(group["results"]) >= {"blob", "ctf"}
    again = read_particles(tmp_path / "from_star.csg", datadir=(data / name).parent)  # stacks named as in the STAR
    np.testing.assert_array_equal(again.images(np.arange(min(3, table.n))), table.images(np.arange(min(3, table.n))))
    np.testing.assert_allclose(again.pixel_size_angstrom, table.pixel_size_angstrom, rtol=1e-6)
    np.testing.assert_allclose(again.ctf_array(), table.ctf_array(), rtol=1e-6, atol=1e-5)
    if table.rotations_or_none is not None:
        np.testing.assert_allclose(again.rotations, table.rotations, atol=1e-5)
        np.testing.assert_allclose(again.shifts_px, table.shifts_px, atol=1e-4)
    write_particles(table, tmp_path / "again.cs")
    np.testing.assert_array_equal(np.load(tmp_path / "again.cs"), cs)  # the same uids on a rerun


# cryoSPARC's data model

def _joined(own, *passthrough):
    return Dataset.load(own).innerjoin(*(Dataset.load(p) for p in passthrough))


def _same(a: Dataset, b: Dataset) -> None:
    assert sorted(a.fields()) == sorted(b.fields())
    for field in a.fields():
        assert a[field].dtype == b[field].dtype, field
        np.testing.assert_array_equal(a[field], b[field], err_msg=field)


def test_a_selection_imports_into_cryosparc_with_every_field_and_uid(job, data):
    real, folder = job
    table = read_particles(folder / "J24_particles.cs", datadir=data / "cryosparc")
    rows = np.array([7, 3, 1500, 2018])
    write_particles(table.subset(rows), folder / "kept.cs")
    ours = _joined(folder / "kept.cs", folder / "kept_passthrough.cs")
    theirs = _joined(folder / "J24_particles.cs", folder / "J24_passthrough_particles.cs")
    expected = theirs.query({"uid": real["uid"][rows]})
    assert len(ours) == len(rows) and set(ours["uid"]) == set(real["uid"][rows])
    order = np.argsort(ours["uid"])
    _same(ours.take(order), expected.take(np.argsort(expected["uid"])))
    _same(Dataset.load(folder / "kept.cs"), Dataset.load(folder / "J24_particles.cs").take(rows))  # row order kept


@pytest.mark.filterwarnings("ignore:.*_rlnAmplitudeContrast")
@pytest.mark.parametrize("name", ["relion/relion31.star", "empiar10076/empiar_10076_7.star"])
def test_star_particles_written_as_cs_have_cryosparcs_types(data, tmp_path, name):
    """Every field of a .cs made from a STAR file has the type cryoSPARC's own table gives it."""
    write_particles(read_particles(data / name), tmp_path / "from_star.cs")
    ours, reference = Dataset.load(tmp_path / "from_star.cs"), Dataset.load(data / REAL)
    assert len(np.unique(ours["uid"])) == len(ours)
    assert set(ours.prefixes()) >= {"blob", "ctf"}
    types = dict((d[0], d[1:]) for d in reference.descr())
    for descr in ours.descr():
        assert descr[0] in types, f"{descr[0]} is not a field cryoSPARC writes"
        assert descr[1:] == types[descr[0]], descr[0]
