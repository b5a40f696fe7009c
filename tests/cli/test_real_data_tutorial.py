"""docs/real-data-tutorial.md in miniature: the same commands, in the same order, at 32 px and 16 px."""

import numpy as np
import yaml

from cryofield.cli.main import main
from cryofield.examples import ADK_CLOSED, ADK_OPEN, example_path

SMALL = ["--zdim", "2", "-n", "1", "--enc-dim", "16", "--dec-dim", "16", "--enc-layers", "1", "--dec-layers", "1",
         "--lazy"]


def test_the_real_data_tutorial_in_miniature(tmp_path, capsys):
    job = tmp_path / "job"
    assert main(["simulate", "--pdb", str(example_path(ADK_CLOSED)), "--pdb", str(example_path(ADK_OPEN)),
                 "--states", "4", "--box", "32", "--apix", "3.0", "-n", "160", "--snr", "0.05", "--junk", "0.2",
                 "--pose-error", "2", "--shift-error", "0.5", "--micrographs", "4", "--float16", "-o", str(job)]) == 0
    np.savetxt(tmp_path / "all.txt", np.arange(160), fmt="%d")
    assert main(["select", str(job / "particles.star"), "--ind", str(tmp_path / "all.txt"),
                 "-o", str(job / "J1_particles.cs")]) == 0  # the stand-in for a cryoSPARC job
    assert main(["downsample", str(job / "J1_particles.cs"), "-D", "16", "-o",
                 str(tmp_path / "particles.16.mrcs")]) == 0
    assert main(["train-vae", str(tmp_path / "particles.16.star"), "-o", str(tmp_path / "vae16"), *SMALL]) == 0
    assert main(["analyze", str(tmp_path / "vae16"), "--ksample", "4"]) == 0
    assert main(["filter", str(tmp_path / "vae16"), "--clusters", "0", "--invert", "-o",
                 str(tmp_path / "keep.txt")]) == 0
    keep = np.loadtxt(tmp_path / "keep.txt", dtype=int)
    assert main(["select", str(job / "J1_particles.cs"), "--ind", str(tmp_path / "keep.txt"),
                 "-o", str(job / "J1_kept.cs")]) == 0
    kept = np.load(job / "J1_kept.cs")
    np.testing.assert_array_equal(kept["uid"], np.load(job / "J1_particles.cs")["uid"][keep])
    group = yaml.safe_load((job / "J1_kept.csg").read_text())
    assert {r["metafile"] for r in group["results"].values()} == {">J1_kept.cs"}
    assert main(["train-vae", str(job / "J1_kept.cs"), "-o", str(tmp_path / "vae32"), *SMALL]) == 0
    assert np.load(tmp_path / "vae32/z.npy").shape == (len(keep), 2)
