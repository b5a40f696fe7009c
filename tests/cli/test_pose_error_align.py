import json
import pickle

import numpy as np
import pytest
import torch

from cryofield.cli.main import main
from cryofield.conventions import matrix_to_relion_euler
from cryofield.io import read_map, write_map
from cryofield.metrics import flip_hand, map_correlation, rotate_volume
from cryofield.so3 import matrix_to_cryosparc_pose, random_rotations, rotvec_to_matrix

FLIP = np.diag([1.0, 1.0, -1.0])
N, BOX, APIX = 120, 64, 2.0


def write_star(path, rotations, shifts_px, apix=APIX, *, pixel_size=True):
    euler = matrix_to_relion_euler(rotations)
    optics = ["data_optics", "loop_", "_rlnOpticsGroup #1", "_rlnImageSize #2"]
    optics += ["_rlnImagePixelSize #3", f"1 {BOX} {apix}"] if pixel_size else [f"1 {BOX}"]
    rows = [f"{i + 1:06d}@stack.mrcs 1 {e[0]:.6f} {e[1]:.6f} {e[2]:.6f} {s[0] * apix:.6f} {s[1] * apix:.6f}"
            for i, (e, s) in enumerate(zip(euler, shifts_px))]
    particles = ["data_particles", "loop_", "_rlnImageName #1", "_rlnOpticsGroup #2", "_rlnAngleRot #3",
                 "_rlnAngleTilt #4", "_rlnAnglePsi #5", "_rlnOriginXAngst #6", "_rlnOriginYAngst #7"]
    path.write_text("\n".join(["# version 30001", ""] + optics + ["", "# version 30001", ""] + particles + rows)
                    + "\n")
    return path


def write_cs(path, rotations, shifts_px):
    cs = np.zeros(len(rotations), dtype=[("blob/path", "S16"), ("blob/idx", "<u4"), ("blob/psize_A", "<f4"),
                                         ("blob/shape", "<u4", (2,)), ("alignments3D/pose", "<f4", (3,)),
                                         ("alignments3D/shift", "<f4", (2,))])
    cs["blob/path"], cs["blob/idx"], cs["blob/psize_A"], cs["blob/shape"] = b"stack.mrcs", np.arange(len(cs)), \
        APIX, BOX
    cs["alignments3D/pose"] = matrix_to_cryosparc_pose(torch.from_numpy(rotations)).numpy()
    cs["alignments3D/shift"] = shifts_px
    with open(path, "wb") as fh:
        np.save(fh, cs)
    return path


def write_pkl(path, rotations, shifts_px=None, box=BOX):
    with open(path, "wb") as fh:
        pickle.dump(rotations if shifts_px is None else (rotations, shifts_px / box), fh)
    return path


@pytest.fixture
def poses(tmp_path):
    """True poses (.star) and estimates in the mirror frame, rotated and translated, with small noise."""
    g = torch.Generator().manual_seed(5)
    truth = random_rotations(N, generator=g).numpy()
    frame = random_rotations(1, generator=g).numpy()[0]
    noise = rotvec_to_matrix(0.005 * torch.randn(N, 3, generator=g, dtype=torch.float64)).numpy()
    estimated = FLIP @ truth @ FLIP @ frame @ noise
    rng = np.random.default_rng(5)
    true_shifts = rng.normal(0, 2, (N, 2))
    shifts = true_shifts - (truth @ np.array([2.0, -1.0, 3.0]))[:, :2] + rng.normal(0, 0.01, (N, 2))
    return {"truth": write_star(tmp_path / "truth.star", truth, true_shifts),
            "star": write_star(tmp_path / "pred.star", estimated, shifts),
            "cs": write_cs(tmp_path / "pred.cs", estimated, shifts),
            "pkl": write_pkl(tmp_path / "pred.pkl", estimated, shifts),
            "rot_pkl": write_pkl(tmp_path / "rot.pkl", estimated),
            "truth_pkl": write_pkl(tmp_path / "truth.pkl", truth, true_shifts),
            "bare": write_star(tmp_path / "bare.star", truth, true_shifts, pixel_size=False),
            "short": write_star(tmp_path / "short.star", truth[:50], true_shifts[:50])}


