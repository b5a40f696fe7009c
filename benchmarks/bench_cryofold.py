"""Cryofold benchmarks on adenylate kinase: the seed's tables 7.1 and 7.2, its figure 7-5, and epoch cost.

    python benchmarks/bench_cryofold.py homogeneous [--n 10000] [--epochs 10] [--rows exact noisy open random
        no-side-chains no-bonds no-images] [--train-args '--ema-decay 0.99'] [--workdir DIR]
    python benchmarks/bench_cryofold.py heterogeneous [--n 10000] [--epochs 10] [--populations uniform
        barrier-low barrier-high clusters] [--train-args '--lr 3e-5'] [--workdir DIR]
    python benchmarks/bench_cryofold.py compare [--n 10000] [--epochs 10]
    python benchmarks/bench_cryofold.py speed [--n 10000]

The figures in docs/benchmarks.md: `homogeneous`, `heterogeneous --epochs 15 --train-args
'--lr 3e-5 --bond-strength 30'`, then `compare --epochs 15`. Simulated data are reused from
WORKDIR (their directories name the rendering, band-limited maps since 2026-11-26).

Data: `cryofield simulate` of the shipped models (1AKE closed, 4AKE open, chain A aligned on it;
7.13 A C-alpha RMSD apart; band-limited maps at 3 A), box 64, 1.5 A/px, CTF, SNR 0.1, shifts
+-3 px, known poses.

homogeneous (table 7.1 and 7.2): images of the closed form. Starts: the closed form itself
("exact"), it with 6 A uniform noise on every C-alpha ("noisy"), the open form ("open"),
random C-alphas in a 64 A cube ("random"); ablations from the noisy start. Scored in the
frame of the poses (no superposition): C-alpha RMSD to the closed form, the fraction within
3 A, and the map's normalised MSE to the true map (after the least-squares scale, as the
density units differ).

heterogeneous (figure 7-5): images along the open-to-closed trajectory (50 states),
started from the open form with --zdim 1, for populations over the states: uniform, two
"barrier" datasets (fewer images in the middle states) and two separated clusters. Scored:
|Spearman| of z with the true coordinate, the C-alpha RMSD of the structure at the median
latent of each state to that state's true structure, and of the two ends of the latent range
(5th and 95th percentiles) to the open and closed forms.

compare: the maps of the uniform heterogeneous fit against train-vae's on the same images
(zdim 1, 256x3, as many epochs), by the per-image FSC of the seed's protocol (100 images spread
along the coordinate, each image's map at its own latent against its state's true map).

speed: seconds per epoch of train-cryofold (homogeneous) and of train-vae (256x3, zdim 8)
on the same images.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
CRYOFIELD = os.environ.get("CRYOFIELD", str(BIN / "cryofield"))
SIM = ["--box", "64", "--apix", "1.5", "--snr", "0.1", "--shift-px", "3", "--seed", "0"]
ROWS = {  # name: (reference, extra options)
    "exact": ("closed", []),
    "noisy": ("closed", ["--init", "noise", "--init-noise", "6"]),
    "open": ("open", []),
    "random": ("closed", ["--init", "random", "--init-box", "64"]),
    "no-side-chains": ("closed", ["--init", "noise", "--init-noise", "6", "--ablate", "side-chains"]),
    "no-bonds": ("closed", ["--init", "noise", "--init-noise", "6", "--ablate", "bonds"]),
    "no-images": ("closed", ["--init", "noise", "--init-noise", "6", "--ablate", "images"]),
}
POPULATIONS = {  # images over the 50 states (figure 7-5's shapes; the barriers' counts come from _counts)
    "uniform": [],
    "barrier-low": None,
    "barrier-high": None,
    "clusters": ["--population", "gaussian", "--means", "8", "41", "--widths", "3", "3"],
}


def run(cmd: list[str], log: Path) -> float:
    """Run a command (output to ``log``), raising with its tail when it fails; returns wall seconds."""
    started = time.perf_counter()
    with open(log, "w") as fh:
        result = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started


def _models():
    from cryofield.examples import ADK_CLOSED, ADK_OPEN, example_path

    return {"closed": example_path(ADK_CLOSED), "open": example_path(ADK_OPEN)}


def _centroid(path: Path) -> np.ndarray:
    from cryofield.io import read_atomic_model
    from cryofield.io.atoms import electrons

    model = read_atomic_model(path)
    w = electrons(model)
    return (w[:, None] * model.coords_angstrom).sum(0) / w.sum()


def _counts(n: int, kind: str) -> list[str]:
    """Images per state: a dip in the middle states (a barrier), shallow or deep."""
    x = np.linspace(-1, 1, 50)
    depth = {"barrier-low": 0.5, "barrier-high": 0.9}[kind]
    weight = 1 - depth * np.exp(-(x / 0.25) ** 2)
    counts = np.floor(weight / weight.sum() * n).astype(int)
    counts[: n - counts.sum()] += 1
    return ["--counts", *map(str, counts)]


def _nmse(volume: np.ndarray, truth: np.ndarray) -> float:
    scale = float((volume * truth).sum() / (volume * volume).sum())
    return float(((scale * volume - truth) ** 2).sum() / (truth**2).sum())


def _tag(train_args: str) -> str:
    """A folder-name suffix for runs with more options (``'--ema-decay 0.99'`` -> ``'_ema-decay_0.99'``)."""
    return "".join("_" + word.lstrip("-") for word in shlex.split(train_args))


def homogeneous(args) -> None:
    from cryofield.io import read_atomic_model, read_map
    from cryofield.metrics import compare_ca

    work = Path(args.workdir) / "homogeneous"
    work.mkdir(parents=True, exist_ok=True)
    models = _models()
    data = work / f"closed_{args.n}_band-limited"
    if not (data / "particles.star").is_file():
        run([CRYOFIELD, "simulate", "--pdb", str(models["closed"]), "-n", str(args.n), *SIM, "-o", str(data)],
            work / "simulate.log")
    truth, truth_map = read_atomic_model(models["closed"]), read_map(data / "truth_vols/vol_000.mrc")[0]
    center = [f"{c:.4f}" for c in _centroid(models["closed"])]  # the simulation's frame, for every start
    print("| start / ablation | C-alpha RMSD (A) | within 3 A | map NMSE | seconds (warm-up + epochs) |")
    print("|---|---|---|---|---|")
    for name in args.rows:
        reference, extra = ROWS[name]
        out = work / (name + _tag(args.train_args))
        seconds = run([CRYOFIELD, "train-cryofold", str(data / "particles.star"), "--pdb", str(models[reference]),
                       "-o", str(out), "-n", str(args.epochs), "--center", *center, *extra,
                       *shlex.split(args.train_args)], out.with_suffix(".log"))
        score = compare_ca(truth, read_atomic_model(out / "structure.pdb"), superpose=False)
        nmse = _nmse(read_map(out / "volume.mrc")[0], truth_map)
        result = {"row": name, "rmsd": score.rmsd_angstrom, "within_3a": score.within_3a, "nmse": nmse,
                  "seconds": seconds}
        (out / "score.json").write_text(json.dumps(result) + "\n")
        print(f"| {name} | {score.rmsd_angstrom:.2f} | {100 * score.within_3a:.1f} % | {nmse:.3f} | {seconds:.0f} |",
              flush=True)


def heterogeneous(args) -> None:
    from scipy.stats import spearmanr

    from cryofield.io import read_atomic_model
    from cryofield.metrics import compare_ca
    from cryofield.simulate.atomic import interpolation_trajectory

    work = Path(args.workdir) / "heterogeneous"
    work.mkdir(parents=True, exist_ok=True)
    models = _models()
    open_form, closed = read_atomic_model(models["open"]), read_atomic_model(models["closed"])
    shared, frames = interpolation_trajectory(open_form, closed, 50)  # the simulated states, open first
    from cryofield.io.atoms import electrons

    w = electrons(shared)  # the simulation's frame: the first state's centroid
    center = [f"{c:.4f}" for c in (w[:, None] * shared.coords_angstrom).sum(0) / w.sum()]
    ca = shared.atom_name == "CA"
    print("| population | \\|Spearman\\| z | RMSD open end / closed end (A) | RMSD along the states: median, max (A) "
          "| seconds |")
    print("|---|---|---|---|---|")
    for name in args.populations:
        data = work / f"{name}_{args.n}_band-limited"
        population = POPULATIONS[name] if POPULATIONS[name] is not None else _counts(args.n, name)
        if not (data / "particles.star").is_file():
            run([CRYOFIELD, "simulate", "--pdb", str(models["open"]), "--pdb", str(models["closed"]), "--states", "50",
                 "-n", str(args.n), *population, *SIM, "-o", str(data)], work / f"simulate_{name}.log")
        out = work / name
        seconds = run([CRYOFIELD, "train-cryofold", str(data / "particles.star"), "--pdb", str(models["open"]),
                       "-o", str(out), "--zdim", "1", "-n", str(args.epochs), "--center", *center,
                       *shlex.split(args.train_args)],
                      work / f"{name}.log")
        z = np.load(out / "z.npy")[:, 0]
        states = np.load(data / "truth.npz")["state"]
        rho = abs(spearmanr(z, states).statistic)
        present = np.unique(states)
        medians = np.array([np.median(z[states == s]) for s in present])
        ends = np.percentile(z, [5, 95])
        if np.corrcoef(medians, present)[0, 1] < 0:
            ends = ends[::-1]  # the open end first
        path = work / f"{name}_z.txt"
        np.savetxt(path, np.concatenate([ends, medians])[:, None])
        run([CRYOFIELD, "eval-cryofold", str(out), "--z-file", str(path), "-o", str(out / "eval"), "--no-maps"],
            work / f"{name}_eval.log")

        def rmsd_to(i: int, coords: np.ndarray, out: Path = out) -> float:
            fitted = read_atomic_model(out / "eval" / f"structure_{i:03d}.pdb")
            truth = replace(shared.select(ca), coords_angstrom=coords[ca])
            return compare_ca(truth, fitted, superpose=False).rmsd_angstrom

        end_open, end_closed = rmsd_to(0, frames[0]), rmsd_to(1, frames[-1])
        along = np.array([rmsd_to(2 + i, frames[s]) for i, s in enumerate(present)])
        result = {"population": name, "spearman": rho, "rmsd_open_end": end_open, "rmsd_closed_end": end_closed,
                  "rmsd_along": along.tolist(), "seconds": seconds}
        (out / "score.json").write_text(json.dumps(result) + "\n")
        print(f"| {name} | {rho:.3f} | {end_open:.2f} / {end_closed:.2f} | {np.median(along):.2f}, "
              f"{along.max():.2f} | {seconds:.0f} |", flush=True)


def compare(args) -> None:
    """Per-image FSC (the seed's protocol, 100 images) of the uniform heterogeneous fit's maps and of
    train-vae's (zdim 1, 256x3, as many epochs) on the same images; |Spearman| of both latents."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train import describe, our_maps, score_latents_and_maps
    from cryofield.io import read_map

    work = Path(args.workdir) / "heterogeneous"
    data, fit, vae = work / f"uniform_{args.n}_band-limited", work / "uniform", work / f"uniform_vae_{args.epochs}"
    if not (fit / "z.npy").is_file():
        raise SystemExit(f"no fit in {fit}: run `heterogeneous --populations uniform` first")
    if not (vae / "z.npy").is_file():
        seconds = run([CRYOFIELD, "train-vae", str(data / "particles.star"), "-o", str(vae), "--zdim", "1", "-n",
                       str(args.epochs)], work / "uniform_vae.log")
        print(f"train-vae --zdim 1, {args.epochs} epochs: {seconds:.0f} s")

    def cryofold_maps(zs: np.ndarray) -> list[np.ndarray]:
        path, out = work / "compare_z.txt", work / "compare_maps"
        np.savetxt(path, zs)
        run([CRYOFIELD, "eval-cryofold", str(fit), "--z-file", str(path), "-o", str(out)], work / "compare_eval.log")
        return [read_map(out / f"vol_{i:03d}.mrc")[0] for i in range(len(zs))]

    rows = np.arange(args.n)
    for name, z, maps_for in (("Cryofold (train-cryofold --zdim 1)", np.load(fit / "z.npy"), cryofold_maps),
                              ("train-vae --zdim 1", np.load(vae / "z.npy"), our_maps(vae))):
        print(f"{name}:\n{describe(score_latents_and_maps(z, data, rows, maps_for))}", flush=True)


def speed(args) -> None:
    work = Path(args.workdir) / "speed"
    work.mkdir(parents=True, exist_ok=True)
    models = _models()
    data = Path(args.workdir) / "homogeneous" / f"closed_{args.n}_band-limited"
    if not (data / "particles.star").is_file():
        run([CRYOFIELD, "simulate", "--pdb", str(models["closed"]), "-n", str(args.n), *SIM, "-o", str(data)],
            work / "simulate.log")
    star = str(data / "particles.star")
    run([CRYOFIELD, "train-cryofold", star, "--pdb", str(models["closed"]), "-o", str(work / "cryofold"), "-n", "1",
         "--warmup-epochs", "0"], work / "cryofold.log")
    run([CRYOFIELD, "train-vae", star, "-o", str(work / "vae"), "-n", "1", "--zdim", "8"], work / "vae.log")
    for name in ("cryofold", "vae"):
        record = json.loads((work / name / "log.jsonl").read_text().splitlines()[-1])
        print(f"{name}: one epoch of {args.n} images in {record['seconds']:.1f} s "
              f"({record['images_per_second']:.0f} images/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["homogeneous", "heterogeneous", "compare", "speed"])
    parser.add_argument("--workdir", default="/tmp/cryofield-bench-cryofold")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--train-args", default="",
                        help="homogeneous, heterogeneous: more train-cryofold options ('--lr 3e-5')")
    parser.add_argument("--populations", nargs="+", choices=list(POPULATIONS), default=list(POPULATIONS))
    args = parser.parse_args()
    {"homogeneous": homogeneous, "heterogeneous": heterogeneous, "compare": compare, "speed": speed}[args.what](args)


if __name__ == "__main__":
    main()
