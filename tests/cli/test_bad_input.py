"""Files of no particles are one line naming the file, exit code 2, nothing written (issue 23, in part)."""

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
