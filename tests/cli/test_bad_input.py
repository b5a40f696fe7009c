"""Files of no particles are one line naming the file, exit code 2, nothing written (issue 23, in part)."""

import pickle

import mrcfile
import numpy as np
import pytest

from cryofield.cli.main import main
from cryofield.simulate.toy import make_toy_dataset


@pytest.fixture(scope="module")
def empty_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("empty")
    star = make_toy_dataset(folder / "toy", n=10, box=16, apix=6.0, snr=20, seed=3)["star"]
    lines = star.read_text().splitlines()
    last_header = max(i for i, line in enumerate(lines) if line.startswith("_rln"))
    (folder / "header_only.star").write_text("\n".join(lines[:last_header + 1]) + "\n")
    with mrcfile.new(folder / "no_images.mrcs") as mrc:
        mrc.set_data(np.zeros((0, 16, 16), np.float32))
    return folder


@pytest.mark.parametrize("name, message", [("header_only.star", "the particle table (data_particles) has no rows"),
                                           ("no_images.mrcs", "holds no images")])
@pytest.mark.parametrize("command", [["info"], ["train-nn", "-o", "OUT"], ["backproject", "-o", "OUT"]])
def test_no_particles_is_one_line_and_exit_2(empty_inputs, tmp_path, capsys, name, message, command):
    args = [command[0], str(empty_inputs / name)] + [str(tmp_path / "out") if a == "OUT" else a for a in command[1:]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{name}: {message}" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_cryosparc_file_of_no_rows(data, tmp_path, capsys):
    cs = np.load(data / "empiar10076/empiar_10076_7.cs")
    with open(tmp_path / "empty.cs", "wb") as fh:
        np.save(fh, cs[:0])
    for command in (["info", str(tmp_path / "empty.cs")], ["train-vae", str(tmp_path / "empty.cs"), "-o",
                                                           str(tmp_path / "run")]):
        assert main(command) == 2
        assert "empty.cs: holds no particles" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.fixture
def toy_copy(tmp_path):
    return make_toy_dataset(tmp_path / "toy", n=12, box=16, apix=6.0, snr=20, seed=3)


def _train(star, tmp_path):
    return main(["train-nn", str(star), "-o", str(tmp_path / "run"), "-n", "1", "--dec-dim", "16", "--dec-layers",
                 "1"])


def test_nan_in_an_image_names_the_stack_and_image(toy_copy, tmp_path, capsys):
    with mrcfile.open(toy_copy["stack"], "r+") as mrc:
        mrc.data[6, 3, 4] = np.nan
    assert _train(toy_copy["star"], tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{toy_copy['stack'].name}: image 7 has non-finite pixels" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("column, value, message", [("_rlnDefocusU", "nan", "row 4: _rlnDefocusU is 'nan', not a"),
                                                     ("_rlnVoltage", "0", "row 1: the voltage is not positive"),
                                                     ("_rlnDefocusV", "-500", "row 4: the defocus (V) is negative"),
                                                     ("_rlnAmplitudeContrast", "1.2",
                                                      "row 1: the amplitude contrast is outside [0, 1)"),
                                                     ("_rlnAngleTilt", "inf", "row 4: _rlnAngleTilt is")])
def test_impossible_metadata_names_the_row(toy_copy, tmp_path, capsys, column, value, message):
    star = toy_copy["star"]
    lines = star.read_text().splitlines()
    headers = [line.split()[0] for line in lines if line.startswith("_rln")]
    rows = [i for i, line in enumerate(lines) if line.strip() and not line.startswith(("_", "data_", "loop_", "#"))]
    assert column in headers  # the toy STAR file has every column the test changes
    # the column's position within its own block
    block_start = max(i for i, line in enumerate(lines) if line.startswith("loop_") and i < rows[-1])
    block_headers = [line.split()[0] for line in lines[block_start + 1:] if line.startswith("_rln")]
    block_rows = [i for i in rows if i > block_start]
    if column not in block_headers:  # an optics-table value: change it for every particle
        block_start = min(i for i, line in enumerate(lines) if line.startswith("loop_"))
        block_headers = [line.split()[0] for line in lines[block_start + 1:] if line.startswith("_rln")][
            :len([line for line in lines[block_start + 1:rows[0]] if line.startswith("_rln")])]
        block_rows = [rows[0]]
    target = block_rows[3] if len(block_rows) > 3 else block_rows[0]
    fields = lines[target].split()
    fields[block_headers.index(column)] = value
    lines[target] = " ".join(fields)
    star.write_text("\n".join(lines) + "\n")
    assert _train(star, tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and star.name in err[0]


@pytest.mark.parametrize("field, value, message", [("alignments3D/pose", np.nan, "the pose holds NaN or Inf"),
                                                   ("ctf/df1_A", np.nan, "the CTF parameters hold NaN or Inf"),
                                                   ("ctf/df2_A", -2e4, "the defocus (V) is negative")])
def test_impossible_values_in_a_cryosparc_file_name_the_row(data, tmp_path, capsys, field, value, message):
    cs = np.load(data / "cryosparc/cryosparc_P12_J24_001_particles.cs").copy()
    cs[field][2] = value
    with open(tmp_path / "nan.cs", "wb") as fh:
        np.save(fh, cs)
    assert main(["info", str(tmp_path / "nan.cs")]) == 2
    assert f"nan.cs: row 3: {message}" in capsys.readouterr().err


def test_image_names_with_dotdot_are_read_but_nothing_is_written_outside_the_output(tmp_path):
    """A STAR file may name stacks as ../x.mrcs (RELION projects do); outputs still go only where asked."""
    toy = make_toy_dataset(tmp_path / "toy", n=12, box=16, apix=6.0, snr=20, seed=3)
    deep = tmp_path / "project" / "job1"
    deep.mkdir(parents=True)
    text = toy["star"].read_text().replace("particles.mrcs", "../../toy/particles.mrcs")
    (deep / "p.star").write_text(text)
    (tmp_path / "keep.txt").write_text("0 1 2\n")
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "out"
    out.mkdir()
    assert main(["select", str(deep / "p.star"), "--ind", str(tmp_path / "keep.txt"), "-o", str(out / "sel.mrcs")]) == 0
    assert main(["backproject", str(deep / "p.star"), "-o", str(out / "bp")]) == 0
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p == out or out in p.parents for p in new), sorted(map(str, new - {out}))


