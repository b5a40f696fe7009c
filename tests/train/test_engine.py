"""Adding a method to the run engine: a config, a Method, nothing in the loop.

The method here is frequency marching for a homogeneous volume: the first ``coarse_epochs``
epochs fit only the pixels inside ``coarse_radius`` (cycles per box), then all of them. It is
written outside the package, registered, and gets checkpoints, exact resume, the log and
``Run`` from the engine.
"""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from cryofield.simulate.toy import make_toy_dataset
from cryofield.train import NeuralVolume, Run, TrainConfig, load_config, register_method, resume, run, setting
from cryofield.train.launch import METHODS


@dataclass
class MarchingConfig(TrainConfig):
    coarse_epochs: int = setting(2, "epochs on the low frequencies only (default 2)")
    coarse_radius: float = setting(4.0, "their band limit, cycles per box (default 4)")


class Marching(NeuralVolume):
    def epoch(self, trainer, epoch):
        band = self.config.coarse_radius if epoch < self.config.coarse_epochs else None
        data = trainer.data.band_limited(band)
        return trainer.train_pass(data, epoch, progress=trainer.callbacks.progress_of(len(data))) | {
            "band": band or 0.0}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n=64, box=16, apix=6.0, snr=20, seed=3)["star"]


def _trainer(method, toy, outdir, **settings):
    """A :class:`Trainer` of ``method`` on the toy particles, small networks."""
    from cryofield.train import Trainer, prepare, read_table

    config = TrainConfig(particles=str(toy), outdir=str(outdir), dec_dim=16, dec_layers=1, batch_size=16,
                         **settings)
    return Trainer(method(config, prepare(config, read_table(config))))


@pytest.fixture
def marching():
    register_method(MarchingConfig, Marching)
    yield
    METHODS.remove((MarchingConfig, Marching))


def test_a_method_added_outside_the_package_runs_checkpoints_and_resumes(toy, marching, tmp_path):
    settings = {"particles": str(toy), "dec_dim": 16, "dec_layers": 1, "batch_size": 16, "checkpoint": 1}
    straight = run(MarchingConfig(outdir=str(tmp_path / "a"), epochs=4, **settings))
    assert [r["band"] for r in straight.log] == [4.0, 4.0, 0.0, 0.0]
    assert isinstance(load_config(tmp_path / "a"), MarchingConfig) and straight.volume().shape == (16, 16, 16)
    run(MarchingConfig(outdir=str(tmp_path / "b"), epochs=2, **settings))
    resumed = resume(tmp_path / "b", {"epochs": 4})  # through the coarse-to-fine switch
    assert [r["band"] for r in resumed.log] == [4.0, 4.0, 0.0, 0.0]
    a = torch.load(tmp_path / "a/checkpoints/last.pt", weights_only=True)["models"]["decoder"]
    b = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)["models"]["decoder"]
    for name, tensor in a.items():
        torch.testing.assert_close(b[name], tensor, atol=0, rtol=0)
    np.testing.assert_array_equal(Run(tmp_path / "a").volume(), Run(tmp_path / "b").volume())
    assert json.loads((tmp_path / "b/config.json").read_text())["coarse_epochs"] == 2
    history = (tmp_path / "b/train.log").read_text().splitlines()  # the engine's log for people, too
    assert "started Marching at epoch 1 of 2" in history[0] and "resumed Marching at epoch 3 of 4" in history[4]
    assert sum("band 4" in line for line in history) == 2 and history[-1].endswith("finished 4 epochs")


class Poisoned(NeuralVolume):
    """Training whose weights turn to Inf before the second epoch, as a diverging run's do."""

    def epoch(self, trainer, epoch):
        if epoch == 1:
            with torch.no_grad():
                next(trainer.models.decoder.parameters()).fill_(float("inf"))
        return super().epoch(trainer, epoch)


def test_a_loss_that_is_no_longer_finite_stops_before_the_checkpoint(toy, tmp_path):
    from cryofield.errors import RunStopped

    with pytest.raises(RunStopped, match=r"epoch 2, step 1\); no checkpoint of this epoch was written; the last good "
                                         r"one is .*last.pt"):
        _trainer(Poisoned, toy, tmp_path / "run", epochs=3, checkpoint=1).fit()
    checkpoints = sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir())
    assert checkpoints == ["epoch_0000.pt", "last.pt"]  # nothing poisoned written
    assert torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["epoch"] == 0
    assert len((tmp_path / "run/log.jsonl").read_text().splitlines()) == 1
    assert "stopped: the loss is no longer finite" in (tmp_path / "run/train.log").read_text()


def test_the_command_line_stops_a_diverging_run_with_one_line(toy, tmp_path, capsys):
    from cryofield.cli.main import main

    assert main(["train-nn", str(toy), "-o", str(tmp_path / "run"), "-n", "3", "--lr", "1e30", "--dec-dim", "16",
                 "--dec-layers", "1", "-b", "16"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stopped: the loss is no longer finite (epoch 1, step" in err[0]
    assert "start again with a lower --lr" in err[0] and not (tmp_path / "run/checkpoints/last.pt").exists()


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch,
                                                                                          capsys):
    import errno

    import cryofield.train.checkpoint as checkpoint
    from cryofield.cli.main import main

    toy = make_toy_dataset(tmp_path / "toy", n=32, box=16, apix=6.0, snr=20, seed=3)["star"]
    args = ["train-nn", str(toy), "-o", str(tmp_path / "run"), "-n", "2", "--checkpoint", "1", "--dec-dim", "16",
            "--dec-layers", "1", "-b", "16"]
    original, calls = torch.save, []

    def save(state, target):
        calls.append(target)
        if len(calls) > 2:  # epoch 1's two files go through; epoch 2's do not fit
            target.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(state, target)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "the previous checkpoint is intact" in err[0]
    monkeypatch.setattr(checkpoint.torch, "save", original)
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert state["epoch"] == 0 and not list((tmp_path / "run/checkpoints").glob(".*part"))


class PoisonedOnce(NeuralVolume):
    """Weights that turn to Inf once, in the third epoch (a rare blow-up a lower step size avoids)."""

    poisoned = False

    def epoch(self, trainer, epoch):
        if epoch == 2 and not PoisonedOnce.poisoned:
            PoisonedOnce.poisoned = True
            with torch.no_grad():
                next(trainer.models.decoder.parameters()).fill_(float("inf"))
        return super().epoch(trainer, epoch)


def test_on_nan_rollback_returns_to_the_last_checkpoint_with_half_the_learning_rate(toy, tmp_path):
    PoisonedOnce.poisoned = False
    trainer = _trainer(PoisonedOnce, toy, tmp_path / "run", epochs=4, checkpoint=2, on_nan="rollback", lr=1e-3)
    trainer.fit()
    assert PoisonedOnce.poisoned
    log = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2, 3] and all(np.isfinite(r["mse"]) for r in log)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert state["epoch"] == 3 and state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-4)
    text = (tmp_path / "run/train.log").read_text()
    assert "the loss is no longer finite (epoch 3, step 1): rolled back to" in text and "(rollback 1 of 3)" in text


def test_on_nan_rollback_stops_after_three_returns(toy, tmp_path):
    from cryofield.errors import RunStopped

    with pytest.raises(RunStopped, match=r"\(epoch 2, step 1\) after 3 rollback\(s\) with lower learning rates; no "
                                         r"checkpoint of this epoch"):
        _trainer(Poisoned, toy, tmp_path / "run", epochs=3, checkpoint=1, on_nan="rollback").fit()
    assert (tmp_path / "run/train.log").read_text().count("rolled back") == 3
