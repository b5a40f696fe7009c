"""Analysis benchmarks (issue 5): accuracy of clustering and landscape analysis, and scale.

    python benchmarks/bench_analysis.py accuracy [--n 3000] [--epochs 10] [--run-1d RUN --truth-1d DATA]
    python benchmarks/bench_analysis.py scale [--n 1000000] [--from-run RUN]
    python benchmarks/bench_analysis.py maps --ours RUN --theirs PEER_RUN [--peer /tmp/peer/bin/cryodrgn]

accuracy: a discrete mixture of 3 maps (adenylate kinase with two domains in 3 random
configurations, the seed's discrete recipe with K = 3), ``--n`` images, 64^2, SNR 0.1, CTF,
shifts; `train-vae` (256x3, zdim 8) for ``--epochs``; then the adjusted Rand index with the
true states of k-means on z with k = 3 (`analyze --ksample 3`) and of the landscape's
agglomerative clustering of the sketch with M = 3 (`landscape -M 3`). On a 1-D motion (a run
given by ``--run-1d`` with its simulation ``--truth-1d``, or the same recipe simulated and
trained here along the closed -> open trajectory in 50 states), |Spearman| of volume PC1 with
the true coordinate, for the sketch and for every particle through phi.

scale: ``--n`` latents (zdim 8; resampled with noise from a run's z.npy when ``--from-run``
is given, else a mixture of a curve and clusters): `analyze --z --no-maps` (wall time, peak
RSS) and `graph-traversal --no-maps` between two far-apart particles.

maps: seconds per map of `eval-vol` for a cryofield run and of `cryodrgn eval_vol` for a
cryoDRGN run of the same architecture, each from the slope between 8 and 32 maps (so that
start-up is not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench_train import ARCH, CRYOFIELD, MOLMAP, RECIPES, simulate_accuracy_dataset, timed


def ari(a: np.ndarray, b: np.ndarray) -> float:
    from cryofield.metrics import adjusted_rand_index

    return float(adjusted_rand_index(np.asarray(a), np.asarray(b)))


def train(data: Path, out: Path, epochs: int) -> float:
    if (out / "z.npy").is_file():
        return 0.0
    seconds, _ = timed([CRYOFIELD, "train-vae", str(data / "particles.star"), "-o", str(out), "-n", str(epochs)]
                       + ARCH)
    return seconds


def landscape_run(run: Path, states: int, sketch: int, phi_samples: int) -> tuple[float, Path]:
    out = run / "landscape"
    seconds, _ = timed([CRYOFIELD, "landscape", str(run), "-o", str(out), "--sketch", str(sketch), "-M", str(states),
                        "--phi-samples", str(phi_samples)])
    return seconds, out


def accuracy(args) -> None:
    from scipy.stats import spearmanr

    from cryofield.examples import ADK_CLOSED, example_path

    work = Path(args.workdir) / "accuracy"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "discrete3"
    if not (data / "truth.npz").is_file():
        recipe = RECIPES["discrete"][:-1] + ["3"]  # --random-configs 3
        subprocess.run([CRYOFIELD, "simulate", *MOLMAP, "--pdb", str(example_path(ADK_CLOSED))] + recipe +
                       ["--box", "64", "--apix", "1.5", "-n", str(args.n), "--snr", "0.1", "--shift-px", "3",
                        "--seed", "0", "-o", str(data)], check=True, capture_output=True)
    truth = np.load(data / "truth.npz")["state"]
    run = work / "discrete3_z8"
    seconds = train(data, run, args.epochs)
    print(f"discrete 3 states: {args.n} images, train-vae zdim 8 x {args.epochs} epochs ({seconds:.0f} s)", flush=True)
    subprocess.run([CRYOFIELD, "analyze", str(run), "--ksample", "3", "--no-maps", "--no-umap"], check=True,
                   capture_output=True)
    print(f"  k-means k=3 on z: ARI {ari(np.load(run / 'analysis/kmeans3/labels.npy'), truth):.3f}")
    seconds, land = landscape_run(run, 3, args.sketch, args.phi_samples)
    print(f"  landscape -M 3 (sketch {args.sketch}): ARI {ari(np.load(land / 'states3/labels.npy'), truth):.3f} "
          f"({seconds:.0f} s)", flush=True)

    if args.run_1d:
        run1, data1 = Path(args.run_1d), Path(args.truth_1d)
    else:
        data1 = simulate_accuracy_dataset(work / "motion", n=args.n)
        run1 = work / "motion_z8"
        train(data1, run1, args.epochs)
    config = json.loads((run1 / "config.json").read_text())
    rows = np.loadtxt(config["ind"], dtype=int, ndmin=1) if config.get("ind") else None
    coordinate = np.load(data1 / "truth.npz")["coordinates"]
    coordinate = coordinate[:, 0] if coordinate.ndim > 1 else coordinate
    coordinate = coordinate[rows] if rows is not None else coordinate[:len(np.load(run1 / "z.npy"))]
    copy = work / "motion_landscape_run"  # landscape writes into the run: work on a copy of its small files
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(run1, copy, ignore=shutil.ignore_patterns("z_refined*", "analysis", "landscape"))
    seconds, land = landscape_run(copy, 10, args.sketch, args.phi_samples)
    sketch_rows = np.loadtxt(land / "sketch/centers_ind.txt", dtype=int)
    sketch_coordinate = np.load(data1 / "truth.npz")["coordinates"]
    sketch_coordinate = (sketch_coordinate[:, 0] if sketch_coordinate.ndim > 1 else sketch_coordinate)[sketch_rows]
    rho_sketch = abs(spearmanr(np.load(land / "sketch_pc.npy")[:, 0], sketch_coordinate)[0])
    rho_all = abs(spearmanr(np.load(land / "z_vol_pc.npy")[:, 0], coordinate)[0])
    print(f"1-D motion ({len(coordinate)} particles, {run1}): volume PC1 |Spearman| {rho_sketch:.3f} on the sketch, "
          f"{rho_all:.3f} on every particle through phi ({seconds:.0f} s)")


def scale(args) -> None:
    work = Path(args.workdir) / "scale"
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if args.from_run:
        base = np.load(Path(args.from_run) / "z.npy")
        z = base[rng.integers(0, len(base), args.n)] + 0.25 * base.std(0) * rng.normal(size=(args.n, base.shape[1]))
    else:
        t = rng.uniform(0, 1, args.n)
        z = np.column_stack([np.cos(3 * t), np.sin(3 * t), t, *(0.3 * rng.normal(size=(5, args.n)))])
        z += 0.1 * rng.normal(size=z.shape)
    z = z.astype(np.float32)
    run = work / "run"
    run.mkdir(exist_ok=True)
    np.save(run / "z.npy", z)
    from cryofield.train import TrainConfig

    TrainConfig(particles="none", outdir=str(run), zdim=z.shape[1]).save(run / "config.json")
    shutil.rmtree(work / "analysis", ignore_errors=True)
    seconds, rss = timed([CRYOFIELD, "analyze", "--z", str(run / "z.npy"), "-o", str(work / "analysis")])
    print(f"analyze --z on {args.n} latents (zdim {z.shape[1]}), no maps: {seconds:.1f} s, peak RSS {rss:.0f} MB",
          flush=True)
    # anchors: the particles at the 5th and 95th percentiles of latent PC1 (outliers may sit apart from the graph)
    pc1 = np.load(work / "analysis/z_pca.npy")[:, 0]
    start, end = (int(np.argmin(np.abs(pc1 - np.percentile(pc1, q)))) for q in (5, 95))
    seconds, rss = timed([CRYOFIELD, "graph-traversal", str(run), "--anchors", str(start), str(end), "-o",
                          str(work / "graph"), "--no-maps", "--avg-neighbors", str(args.avg_neighbors)])
    steps = len(np.loadtxt(work / "graph/z_path.txt"))
    print(f"graph-traversal on them (anchors {start} and {end}): {seconds:.1f} s, peak RSS {rss:.0f} MB, path of "
          f"{steps} particles", flush=True)


def maps(args) -> None:
    work = Path(args.workdir) / "maps"
    work.mkdir(parents=True, exist_ok=True)
    zdim = json.loads((Path(args.ours) / "config.json").read_text())["zdim"]
    rng = np.random.default_rng(0)
    times = {}
    for count in (8, 32):
        z = rng.normal(size=(count, zdim))
        np.savetxt(work / f"z{count}.txt", z)
        for tool, extra in (("ours", []), ("ours-fp32", ["--no-amp"])):  # bf16 (the default) and fp32
            out = work / f"{tool}{count}"
            shutil.rmtree(out, ignore_errors=True)
            times[(tool, count)] = timed([CRYOFIELD, "eval-vol", str(args.ours), "--z-file",
                                          str(work / f"z{count}.txt"), "-o", str(out), *extra])[0]
        if args.theirs:
            theirs = Path(args.theirs)
            weights = sorted(theirs.glob("weights*.pkl"), key=os.path.getmtime)[-1]
            out = work / f"theirs{count}"
            shutil.rmtree(out, ignore_errors=True)
            times[("theirs", count)] = timed([args.peer, "eval_vol", str(weights), "-c", str(theirs / "config.yaml"),
                                              "--zfile", str(work / f"z{count}.txt"), "-o", str(out)])[0]
    per_map = {tool: (times[(tool, 32)] - times[(tool, 8)]) / 24 for tool in ("ours", "ours-fp32", "theirs")
               if (tool, 8) in times}
    for tool, label in (("ours", "cryofield eval-vol (bf16, default)"), ("ours-fp32", "cryofield eval-vol --no-amp")):
        print(f"{label}: {times[(tool, 8)]:.1f} s for 8 maps, {times[(tool, 32)]:.1f} s for 32: "
              f"{per_map[tool]:.3f} s per map")
    if "theirs" in per_map:
        print(f"cryodrgn eval_vol: {times[('theirs', 8)]:.1f} s for 8 maps, {times[('theirs', 32)]:.1f} s for 32: "
              f"{per_map['theirs']:.3f} s per map; cryofield is {per_map['theirs'] / per_map['ours']:.2f}x faster "
              f"per map ({per_map['theirs'] / per_map['ours-fp32']:.2f}x with --no-amp)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["accuracy", "scale", "maps"])
    parser.add_argument("--workdir", default="/tmp/cryofield-bench-analysis")
    parser.add_argument("--n", type=int, help="accuracy: images (default 3000); scale: latents (default 1,000,000)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sketch", type=int, default=200, help="accuracy: landscape sketch size (default 200)")
    parser.add_argument("--phi-samples", type=int, default=1000, help="accuracy: landscape phi samples")
    parser.add_argument("--run-1d", help="accuracy: a trained run on a 1-D motion")
    parser.add_argument("--truth-1d", help="accuracy: its simulation folder (truth.npz)")
    parser.add_argument("--from-run", help="scale: resample latents from this run's z.npy")
    parser.add_argument("--avg-neighbors", type=float, default=9,
                        help="scale: graph degree (default 9: at the seed's 5, 10^6 8-D latents fall apart)")
    parser.add_argument("--ours", help="maps: a cryofield run")
    parser.add_argument("--theirs", help="maps: a cryoDRGN run of the same architecture")
    parser.add_argument("--peer", default=os.environ.get("CRYODRGN", "/tmp/peer/bin/cryodrgn"))
    args = parser.parse_args()
    if args.n is None:
        args.n = 3000 if args.what == "accuracy" else 1_000_000
    if args.run_1d and not args.truth_1d:
        sys.exit("--run-1d needs --truth-1d")
    {"accuracy": accuracy, "scale": scale, "maps": maps}[args.what](args)


if __name__ == "__main__":
    main()
