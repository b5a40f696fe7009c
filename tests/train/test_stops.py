"""SIGINT and SIGTERM stop a run after the current step with a checkpoint that continues it exactly."""

import os
import signal

import numpy as np
import pytest
import torch

from cryofield.cli.main import main
from cryofield.errors import RunInterrupted
from cryofield.simulate.toy import make_toy_dataset
from cryofield.train import Callbacks, VaeConfig, resume, run

SMALL = {"enc_dim": 16, "enc_layers": 1, "dec_dim": 16, "dec_layers": 1, "batch_size": 8, "checkpoint": 5}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n=64, box=16, apix=6.0, snr=20, seed=3)["star"]


def signal_at(signum: int, epoch: int, images: int) -> Callbacks:
    """Callbacks that send ``signum`` to this process once ``images`` of ``epoch`` are done."""
    sent = []

    def progress(done, total, at_epoch, stage):
        if at_epoch == epoch and done >= images and not sent:
            sent.append(True)
            os.kill(os.getpid(), signum)

    return Callbacks(progress=progress)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_epoch_then_resume_ends_as_an_uninterrupted_run(toy, tmp_path, signum, code):
    straight = run(VaeConfig(particles=str(toy), outdir=str(tmp_path / "straight"), zdim=2, epochs=3, **SMALL))
    with pytest.raises(RunInterrupted, match="after step 3 of epoch 2; checkpoint written") as stopped:
        run(VaeConfig(particles=str(toy), outdir=str(tmp_path / "stopped"), zdim=2, epochs=3, **SMALL),
            callbacks=signal_at(signum, 1, 24))
    assert stopped.value.exit_code == code
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are given back
    state = torch.load(tmp_path / "stopped/checkpoints/last.pt", weights_only=True)
    assert state["epoch"] == 0 and state["partial"]["batches"] == 3
    resumed = resume(tmp_path / "stopped")
    a = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=True)
    b = torch.load(tmp_path / "stopped/checkpoints/last.pt", weights_only=True)
    for networks in ("models", "averaged"):  # the weights and their running average
        for name, tensor in a[networks]["decoder"].items():
            torch.testing.assert_close(b[networks]["decoder"][name], tensor, atol=0, rtol=0)
    np.testing.assert_array_equal(resumed.z, straight.z)
    assert [r["epoch"] for r in resumed.log] == [0, 1, 2]  # the stopped epoch logged once, whole
    assert resumed.log[1]["mse"] == pytest.approx(straight.log[1]["mse"], rel=1e-6)


def test_the_command_line_says_how_to_continue(toy, tmp_path, capsys, monkeypatch):
    import cryofield.train.engine as engine

    original = engine.run_epoch

    def interrupted_run_epoch(*args, **kwargs):  # SIGTERM arrives during the first step of epoch 2
        if kwargs.get("epoch") == 1 and kwargs.get("partial") is None:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "run_epoch", interrupted_run_epoch)
    args = ["train-nn", str(toy), "-o", str(tmp_path / "run"), "-n", "2", "--dec-dim", "16", "--dec-layers", "1"]
    assert main(args) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stopped: SIGTERM after step 1 of epoch 2" in err[0] and "--resume" in err[0]
    monkeypatch.setattr(engine, "run_epoch", original)
    assert main(args + ["--resume"]) == 0
    assert "stopped: SIGTERM" in (tmp_path / "run/train.log").read_text()


