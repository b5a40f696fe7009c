"""SIGKILL at any moment, then ``--resume``: the run ends as if it had never been killed (issue 23, item 3).

Each case starts a trainer in a process of its own, kills it with SIGKILL at one of three
moments, resumes it and compares the final networks (and latents, poses) with those of an
uninterrupted run of the same settings, bit for bit (CPU, fixed seed):

* ``first epoch``: before any checkpoint exists (for ``abinit``, during its pose search);
  ``--resume`` starts the run again with its saved settings;
* ``mid-run``: at a random time within a later epoch (for ``abinit``, an epoch that starts
  with a pose search);
* ``checkpoint write``: while a checkpoint is being written (its temporary file exists).

The default suite runs two cases of ``train-vae``; ``make faults`` runs the whole matrix
(``-m faults``) and prints it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from cryofield.simulate.toy import make_toy_dataset

POINTS = ("first epoch", "mid-run", "checkpoint write")
SMALL_NET = ["--dec-dim", "64", "--dec-layers", "2", "-b", "8", "--checkpoint", "1", "--seed", "4"]
COMMANDS = {
    "train-nn": ["train-nn", "TOY", "-n", "4", *SMALL_NET],
    "train-vae": ["train-vae", "TOY", "-n", "4", "--zdim", "2", "--enc-dim", "32", "--enc-layers", "1", *SMALL_NET],
    "abinit": ["abinit", "TOY", "--kmin", "4", "--kmax", "6", "--base-level", "1", "--rounds", "1", "--n-shifts", "3",
               "--epochs-search", "2", "--epochs-fixed", "0", "--epochs-refine", "2", "--search-every", "1",
               *SMALL_NET],
    "train-cryofold": ["train-cryofold", "ADK", "--pdb", "PDB", "--init", "noise", "--init-noise", "3", "-n", "3",
                       "-b", "8", "--lr", "3e-3", "--checkpoint", "1", "--seed", "4"],
}
FAST = [("train-vae", "mid-run", 0), ("train-vae", "checkpoint write", 0)]
REPEATS = int(os.environ.get("CRYOFIELD_KILLS", "1"))  # kills per command and point (make faults: 3)
MATRIX = [pytest.param(c, p, r, marks=[] if (c, p, r) in FAST else [pytest.mark.faults])
          for c in COMMANDS for p in POINTS for r in range(REPEATS)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill")
    toy = make_toy_dataset(folder / "toy", n=256, box=24, apix=4.0, snr=20, seed=3)["star"]
    return {"TOY": str(toy), "folder": folder}


def _with_atomic_model(inputs: dict) -> dict:
    """Add simulated images of adenylate kinase (for train-cryofold), once."""
    from cryofield.cli.main import main
    from cryofield.examples import ADK_CLOSED, example_path

    if "ADK" not in inputs:
        pdb, out = example_path(ADK_CLOSED), inputs["folder"] / "adk"
        assert main(["simulate", "--pdb", str(pdb), "--box", "24", "--apix", "4", "-n", "256", "--snr", "10",
                     "--seed", "0", "-o", str(out)]) == 0
        inputs.update(ADK=str(out / "particles.star"), PDB=str(pdb))
    return inputs


def _command(name: str, inputs: dict, outdir: Path) -> list[str]:
    return [sys.executable, "-m", "cryofield"] + [inputs.get(a, a) for a in COMMANDS[name]] + ["-o", str(outdir)]


_REFERENCES: dict[str, tuple[Path, float]] = {}


def _reference(name: str, inputs: dict) -> tuple[Path, float]:
    """The uninterrupted run of ``name`` and its seconds per epoch (made once per module)."""
    if name not in _REFERENCES:
        outdir = inputs["folder"] / f"straight-{name}"
        subprocess.run(_command(name, inputs, outdir), check=True, capture_output=True)
        records = [json.loads(line) for line in (outdir / "log.jsonl").read_text().splitlines()]
        _REFERENCES[name] = outdir, float(np.median([r["seconds"] for r in records]))
    return _REFERENCES[name]


def _epochs_logged(outdir: Path) -> int:
    try:
        return len((outdir / "log.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def _kill(process: subprocess.Popen, outdir: Path, point: str, epoch_seconds: float,
          rng: np.random.Generator) -> str:
    """SIGKILL ``process`` at ``point``; what happened, for the matrix."""
    deadline = time.monotonic() + 300
    if point == "checkpoint write":
        folder = outdir / "checkpoints"
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if any(entry.name.startswith(".") and ".part" in entry.name for entry in os.scandir(folder)):
                    process.send_signal(signal.SIGKILL)
                    return "killed while a checkpoint was written"
            except FileNotFoundError:
                pass
        return "finished before a checkpoint write was caught"
    wanted = 0 if point == "first epoch" else 1
    while _epochs_logged(outdir) < wanted and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    # the first epoch's clock starts once the process has read its data: wait for its log to exist
    while point == "first epoch" and not (outdir / "train.log").is_file() and process.poll() is None:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.1, 0.8) * epoch_seconds)
    if process.poll() is not None:
        return "finished before the kill"
    process.send_signal(signal.SIGKILL)
    return f"killed in epoch {_epochs_logged(outdir) + 1}"


def _same_results(a: Path, b: Path) -> None:
    """The final checkpoints' networks (and the run's latents and poses) are equal, bit for bit."""
    left = torch.load(a / "checkpoints/last.pt", weights_only=True)["models"]
    right = torch.load(b / "checkpoints/last.pt", weights_only=True)["models"]
    assert left.keys() == right.keys()
    for net in left:
        for key, tensor in left[net].items():
            torch.testing.assert_close(right[net][key], tensor, atol=0, rtol=0, msg=f"{net}.{key}")
    epochs = [json.loads(line)["epoch"] for line in (b / "log.jsonl").read_text().splitlines()]
    assert epochs == list(range(len(epochs))) and len(epochs) == len((a / "log.jsonl").read_text().splitlines())
    for name in ("z.npy", "poses.npz"):
        if (a / name).is_file():
            x, y = np.load(a / name), np.load(b / name)
            for key in getattr(x, "files", [None]):
                np.testing.assert_array_equal(y[key] if key else y, x[key] if key else x, err_msg=name)


@pytest.mark.parametrize("name, point, repeat", MATRIX)
def test_kill_then_resume_ends_as_an_uninterrupted_run(inputs, tmp_path, name, point, repeat):
    if name == "train-cryofold":
        _with_atomic_model(inputs)
    straight, epoch_seconds = _reference(name, inputs)
    outdir = tmp_path / "run"
    rng = np.random.default_rng(zlib.crc32(f"{name} | {point} | {repeat}".encode()))
    process = subprocess.Popen(_command(name, inputs, outdir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    what = _kill(process, outdir, point, epoch_seconds, rng)
    process.wait(timeout=300)
    leftovers = sorted(p.name for p in outdir.rglob(".*.part*"))
    finished = subprocess.run(_command(name, inputs, outdir) + ["--resume"], capture_output=True, text=True)
    print(f"\nMATRIX | {name} | {point} | {what}; {len(leftovers)} temporary file(s) left by the kill | "
          f"--resume exit {finished.returncode}")
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert not list(outdir.rglob(".*.part*"))  # removed by the resumed run
    assert "killed" in what, what
    _same_results(straight, outdir)
