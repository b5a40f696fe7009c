"""A cryoDRGN 4.x work directory opens as a run (issue 24, item 6).

The fixture is written in cryoDRGN's layout by this test (``config.yaml``, ``weights.pkl`` with
cryoDRGN's parameter names, ``z.pkl``); its map is checked against cryoDRGN's volume
evaluation re-derived here in numpy from the weights (``benchmarks/bench_cryodrgn_runs.py``
compares with the installed cryoDRGN itself).
"""

import pickle

import mrcfile
import numpy as np
import pytest
import torch
import yaml

from cryofield.cli.main import main
from cryofield.train import Run

BOX, ZDIM, WIDTH, LAYERS, N = 16, 2, 24, 2, 60


def _state(rng):
    """A VAE's ``model_state_dict`` as cryoDRGN names it (Gaussian features, Fourier decoder)."""
    tensor = lambda *shape: torch.tensor(rng.normal(scale=0.3, size=shape), dtype=torch.float32)  # noqa: E731
    pe = 3 * (BOX // 2)
    state = {"encoder.main.0.weight": tensor(WIDTH, 50), "encoder.main.0.bias": tensor(WIDTH),
             "decoder.rand_freqs": tensor(pe, 3) / 0.3 * 0.5,
             "decoder.decoder.main.0.weight": tensor(WIDTH, 2 * pe + ZDIM),
             "decoder.decoder.main.0.bias": tensor(WIDTH)}
    for i in range(LAYERS):
        state[f"decoder.decoder.main.{2 * i + 2}.linear.weight"] = tensor(WIDTH, WIDTH)
        state[f"decoder.decoder.main.{2 * i + 2}.linear.bias"] = tensor(WIDTH)
    state[f"decoder.decoder.main.{2 * LAYERS + 2}.weight"] = tensor(2, WIDTH)
    state[f"decoder.decoder.main.{2 * LAYERS + 2}.bias"] = tensor(2)
    return state


@pytest.fixture(scope="module")
def drgn_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("drgn") / "run"
    root.mkdir()
    rng = np.random.default_rng(0)
    ctf = np.zeros((N, 9))
    ctf[:, 0], ctf[:, 1] = BOX, 4.5
    with open(root.parent / "ctf.pkl", "wb") as fh:
        pickle.dump(ctf, fh)
    config = {"dataset_args": {"particles": str(root.parent / "particles.mrcs"), "ctf": str(root.parent / "ctf.pkl"),
                               "poses": str(root.parent / "pose.pkl"), "ind": None, "invert_data": True,
                               "norm": [0.0, 2.5], "window": True, "window_r": 0.85},
              "lattice_args": {"D": BOX + 1, "extent": 0.5, "ignore_DC": True},
              "model_args": {"activation": "relu", "domain": "fourier", "enc_mask": 8, "encode_mode": "resid",
                             "feat_sigma": 0.5, "pdim": WIDTH, "pe_dim": None, "pe_type": "gaussian",
                             "players": LAYERS, "qdim": WIDTH, "qlayers": 1, "zdim": ZDIM},
              "seed": 7, "version": "4.3.1"}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    state = _state(rng)
    for name in ("weights.pkl", "weights.3.pkl"):
        torch.save({"epoch": 3, "model_state_dict": state, "optimizer_state_dict": {}}, root / name)
    z = rng.normal(size=(N, ZDIM)).astype(np.float32)
    for name in ("z.pkl", "z.3.pkl"):
        with open(root / name, "wb") as fh:
            pickle.dump(z, fh)
    return root, state, z


def _cryodrgn_volume(state, z, norm_std):
    """cryoDRGN's eval_volume for this fixture, in numpy: Hartley values a - b on the half it evaluates.

    The sphere is |k| < D/2 here, as cryofield's; cryoDRGN also keeps the three points at -D/2
    on the axes (|k| = D/2 exactly), which have no mate on the grid.
    """
    s = {k: v.double().numpy() for k, v in state.items()}
    axis = np.arange(-BOX // 2, BOX // 2) / BOX
    kz, ky, kx = np.meshgrid(axis, axis, axis, indexing="ij")
    coords = np.stack([kx, ky, kz], -1).reshape(-1, 3)
    mirrored = (coords[:, 2] > 0) | ((coords[:, 2] == 0) & ((coords[:, 1] > 0) | ((coords[:, 1] == 0)
                                                                                  & (coords[:, 0] > 0))))
    evaluated = np.where(mirrored[:, None], -coords, coords)
    phase = evaluated @ (s["decoder.rand_freqs"] * (BOX // 2)).T
    x = np.concatenate([np.sin(phase), np.cos(phase), np.broadcast_to(z, (len(phase), ZDIM))], 1)
    h = np.maximum(x @ s["decoder.decoder.main.0.weight"].T + s["decoder.decoder.main.0.bias"], 0)
    for i in range(LAYERS):
        w, b = s[f"decoder.decoder.main.{2 * i + 2}.linear.weight"], s[f"decoder.decoder.main.{2 * i + 2}.linear.bias"]
        h = np.maximum(h @ w.T + b + h, 0)
    out = h @ s[f"decoder.decoder.main.{2 * LAYERS + 2}.weight"].T + s[f"decoder.decoder.main.{2 * LAYERS + 2}.bias"]
    a, b = out[:, 0], np.where(mirrored, -out[:, 1], out[:, 1])  # the mate's value conjugated
    hartley = np.where((coords**2).sum(1) < 0.25, a - b, 0.0).reshape(BOX, BOX, BOX) * norm_std
    f = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(hartley))) / BOX**3
    return f.real - f.imag


def test_a_cryodrgn_run_opens_as_a_run(drgn_run):
    root, state, z = drgn_run
    run = Run(root)
    assert run.config.zdim == ZDIM and run.config.box == BOX and run.config.data_pixel_size == 4.5
    assert run.config.dec_dim == WIDTH and run.config.dec_layers == LAYERS and run.config.data_scale == 2.5
    np.testing.assert_array_equal(run.z, z)
    expected = _cryodrgn_volume(state, z[5], 2.5)
    np.testing.assert_allclose(run.volume(z[5]), expected, atol=1e-5 * np.abs(expected).max())


def test_commands_read_a_cryodrgn_run(drgn_run, tmp_path):
    root, state, z = drgn_run
    assert main(["eval-vol", str(root), "--z", *map(str, z[7]), "-o", str(tmp_path / "maps")]) == 0
    with mrcfile.open(tmp_path / "maps/vol_000.mrc") as mrc:
        assert mrc.voxel_size.x == pytest.approx(4.5)
        np.testing.assert_allclose(mrc.data, _cryodrgn_volume(state, z[7], 2.5), atol=1e-4)
    assert main(["analyze", str(root), "--ksample", "3", "--pc", "1", "--pc-points", "2", "--no-umap"]) == 0
    assert (root / "analysis/kmeans3/vol_000.mrc").is_file() and (root / "analysis/z_pca.npy").is_file()
    assert main(["filter", str(root), "--clusters", "0", "-o", str(tmp_path / "kept.txt")]) == 0
    assert 0 < len(np.loadtxt(tmp_path / "kept.txt", ndmin=1)) < N
    assert main(["report", str(root), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "cryoDRGN&#x27;s config.yaml" in page and "kmeans3" in page


@pytest.mark.parametrize("damage, message", [
    ("yaml", "config.yaml: not a readable cryoDRGN config"),
    ("weights", "weights.pkl: not a cryoDRGN decoder cryofield can read"),
    ("z", "z.pkl: unsafe or corrupt pickle"),
])
def test_a_damaged_cryodrgn_run_is_one_line(drgn_run, tmp_path, capsys, damage, message):
    import shutil

    root = tmp_path / "run"
    shutil.copytree(drgn_run[0], root)
    if damage == "yaml":
        (root / "config.yaml").write_text("model_args: [unclosed\n")
    elif damage == "weights":
        torch.save({"model_state_dict": {"decoder.rand_freqs": torch.zeros(3)}}, root / "weights.pkl")
    else:
        (root / "z.pkl").write_bytes(pickle.dumps(np.zeros((N, ZDIM)))[:-40])
    assert main(["analyze", str(root), "--no-maps"]) == 2 if damage != "weights" else \
        main(["eval-vol", str(root), "--z", "0", "0", "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