@pytest.mark.parametrize("schedule, epoch, stage", [
    ("search", 1, "train"),  # the pass after a search of every particle
    ("search", 2, "train"),  # the pass after the reset
    ("table", 0, "pretrain"),
    ("table", 3, "train"),  # a pass of the pose table's stage
])
def test_ab_initio_stopped_mid_pass_resumes_exactly(toy, tmp_path, schedule, epoch, stage):
    """A signal during a training pass stops it after the current step; the resumed run equals one never stopped.

    The search, reset or table start done before the stop is not done again.
    """
    from cryofield.train import AbinitConfig

    settings = {"particles": str(toy), "dec_dim": 16, "dec_layers": 1, "batch_size": 8, "kmin": 4.0, "kmax": 6.0,
                "base_level": 1, "rounds": 1, "n_shifts": 3, "epochs_search": 2, "schedule": schedule, "seed": 5}
    settings |= ({"pretrain_images": 24, "epochs_table": 2} if schedule == "table"
                 else {"epochs_fixed": 1, "epochs_refine": 0, "search_every": 1})
    straight = run(AbinitConfig(outdir=str(tmp_path / "straight"), **settings))
    with pytest.raises(RunInterrupted, match=f"SIGTERM after step 2 of epoch {epoch + 1};"):
        run(AbinitConfig(outdir=str(tmp_path / "stopped"), **settings), callbacks=Callbacks(
            progress=_once(lambda done, total, e, at: e == epoch and at == stage and done >= 16)))
    resumed = resume(tmp_path / "stopped")
    a = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=True)
    b = torch.load(tmp_path / "stopped/checkpoints/last.pt", weights_only=True)
    for networks in ("models", "averaged"):  # the weights and their running average
        for part in a[networks]:
            for name, tensor in a[networks][part].items():
                torch.testing.assert_close(b[networks][part][name], tensor, atol=0, rtol=0, msg=f"{part}.{name}")
    np.testing.assert_array_equal(resumed.poses()[0], straight.poses()[0])
    assert [r["mse"] for r in resumed.log] == pytest.approx([r["mse"] for r in straight.log], rel=1e-6)
    for key in ("reset", "table_start", "search_kmax", "pose_change_deg_median"):  # what came before the stop
        assert [key in r for r in resumed.log] == [key in r for r in straight.log], key
        assert resumed.log[epoch].get(key) == pytest.approx(straight.log[epoch].get(key)), key


@pytest.mark.parametrize("schedule", ["search", "table"])
def test_ab_initio_stopped_mid_search_resumes_exactly(toy, tmp_path, schedule):
    """A signal during a search stops it after the current chunk; the resumed run equals one never stopped."""
    from cryofield.train import AbinitConfig

    settings = {"particles": str(toy), "dec_dim": 16, "dec_layers": 1, "batch_size": 8, "kmin": 4.0, "kmax": 6.0,
                "base_level": 1, "rounds": 1, "n_shifts": 3, "epochs_search": 2, "search_chunk": 16,
                "schedule": schedule, "seed": 5}
    settings |= ({"pretrain_images": 24, "epochs_table": 1} if schedule == "table"
                 else {"epochs_fixed": 0, "epochs_refine": 0, "search_every": 1})
    straight = run(AbinitConfig(outdir=str(tmp_path / "straight"), **settings))
    with pytest.raises(RunInterrupted, match="SIGTERM after 2 of 4 chunks of the search in epoch 2;"):
        run(AbinitConfig(outdir=str(tmp_path / "stopped"), **settings), callbacks=signal_at(signal.SIGTERM, 1, 20))
    resumed = resume(tmp_path / "stopped")
    np.testing.assert_array_equal(resumed.poses()[0], straight.poses()[0])
    assert [r["mse"] for r in resumed.log] == pytest.approx([r["mse"] for r in straight.log], rel=1e-6)
    assert len(resumed.log) == len(straight.log) and resumed.log[1]["search_seconds"] > 0


def test_cryofold_stopped_in_its_warm_up_and_in_its_fit_resumes_exactly(tmp_path):
    from cryofield.examples import ADK_CLOSED, example_path
    from cryofield.train import CryofoldConfig

    assert main(["simulate", "--pdb", str(example_path(ADK_CLOSED)), "--box", "24", "--apix", "4", "-n", "48",
                 "--snr", "10", "--seed", "0", "-o", str(tmp_path / "sim")]) == 0
    settings = {"particles": str(tmp_path / "sim/particles.star"), "pdb": str(example_path(ADK_CLOSED)),
                "epochs": 2, "batch_size": 8, "lr": 3e-3, "init": "noise", "init_noise_angstrom": 3.0}
    run(CryofoldConfig(outdir=str(tmp_path / "straight"), **settings))
    for where, epoch, images in (("warm-up", 0, 16), ("fit", 1, 24)):
        out = tmp_path / where
        with pytest.raises(RunInterrupted):
            run(CryofoldConfig(outdir=str(out), **settings), callbacks=Callbacks(
                progress=_once(lambda done, total, e, stage, epoch=epoch, images=images, where=where:
                               e == epoch and done >= images and (stage == "warm-up") == (where == "warm-up"))))
        resume(out)
        a = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=True)["models"]["decoder"]
        b = torch.load(out / "checkpoints/last.pt", weights_only=True)["models"]["decoder"]
        for name, tensor in a.items():
            torch.testing.assert_close(b[name], tensor, atol=0, rtol=0, msg=f"{where}: {name}")


def _once(condition):
    """A progress callback sending SIGTERM the first time ``condition(done, total, epoch, stage)`` holds."""
    sent = []

    def progress(*args):
        if not sent and condition(*args):
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    return progress
