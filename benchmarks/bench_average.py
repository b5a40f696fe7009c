"""The running average of the weights (``--ema-decay``) against the last step's weights, epoch by epoch.

    python benchmarks/bench_average.py nn [--n 10000] [--box 64|128] [--epochs 3] [--lr 1e-4 4e-4] [--workdir DIR]
    python benchmarks/bench_average.py vae [--n 10000] [--epochs 3] [--lr 1e-4 4e-4] [--workdir DIR]

The average does not change the training (the steps move the live weights; the average only
follows them), so one run answers the question: it is trained with the default (a checkpoint
each epoch, holding both), and each epoch's checkpoint is scored twice, read as every reader
of a run reads it (the average) and from a copy without the average (the last step's weights,
what the run gives with ``--ema-decay 0``). ``--lr`` trains once at each Adam step size given
(default: once, at the product's default).

nn: `train-nn` (256 x 3, the true poses) on the closed form of adenylate kinase, 64 px at 2 A/px
(or ``--box 128`` at 1 A/px), SNR 0.1, CTF, shifts (bench_abinit's race data), scored by the FSC
AUC of its map against the true map; `backproject` with the same poses beside it.

vae: `train-vae --zdim 8` (256 x 3 encoder and decoder) on the 50-state closed -> open motion
(bench_train's accuracy data, 64 px), scored by `cryofield evaluate` (|Spearman| of latent PC1
with the true coordinate, per-image FSC of maps at each image's latent).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_abinit import CRYOFIELD, Truth, checkpoint_copies, fsc_auc, run, simulate  # noqa: E402
from bench_train import simulate_accuracy_dataset  # noqa: E402

ARCH = ["--dec-dim", "256", "--dec-layers", "3", "--pe-type", "gaussian", "--domain", "fourier"]


def readouts(out: Path, epoch: int) -> dict[str, Path]:
    """Copies of the run holding only epoch ``epoch``'s checkpoint: as saved (the average), and without it."""
    copies = checkpoint_copies(out, out / "checkpoints" / f"epoch_{epoch:04d}.pt")
    if "last step" not in copies:
        raise SystemExit(f"{out} kept no average of its weights (trained with --ema-decay 0?)")
    return copies


def train(cmd: list[str], log: Path) -> float:
    started = time.perf_counter()
    run(cmd, log)
    return time.perf_counter() - started


def homogeneous(args) -> None:
    data = simulate(Path(args.workdir), args.n, "adk", args.box)
    truth = Truth(data)
    print(f"backproject with the true poses: FSC AUC {truth.reference_auc():.4f}", flush=True)
    for suffix, lr in _step_sizes(args.lr):
        out = Path(args.workdir) / ("train_nn" + suffix)
        shutil.rmtree(out, ignore_errors=True)
        seconds = train([CRYOFIELD, "train-nn", str(data / "particles.star"), "-o", str(out), "-n", str(args.epochs),
                         "--checkpoint", "1", *ARCH, *lr], out.with_suffix(".log"))
        print(f"{' '.join(['train-nn', *lr])}, {args.n} images x {args.epochs} epochs: {seconds:.0f} s", flush=True)
        _score_nn(out, truth, args.epochs)


def _step_sizes(values: list[str]) -> list[tuple[str, list[str]]]:
    """(folder suffix, options) of one run per ``--lr`` value; one run at the product's default if none."""
    return [(f"_lr{lr}", ["--lr", lr]) for lr in values] or [("", [])]


def _score_nn(out: Path, truth: Truth, epochs: int) -> None:
    """Print each epoch's FSC AUC against the true map, from the average and from the last step's weights."""
    for epoch in range(epochs):
        scores = {}
        for name, copy in readouts(out, epoch).items():
            run([CRYOFIELD, "eval-vol", str(copy), "-o", str(copy / "map")])
            scores[name] = fsc_auc(copy / "map" / "vol_000.mrc", truth.maps[0], align=False)
        print(f"  epoch {epoch + 1}: FSC AUC {scores['averaged']:.4f} (the average), {scores['last step']:.4f} "
              "(the last step's weights)", flush=True)


def heterogeneous(args) -> None:
    data = simulate_accuracy_dataset(Path(args.workdir) / "motion", n=args.n)
    for suffix, lr in _step_sizes(args.lr):
        out = Path(args.workdir) / ("train_vae" + suffix)
        shutil.rmtree(out, ignore_errors=True)
        seconds = train([CRYOFIELD, "train-vae", str(data / "particles.star"), "-o", str(out), "-n", str(args.epochs),
                         "--checkpoint", "1", "--zdim", "8", "--enc-dim", "256", "--enc-layers", "3", *ARCH, *lr],
                        out.with_suffix(".log"))
        print(f"{' '.join(['train-vae --zdim 8', *lr])}, {args.n} images x {args.epochs} epochs: {seconds:.0f} s",
              flush=True)
        _score_vae(out, data, args.epochs)


def _score_vae(out: Path, data: Path, epochs: int) -> None:
    """Print each epoch's `cryofield evaluate` scores, from the average and from the last step's weights."""
    for epoch in range(epochs):
        for name, copy in readouts(out, epoch).items():
            run([CRYOFIELD, "eval-images", str(copy), "-o", str(copy / "z.npy")])
            scores = json.loads(subprocess.run([CRYOFIELD, "evaluate", str(copy), "--truth", str(data), "--z",
                                                str(copy / "z.npy"), "--json"], check=True, capture_output=True,
                                               text=True).stdout)
            print(f"  epoch {epoch + 1}, {name}: {json.dumps(scores)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["nn", "vae"])
    parser.add_argument("--n", type=int, default=10000, help="particles simulated")
    parser.add_argument("--box", type=int, default=64, help="nn: 64 (2 A/px) or 128 (1 A/px), in 128 A")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", nargs="*", default=[], help="Adam step sizes, one run each (default: the product's)")
    parser.add_argument("--workdir", default="/tmp/bench_average")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    (homogeneous if args.mode == "nn" else heterogeneous)(args)


if __name__ == "__main__":
    main()
