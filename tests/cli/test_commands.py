import hashlib
import json
import shutil
import subprocess
import sys

import mrcfile
import numpy as np
import pytest
import torch

from cryofield.cli.main import COMMANDS, build_parser, main
from cryofield.fourier import downsample_images
from cryofield.io import read_particles, read_star


def _digest(*paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


@pytest.fixture
def relion31(data, tmp_path):
    """relion31.star and its stack, copied so that the tests can check they are not modified."""
    for name in ("relion31.star", "relion31.mrcs"):
        shutil.copy(data / "relion" / name, tmp_path)
    return tmp_path / "relion31.star"


@pytest.mark.parametrize("command", [getattr(m, "NAME", m.__name__.rsplit(".", 1)[1].replace("_", "-"))
                                     for m in COMMANDS])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"cryofield {command}" in out


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "cryofield.cli.main", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("cryofield ")


def test_output_into_a_closed_pipe_is_not_an_error(data):
    """`cryofield info ... | head -1` when the reader has gone: no traceback, exit 0."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader leaves before anything is written
    try:
        result = subprocess.run([sys.executable, "-m", "cryofield.cli.main", "info",
                                 str(data / "relion/relion31_6opticsgroups.star")], stdout=write_end,
                                stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert result.returncode == 0 and result.stderr == ""


def test_info_text_and_json(data, capsys):
    assert main(["info", str(data / "relion/relion31_6opticsgroups.star")]) == 0
    text = capsys.readouterr().out
    assert "particles         139" in text and "optics groups     6" in text
    assert main(["info", str(data / "relion/relion5.star"), "--datadir", str(data / "relion/toy_datadir"),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["particles"] == 17 and summary["stacks_found"] == 2
    assert summary["present"] == {"ctf": True, "rotations": True, "shifts": True, "tilt_series": False}
    assert summary["pixel_size_angstrom"] == [0.89]


@pytest.mark.parametrize("box", [128, 101])
def test_downsample_relion31(relion31, box):
    before = _digest(relion31, relion31.with_suffix(".mrcs"))
    out = relion31.parent / "small.mrcs"
    assert main(["downsample", str(relion31), "-D", str(box), "-o", str(out), "-b", "2"]) == 0
    assert _digest(relion31, relion31.with_suffix(".mrcs")) == before
    new, old = read_particles(out.with_suffix(".star")), read_particles(relion31)
    assert new.box_size == box and new.images().shape == (5, box, box)
    np.testing.assert_allclose(new.pixel_size_angstrom, 2.806 * 256 / box)
    expected = downsample_images(torch.from_numpy(old.images()), box).numpy()
    np.testing.assert_allclose(new.images(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(new.shifts_angstrom, old.shifts_angstrom)  # Angstrom: unchanged
    with mrcfile.open(out) as mrc:
        assert np.isclose(mrc.voxel_size.x, 2.806 * 256 / box, rtol=1e-6)
    assert read_star(out.with_suffix(".star"))["optics"].table["rlnImageSize"].tolist() == [box]


def test_downsample_relion30_layout(data, tmp_path):
    for name in ("empiar_10076_7.star", "empiar_10076_7.mrc"):
        shutil.copy(data / "empiar10076" / name, tmp_path)
    assert main(["downsample", str(tmp_path / "empiar_10076_7.star"), "-D", "160",
                 "-o", str(tmp_path / "d.mrcs")]) == 0
    blocks = read_star(tmp_path / "d.star")
    assert list(blocks) == [""]  # still RELION 3.0: no optics table
    table = read_particles(tmp_path / "d.star")
    np.testing.assert_allclose(table.pixel_size_angstrom, 5 * 1e4 / 38168 * 2)
    assert table.box_size == 160


def test_downsample_plain_stack_has_no_star(data, tmp_path):
    assert main(["downsample", str(data / "particles/hand.mrcs"), "-D", "32", "-o", str(tmp_path / "h.mrcs")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.mrcs"]
    assert read_particles(tmp_path / "h.mrcs").pixel_size_angstrom[0] == 2.0


def test_invert_and_phase_flip(data, tmp_path):
    parts = data / "particles"
    assert main(["invert", str(parts / "toy_projections.mrcs"), "-o", str(tmp_path / "inv.mrcs")]) == 0
    original = read_particles(parts / "toy_projections.mrcs").images()
    np.testing.assert_array_equal(read_particles(tmp_path / "inv.mrcs").images(), -original)
    assert main(["phase-flip", str(data / "relion/relion31.star"), "-o", str(tmp_path / "pf.mrcs")]) == 0
    flipped = read_particles(tmp_path / "pf.star")
    assert flipped.images().shape == (5, 256, 256) and flipped.ctf is not None


def test_select_formats(data, relion31, tmp_path):
    (tmp_path / "ind.txt").write_text("4\n0\n2\n")
    assert main(["select", str(relion31), "--ind", str(tmp_path / "ind.txt"), "-o", str(tmp_path / "s.star")]) == 0
    assert read_star(tmp_path / "s.star")["particles"].table["rlnImageName"].tolist() == [
        "000001@relion31.mrcs", "000003@relion31.mrcs", "000005@relion31.mrcs"]  # original order
    np.save(tmp_path / "drop.npy", np.arange(2000))
    assert main(["select", str(data / "cryosparc/cryosparc_P12_J24_001_particles.cs"), "--exclude",
                 str(tmp_path / "drop.npy"), "-o", str(tmp_path / "s.cs")]) == 0
    assert len(np.load(tmp_path / "s.cs")) == 19
    assert main(["select", str(relion31), "--ind", str(tmp_path / "ind.txt"), "-o", str(tmp_path / "img.mrcs")]) == 0
    subset = read_particles(tmp_path / "img.star")
    np.testing.assert_array_equal(subset.images(), read_particles(relion31).images([0, 2, 4]))


def _fails(capsys, argv, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "error:" in line]) == 1
    for fragment in fragments:
        assert fragment in err[-1]


def test_bad_input_exits_2_and_writes_nothing(data, relion31, tmp_path, capsys, write_stack):
    out = tmp_path / "out"
    out.mkdir()
    # stack missing
    _fails(capsys, ["downsample", str(data / "relion/relion5.star"), "-D", "16", "-o", str(out / "a.mrcs")],
           "relion5.star: row 1: image stack", "--datadir")
    # index past the end of a stack
    (tmp_path / "past.star").write_text(relion31.read_text().replace("000005@relion31.mrcs", "000009@relion31.mrcs"))
    _fails(capsys, ["invert", str(tmp_path / "past.star"), "-o", str(out / "b.mrcs")], "past.star: row 5",
           "past the end")
    # non-finite pixels, found half-way through
    images = np.zeros((9, 8, 8), np.float32)
    images[7, 2, 2] = np.inf
    write_stack(tmp_path / "nan.mrcs", images)
    _fails(capsys, ["downsample", str(tmp_path / "nan.mrcs"), "-D", "4", "-b", "2", "-o", str(out / "c.mrcs")],
           "nan.mrcs: image 8 has non-finite pixels")
    # truncated MRC
    (tmp_path / "cut.mrcs").write_bytes((tmp_path / "nan.mrcs").read_bytes()[:-10])
    _fails(capsys, ["info", str(tmp_path / "cut.mrcs")], "cut.mrcs: truncated")
    # unknown extension; missing pixel size
    _fails(capsys, ["info", str(data / "golden/README.md")], "unknown extension '.md'")
    write_stack(tmp_path / "noapix.mrcs", np.zeros((2, 4, 4)), apix=None)
    _fails(capsys, ["invert", str(tmp_path / "noapix.mrcs"), "-o", str(out / "d.mrcs")], "--apix")
    # index file out of range; output over the input
    (tmp_path / "ind.txt").write_text("1\n5\n")
    _fails(capsys, ["select", str(relion31), "--ind", str(tmp_path / "ind.txt"), "-o", str(out / "e.star")],
           "ind.txt: entry 2: index 5 is outside 0..4")
    _fails(capsys, ["invert", str(relion31), "-o", str(relion31.with_suffix(".mrcs"))], "overwrite an input")
    _fails(capsys, ["downsample", str(relion31), "-D", "300", "-o", str(out / "f.mrcs")], "new box 300")
    assert list(out.iterdir()) == []
    assert _digest(relion31.with_suffix(".mrcs")) == _digest(data / "relion/relion31.mrcs")