def test_images_smaller_than_8_px_are_refused(tmp_path, capsys):
    with mrcfile.new(tmp_path / "tiny.mrcs") as mrc:
        mrc.set_data(np.zeros((4, 6, 6), np.float32))
        mrc.voxel_size = 2.0
    assert main(["downsample", str(tmp_path / "tiny.mrcs"), "-D", "4", "-o", str(tmp_path / "d.mrcs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "images are 6 x 6 px; cryofield needs at least 8 x 8" in err[0]
    assert not (tmp_path / "d.mrcs").exists()


def test_a_full_disk_during_an_export_is_one_line(toy_copy, tmp_path, capsys, monkeypatch):
    import errno

    import cryofield.io.mrc as mrc_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.mrcs"))

    monkeypatch.setattr(mrc_module.MrcStackWriter, "write", full)
    assert main(["invert", str(toy_copy["star"]), "-o", str(tmp_path / "out.mrcs")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the disk is full" in err[0]
    assert not (tmp_path / "out.mrcs").exists() and not (tmp_path / "out.star").exists()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A finished two-epoch VAE run and its analysis, to damage copies of."""
    folder = tmp_path_factory.mktemp("run")
    toy = make_toy_dataset(folder / "toy", n=24, box=16, apix=6.0, snr=20, seed=3)
    run = folder / "run"
    assert main(["train-vae", str(toy["star"]), "-o", str(run), "-n", "2", "--zdim", "2", "--enc-dim", "8",
                 "--enc-layers", "1", "--dec-dim", "16", "--dec-layers", "1", "--checkpoint", "1"]) == 0
    assert main(["analyze", str(run), "--ksample", "2", "--pc", "1", "--pc-points", "2", "--no-umap"]) == 0
    return toy, run


def _damage(path, how):
    data = path.read_bytes()
    path.write_bytes({"cut": data[:len(data) // 2], "empty": b"", "garbage": b"\x93NUMPY\x01\x00garbage{" * 7,
                      "pickle": pickle.dumps(np.arange(3, dtype=object))}[how])


@pytest.mark.parametrize("how", ["cut", "empty", "garbage", "pickle"])
@pytest.mark.parametrize("name, command", [
    ("z.npy", ["analyze", "RUN", "-o", "OUT", "--no-maps"]),
    ("z.npy", ["graph-traversal", "RUN", "--anchors", "0", "1", "-o", "OUT", "--no-maps"]),
    ("analysis/z_pca.npy", ["report", "RUN", "-o", "OUT.html"]),
    ("analysis/kmeans2/labels.npy", ["report", "RUN", "-o", "OUT.html"]),
    ("config.json", ["eval-vol", "RUN", "--z", "0", "0", "-o", "OUT"]),
    ("checkpoints/last.pt", ["eval-vol", "RUN", "--z", "0", "0", "-o", "OUT"]),
])
def test_a_damaged_run_file_is_one_line_naming_it(small_run, tmp_path, capsys, name, command, how):
    """Run files cut short, emptied or replaced: one line naming the file, exit 2, no output (item 1)."""
    import shutil

    toy, run = small_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _damage(copy / name, how)
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*")}
    out = tmp_path / "out"
    args = [str(copy) if a == "RUN" else a.replace("OUT", str(out)) for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(copy / name) in err[0], err
    assert not list(tmp_path.glob("out*"))
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.name != ".lock"} == \
        {p: t for p, t in before.items() if p.name != ".lock"}


def test_a_header_that_claims_terabytes_is_refused_without_allocating(toy_copy, tmp_path, capsys):
    import resource

    big = tmp_path / "big.mrcs"
    raw = bytearray(toy_copy["stack"].read_bytes())
    raw[0:12] = np.array([2**20, 2**20, 2**30], np.int32).tobytes()  # nx, ny, nz: 4.7e21 bytes
    big.write_bytes(bytes(raw))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["info", str(big)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "big.mrcs: truncated: header says 1073741824 images of 1048576 x 1048576" in err[0]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 100_000  # kB: nothing of that size


def test_tilt_partners_that_do_not_pair_up_are_one_line(toy_copy, tmp_path, capsys):
    with mrcfile.open(toy_copy["stack"]) as mrc:
        images = mrc.data[:11].copy()
    with mrcfile.new(tmp_path / "tilt11.mrcs") as mrc:
        mrc.set_data(images)
    assert main(["train-vae", str(toy_copy["star"]), "--tilt", str(tmp_path / "tilt11.mrcs"), "--apix", "6", "-o",
                 str(tmp_path / "run"), "-n", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tilt11.mrcs: 11 tilted images for 12 particles; they must pair up in order" in err[0]
    assert not (tmp_path / "run").exists()
