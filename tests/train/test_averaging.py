"""The running average of the weights: its arithmetic, what a run reads from it, and runs that kept none."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from cryofield.cli.main import main
from cryofield.io import read_map
from cryofield.nn import PoseCorrections
from cryofield.simulate.toy import make_toy_dataset
from cryofield.train import Models, TrainConfig, load_models
from cryofield.train.averaging import WeightAverage

SMALL = ["--dec-dim", "32", "--dec-layers", "1", "-b", "16", "--checkpoint", "1"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n=96, box=24, apix=5.0, snr=20, seed=1)["star"]


def test_the_average_moves_by_one_minus_decay_and_leaves_the_tables_alone():
    torch.manual_seed(0)
    models = Models(nn.Linear(3, 2), poses=PoseCorrections(5))
    average = WeightAverage(models, decay=0.9)
    start = models.decoder.weight.detach().clone()
    with torch.no_grad():
        models.decoder.weight += 1.0
    average.update()  # the first update keeps (1 + 0) / (10 + 0) of the average
    torch.testing.assert_close(average.parts["decoder"].weight, start + 0.9)
    for _ in range(200):  # then the decay, once (1 + t) / (10 + t) exceeds it
        average.update()
    with torch.no_grad():
        models.decoder.weight += 1.0
    average.update()
    assert average.steps == 202
    torch.testing.assert_close(average.parts["decoder"].weight, start + 1.1)
    assert set(average.state_dict()) == {"decoder"}  # the per-particle table is not averaged
    averaged = average.models()
    assert averaged.poses is models.poses and averaged.decoder is average.parts["decoder"]
    average.reset()
    torch.testing.assert_close(average.parts["decoder"].weight, models.decoder.weight)
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(models, decay=1.0)


def test_a_run_writes_and_reads_its_maps_from_the_average(toy, tmp_path):
    out = tmp_path / "run"
    assert main(["train-nn", str(toy), "-o", str(out), "-n", "2", "--lr", "3e-3"] + SMALL) == 0
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    live, averaged = state["models"]["decoder"], state["averaged"]["decoder"]
    assert not torch.equal(live["mlp.first.weight"], averaged["mlp.first.weight"])
    _, models = load_models(out, 24, live["mlp.first.weight"].shape[1] // 2)
    for name, tensor in averaged.items():  # what every reader of the run (eval-vol, analyze, Run) loads
        torch.testing.assert_close(models.decoder.state_dict()[name], tensor, atol=0, rtol=0)
    assert main(["eval-vol", str(out), "-o", str(tmp_path / "maps")]) == 0
    written, _ = read_map(out / "volume.mrc")
    evaluated, _ = read_map(tmp_path / "maps/vol_000.mrc")
    assert np.corrcoef(evaluated.ravel(), written.ravel())[0, 1] > 0.999  # eval-vol renders in bf16


def test_without_an_average_the_last_weights_are_read_and_old_runs_load_as_such(toy, tmp_path):
    out = tmp_path / "plain"
    assert main(["train-nn", str(toy), "-o", str(out), "-n", "1", "--ema-decay", "0"] + SMALL) == 0
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert "averaged" not in state
    _, models = load_models(out, 24, state["models"]["decoder"]["mlp.first.weight"].shape[1] // 2)
    for name, tensor in state["models"]["decoder"].items():
        torch.testing.assert_close(models.decoder.state_dict()[name], tensor, atol=0, rtol=0)
    config = json.loads((out / "config.json").read_text())
    del config["ema_decay"]  # as written before the setting existed
    (out / "config.json").write_text(json.dumps(config))
    assert TrainConfig.load(out).ema_decay == 0.0
    assert main(["train-nn", str(toy), "-o", str(out), "-n", "2", "--resume"]) == 0
    assert "averaged" not in torch.load(out / "checkpoints/last.pt", weights_only=True)


def test_a_checkpoint_without_an_average_resumes_with_one_started_there(toy, tmp_path):
    out = tmp_path / "run"
    assert main(["train-nn", str(toy), "-o", str(out), "-n", "1"] + SMALL) == 0
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    del state["averaged"]
    torch.save(state, out / "checkpoints/last.pt")
    assert main(["train-nn", str(toy), "-o", str(out), "-n", "2", "--resume"]) == 0
    assert "averaged" in torch.load(out / "checkpoints/last.pt", weights_only=True)


@pytest.mark.parametrize("decay", ["-0.1", "1"])
def test_a_decay_out_of_range_is_one_line(toy, tmp_path, capsys, decay):
    assert main(["train-nn", str(toy), "-o", str(tmp_path / "bad"), "--ema-decay", decay] + SMALL) == 2
    assert "--ema-decay" in capsys.readouterr().err


def test_ab_initio_searches_with_the_live_decoder(toy, tmp_path, monkeypatch):
    """The average lags the model: the first search, whose references form within its epoch, needs the live one."""
    import cryofield.train.abinit.method as method
    from cryofield.train import AbinitConfig, Trainer, run

    seen = []
    original = method.render_lattice

    def spy(decoder, *args, **kwargs):
        seen.append(decoder)
        return original(decoder, *args, **kwargs)

    monkeypatch.setattr(method, "render_lattice", spy)
    trainers = []
    monkeypatch.setattr(Trainer, "prepare_steps", _recording(Trainer.prepare_steps, trainers))
    run(AbinitConfig(particles=str(toy), outdir=str(tmp_path / "ab"), dec_dim=16, dec_layers=1, batch_size=8,
                     kmin=4.0, kmax=6.0, base_level=1, rounds=1, n_shifts=3, epochs_search=1, epochs_table=1,
                     pretrain_images=24, checkpoint=1))
    assert seen and all(decoder is trainers[0].models.decoder for decoder in seen)
    assert "averaged" in torch.load(tmp_path / "ab/checkpoints/last.pt", weights_only=True)


def _recording(function, into: list):
    def wrapper(self, *args, **kwargs):
        into.append(self)
        return function(self, *args, **kwargs)

    return wrapper
