import json

import numpy as np
import pytest
import torch

from cryofield.cli.main import main
from cryofield.io import read_map
from cryofield.simulate.toy import make_toy_dataset

SMALL = ["--enc-dim", "32", "--dec-dim", "32", "--enc-layers", "1", "--dec-layers", "1", "-b", "16"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n=120, box=24, apix=5.0, snr=20, seed=1)["star"]


def test_train_nn_outputs_and_learning(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train-nn", str(toy), "-o", str(out), "-n", "4", "--lr", "3e-3", "--checkpoint", "2"]
                + SMALL[2:4] + SMALL[6:]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["zdim"] == 0 and config["box"] == 24 and config["data_pixel_size"] == 5.0
    assert config["versions"]["inputs_sha256"][str(toy)]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2, 3] and log[-1]["mse"] < log[0]["mse"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_0001.pt", "epoch_0003.pt", "last.pt"]
    volume, apix = read_map(out / "volume.mrc")
    assert volume.shape == (24, 24, 24) and apix == 5.0
    truth, _ = read_map(toy.parent / "truth_vols/vol_000.mrc")
    assert np.corrcoef(volume.ravel(), truth.ravel())[0, 1] > 0.3  # positive density, the right object
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)  # no pickled objects
    assert state["epoch"] == 3


def test_resume_continues_exactly(toy, tmp_path):
    args = ["train-vae", str(toy), "--zdim", "2", "--checkpoint", "1", "--seed", "3"] + SMALL
    assert main(args + ["-o", str(tmp_path / "straight"), "-n", "3"]) == 0
    assert main(args + ["-o", str(tmp_path / "resumed"), "-n", "2"]) == 0
    # --resume takes the run's own settings: only the epochs are given again
    assert main(["train-vae", str(toy), "-o", str(tmp_path / "resumed"), "-n", "3", "--resume"]) == 0
    a = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=True)
    for networks in ("models", "averaged"):  # the weights and their running average
        for part in ("decoder", "encoder"):
            for name, tensor in a[networks][part].items():
                torch.testing.assert_close(b[networks][part][name], tensor, atol=0, rtol=0)
    np.testing.assert_array_equal(np.load(tmp_path / "straight/z.npy"), np.load(tmp_path / "resumed/z.npy"))