@pytest.mark.parametrize("kind", ["star", "cs", "pkl"])
def test_pose_error_json(poses, kind, capsys):
    assert main(["pose-error", str(poses[kind]), str(poses["truth"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"rot_mean", "rot_median", "trans_mean", "trans_median", "hand", "n"}
    assert result["hand"] == "flipped" and result["n"] == N
    assert result["rot_median"] < 1e-3 and result["trans_median"] < 1e-3 and result["trans_mean"] < 1e-2


def test_pose_error_text_and_options(poses, capsys):
    assert main(["pose-error", str(poses["pkl"]), str(poses["truth_pkl"]), "--box", str(BOX)]) == 0
    out = capsys.readouterr().out
    assert "flipped (the estimate is the truth's mirror image)" in out and "translation error (px^2)" in out
    assert main(["pose-error", str(poses["rot_pkl"]), str(poses["truth"]), "--hand", "same", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["hand"] == "same" and result["rot_median"] > 1 and result["trans_mean"] is None
    assert main(["pose-error", str(poses["rot_pkl"]), str(poses["truth"])]) == 0
    assert "not scored (rot.pkl has no shifts)" in capsys.readouterr().out
    assert main(["pose-error", str(poses["star"]), str(poses["bare"]), "--apix", str(APIX), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trans_median"] < 1e-3


@pytest.mark.parametrize("args, message", [
    (["short", "truth"], "120 poses, but"),
    (["star", "missing.star"], "missing.star: file not found"),
    (["pkl", "truth_pkl"], "pass --box"),
    (["star", "bare"], "pass --apix"),
    (["star", "truth", "--box", "0"], "--box must be positive"),
])
def test_pose_error_errors(poses, tmp_path, args, message, capsys):
    paths = [str(poses[a]) if a in poses else (str(tmp_path / a) if a.endswith(".star") else a) for a in args]
    assert main(["pose-error", *paths]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("cryofield pose-error: error:")


def test_pose_error_rejects_other_files(poses, tmp_path, capsys):
    other = tmp_path / "poses.npy"
    np.save(other, np.zeros((N, 3, 3)))
    assert main(["pose-error", str(other), str(poses["truth"])]) == 2
    assert "must be a RELION .star" in capsys.readouterr().err
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"rot": 1}))
    assert main(["pose-error", str(evil), str(poses["truth"])]) == 2
    assert "evil.pkl" in capsys.readouterr().err


def _blobs(size):
    c = torch.arange(size, dtype=torch.float32) - size // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    out = torch.zeros(size, size, size)
    for (px, py, pz), height in [((6, 0, 0), 1.0), ((0, 8, 2), 0.8), ((-3, -4, 7), 0.6), ((-5, 2, -5), 0.5)]:
        out += height * torch.exp(-((x - px) ** 2 + (y - py) ** 2 + (z - pz) ** 2) / 6.5)
    return out


def test_align_vol_end_to_end(tmp_path, capsys, one_thread):
    reference = _blobs(32)
    g = torch.Generator().manual_seed(9)
    rotation = random_rotations(1, generator=g)[0].float()
    shift = torch.tensor([2.0, -1.5, 1.0])
    moving = flip_hand(rotate_volume(reference, rotation.T, -(rotation.T @ shift)))
    a, b, out = tmp_path / "a.mrc", tmp_path / "b.mrc", tmp_path / "b_aligned.mrc"
    write_map(a, reference.numpy(), 1.5)
    write_map(b, moving.numpy(), 1.5)
    assert main(["align-vol", str(a), str(b), "-o", str(out), "--search-size", "16", "--level", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["hand"] == "flipped" and result["correlation_after"] > 0.99 > 0.6 > result["correlation_before"]
    np.testing.assert_allclose(result["shift_angstrom"], shift.numpy() * 1.5, atol=0.3)
    aligned, apix = read_map(out)
    assert apix == pytest.approx(1.5) and map_correlation(aligned, reference) > 0.99
    assert main(["align-vol", str(a), str(out), "-o", str(tmp_path / "again.mrc"), "--search-size", "16",
                 "--level", "1", "--hand", "same"]) == 0
    text = capsys.readouterr().out
    assert "hand                       same" in text and "RELION Euler angles" in text and "wrote" in text


def test_align_vol_errors(tmp_path, capsys):
    a, small, junk = tmp_path / "a.mrc", tmp_path / "small.mrc", tmp_path / "junk.mrc"
    write_map(a, _blobs(24).numpy(), 1.5)
    write_map(small, _blobs(20).numpy(), 1.5)
    junk.write_text("not a map")
    out = tmp_path / "out.mrc"
    for args, message in [([a, small], "small.mrc: map is (20, 20, 20), the reference (24, 24, 24)"),
                          ([a, junk], "junk.mrc"), ([a, tmp_path / "none.mrc"], "none.mrc")]:
        assert main(["align-vol", *map(str, args), "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and err.startswith("cryofield align-vol: error:")
    assert main(["align-vol", str(a), str(a), "-o", str(a)]) == 2
    assert "overwrite an input" in capsys.readouterr().err
    assert main(["align-vol", str(a), str(a), "-o", str(out), "--level", "7"]) == 2
    assert not out.exists()