def test_runs_saved_before_the_residual_setting_keep_their_blocks(toy, tmp_path):
    from cryofield.train import TrainConfig, load_models

    out = tmp_path / "old"
    assert main(["train-vae", str(toy), "--zdim", "2", "-o", str(out), "-n", "1", "--checkpoint", "1"] + SMALL) == 0
    assert TrainConfig.load(out / "config.json").residual == "post"  # new runs: the seed's blocks
    config = json.loads((out / "config.json").read_text())
    del config["residual"]  # as written before the setting existed, by networks with "pre" blocks
    (out / "config.json").write_text(json.dumps(config))
    saved = torch.load(out / "checkpoints/last.pt", weights_only=True)["models"]
    _, models = load_models(out, 24, saved["encoder"]["mlp.first.weight"].shape[1] // 2)
    assert {m.residual for m in models.decoder.modules() if hasattr(m, "residual")} == {"pre"}
    assert main(["train-vae", str(toy), "-o", str(out), "-n", "2", "--resume"]) == 0
    assert json.loads((out / "config.json").read_text())["residual"] == "pre"  # resumed with its own blocks
    assert main(["train-nn", str(toy), "-o", str(tmp_path / "nn"), "-n", "1", "--residual", "pre"]
                + SMALL[2:4] + SMALL[6:]) == 0
    assert TrainConfig.load(tmp_path / "nn/config.json").residual == "pre"


def test_resume_refuses_other_settings(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train-vae", str(toy), "--zdim", "2", "-o", str(out), "-n", "1"] + SMALL) == 0
    saved = (out / "config.json").read_text()
    capsys.readouterr()
    assert main(["train-vae", str(toy), "--zdim", "4", "-o", str(out), "-n", "2", "--resume"]) == 2
    assert "--zdim 4 differs from the run's 2" in capsys.readouterr().err
    assert (out / "config.json").read_text() == saved  # nothing rewritten
    other = tmp_path / "other.star"
    other.write_text(toy.read_text().replace("\n\n", "\n\n# another file\n", 1))
    assert main(["train-vae", str(other), "-o", str(out), "-n", "2", "--resume"]) == 2
    assert "not the particles the run was trained on" in capsys.readouterr().err


def test_vae_latents_and_eval_vol(toy, tmp_path, capsys):
    out = tmp_path / "vae"
    assert main(["train-vae", str(toy), "-o", str(out), "--zdim", "3", "-n", "2"] + SMALL) == 0
    z = np.load(out / "z.npy")
    assert z.shape == (120, 3) and np.isfinite(z).all()
    np.savetxt(tmp_path / "z.txt", z[:4])
    assert main(["eval-vol", str(out), "--z-file", str(tmp_path / "z.txt"), "-o", str(tmp_path / "maps"),
                 "--box", "16", "--flip", "--lowpass", "15"]) == 0
    maps = sorted((tmp_path / "maps").iterdir())
    assert [p.name for p in maps] == [f"vol_{i:03d}.mrc" for i in range(4)]
    volume, apix = read_map(maps[0])
    assert volume.shape == (16, 16, 16) and apix == pytest.approx(5.0 * 24 / 16)
    capsys.readouterr()
    assert main(["eval-vol", str(out), "-o", str(tmp_path / "x")]) == 2
    assert "pass --z, --z-file or --mean-of" in capsys.readouterr().err
    assert main(["eval-vol", str(out), "--z", "1", "2", "-o", str(tmp_path / "x")]) == 2
    assert "zdim 3" in capsys.readouterr().err
    assert main(["train-nn", str(toy), "-o", str(tmp_path / "none"), "--resume"]) == 2


def test_eval_images_and_evaluate(toy, tmp_path, capsys):
    out = tmp_path / "vae"
    assert main(["train-vae", str(toy), "-o", str(out), "--zdim", "2", "-n", "2"] + SMALL) == 0
    assert main(["eval-images", str(out), "-o", str(tmp_path / "z.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), np.load(out / "z.npy"), atol=1e-5)
    assert np.load(tmp_path / "z.logvar.npy").shape == (120, 2) and np.load(tmp_path / "z.loss.npy").shape == (120,)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--truth", str(toy.parent), "--images", "10", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    # two epochs of a toy learn little: check the report's form, not the maps' quality (Nyquist is 2 px)
    assert scores["images_scored"] == 10 and np.isfinite(scores["per_image_fsc"]["resolution_px_mean"])
    assert scores["per_image_fsc"]["resolution_px_mean"] >= 2
    assert -1 <= scores["per_image_fsc"]["auc_mean"] <= 1 and np.array(scores["spearman"]).shape == (2, 1)
    assert -1 <= scores["ari"] <= 1 and scores["nmse"] >= 0
    assert main(["evaluate", str(out), "--truth", str(tmp_path)]) == 2


def test_refined_latents_lower_each_images_objective(toy, tmp_path, capsys):

    from cryofield.io import read_particles
    from cryofield.train import TrainConfig, image_losses, load_models, posterior_means, prepare, refine_latents
    from cryofield.train.latents import _objective

    out = tmp_path / "vae"
    assert main(["train-vae", str(toy), "-o", str(out), "--zdim", "2", "-n", "2"] + SMALL) == 0
    config = TrainConfig.load(out / "config.json")
    data = prepare(config, read_particles(toy), scale=config.data_scale)
    _, models = load_models(out, config.box, data.n_pixels)
    before = [p.detach().clone() for p in models.parameters()]
    mu = posterior_means(models, data)
    np.testing.assert_allclose(refine_latents(models, data, steps=0), mu, atol=1e-5)
    refined = refine_latents(models, data, steps=20, lr=0.05, radius_px=8.0, kl_weight=config.kl_weight, amp=False)
    assert refined.shape == (120, 2) and np.isfinite(refined).all() and not np.allclose(refined, mu)
    for p, q in zip(models.parameters(), before):
        assert p.requires_grad and torch.equal(p.detach(), q)  # weights untouched, training state restored
    ready = data.load(np.arange(len(data)))  # every image made ready from the compact store
    fit = ready.band_limited(8)
    with torch.no_grad():
        at_mu = _objective(models, fit, torch.from_numpy(mu), config.kl_weight)
        at_refined = _objective(models, fit, torch.from_numpy(refined), config.kl_weight)
    assert (at_refined <= at_mu + 1e-6).float().mean() > 0.9 and at_refined.mean() < at_mu.mean()
    with torch.no_grad():  # without the prior and the band limit, the objective is the training loss per image
        whole = _objective(models, ready, torch.from_numpy(mu), 0.0)
    np.testing.assert_allclose(whole.numpy(), image_losses(models, data, mu), rtol=1e-5)
    import cryofield.train.inference as inference

    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:  # a batch of large images: predicted in pieces
        patch.setattr(inference, "DECODER_POINTS", 3 * len(ready.coords) + 1)
        pieces = inference.image_errors(models, ready, torch.from_numpy(mu))
    with torch.no_grad():
        np.testing.assert_allclose(pieces.numpy(), inference.image_errors(models, ready, torch.from_numpy(mu)).numpy(),
                                   rtol=1e-6)

    # the command line: eval-images --refine-z, then evaluate --z scores those latents
    assert main(["eval-images", str(out), "--refine-z", "3", "-o", str(tmp_path / "zr.npy")]) == 0
    assert np.load(tmp_path / "zr.npy").shape == (120, 2) and np.load(tmp_path / "zr.loss.npy").shape == (120,)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--truth", str(toy.parent), "--images", "5", "--z", str(tmp_path / "zr.npy"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images_scored"] == 5
    np.save(tmp_path / "bad.npy", np.zeros((120, 3)))
    assert main(["evaluate", str(out), "--truth", str(toy.parent), "--z", str(tmp_path / "bad.npy")]) == 2
    assert "latents of shape (120, 3): expected 2 columns" in capsys.readouterr().err
    assert main(["eval-images", str(out), "--refine-z", "-1", "-o", str(tmp_path / "x.npy")]) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_steps_match_ordinary_steps(toy, tmp_path, capsys):
    # 120 images at batch 16: per epoch 7 full batches (3 warm-up steps, the capture, replays) and one of 8
    args = ["train-nn", str(toy), "--lr", "3e-3", "--checkpoint", "1"] + SMALL[2:4] + SMALL[6:]
    assert main(args + ["-o", str(tmp_path / "plain"), "-n", "3", "--device", "cuda", "--no-cuda-graph"]) == 0
    assert main(args + ["-o", str(tmp_path / "graph"), "-n", "3", "--device", "cuda:0"]) == 0  # an explicit GPU
    args += ["--device", "cuda"]
    assert main(args + ["-o", str(tmp_path / "resumed"), "-n", "2"]) == 0
    assert main(["train-nn", str(toy), "-o", str(tmp_path / "resumed"), "-n", "3", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "without CUDA graphs" not in err and "empty" not in err
    plain, graph, resumed = (torch.load(tmp_path / name / "checkpoints/last.pt", weights_only=True)["models"]
                             for name in ("plain", "graph", "resumed"))
    for name, tensor in plain["decoder"].items():  # no sampling in train-nn: the same steps, up to rounding
        torch.testing.assert_close(graph["decoder"][name], tensor, rtol=2e-3, atol=2e-4)
        torch.testing.assert_close(resumed["decoder"][name], graph["decoder"][name], rtol=2e-3, atol=2e-4)
    vae = ["train-vae", str(toy), "--zdim", "2", "--device", "cuda", "-n", "4"] + SMALL
    assert main(vae + ["-o", str(tmp_path / "vae")]) == 0
    log = [json.loads(line) for line in (tmp_path / "vae/log.jsonl").read_text().splitlines()]
    assert log[-1]["mse"] < log[0]["mse"] and np.isfinite(np.load(tmp_path / "vae/z.npy")).all()
    assert "without CUDA graphs" not in capsys.readouterr().err


def test_checkpoints_in_the_earlier_layout_still_load(toy, tmp_path):
    """Runs saved before the engine kept an entry for every part, empty when absent ({} for train-nn's encoder)."""
    out = tmp_path / "old"
    assert main(["train-nn", str(toy), "-o", str(out), "-n", "1", "--checkpoint", "1"] + SMALL[2:4] + SMALL[6:]) == 0
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert set(state["models"]) == {"decoder"}  # the engine saves the parts a run has
    state["models"] |= {"encoder": {}, "poses": {}}
    torch.save(state, out / "checkpoints/last.pt")
    assert main(["eval-vol", str(out), "-o", str(tmp_path / "maps")]) == 0
    assert main(["train-nn", str(toy), "-o", str(out), "-n", "2", "--resume"]) == 0
    assert [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()] == [0, 1]


def test_a_cut_short_checkpoint_is_one_line_naming_it_and_the_earlier_ones(toy, tmp_path, capsys):
    out = tmp_path / "cut"
    assert main(["train-nn", str(toy), "-o", str(out), "-n", "2", "--checkpoint", "1"] + SMALL[2:4] + SMALL[6:]) == 0
    last = out / "checkpoints/last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a write cut short
    capsys.readouterr()
    for command in (["train-nn", str(toy), "-o", str(out), "-n", "3", "--resume"], ["eval-vol", str(out), "-o",
                                                                                     str(tmp_path / "maps")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "last.pt: not a readable checkpoint" in err and "epoch_0001.pt" in err
    assert not (tmp_path / "maps").exists() or not list((tmp_path / "maps").iterdir())
    assert not list((out / "checkpoints").glob(".*part"))  # checkpoints are written whole, through a rename
