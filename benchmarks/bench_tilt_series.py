"""Tilt-series VAE accuracy and speed (issue 26, item 4): against single images and against cryoDRGN-ET.

    python benchmarks/bench_tilt_series.py [--n 2000] [--snr 0.01] [--epochs 5] [--single-epochs 50]
                                           [--workdir DIR] [--peer PATH] [--datasets motion classes]
                                           [--peer-datasets motion classes]

1. `cryofield simulate --tilt-series` makes two datasets of adenylate kinase, 64 px at 1.5 A/px,
   ``--n`` particles x 21 tilts (+-60 degrees, 6 degrees apart, dose-symmetric, 5 e/A^2 per
   tilt: 100 e/A^2 in all), SNR ``--snr`` per tilt image (0.01 by default: a tenth of a
   single-particle image's dose gives about a tenth of its SNR), shifts +-3 px, per-tilt defocus:
   ``motion``, 50 states along the closed -> open path (a continuous motion), and ``classes``,
   5 states along it in equal numbers (a 5-class mixture).
2. Three runs per dataset with the same networks (256 x 3 encoder and decoder, a 64-wide tilt
   embedding and a 256 x 3 network after the pooling, batches of 16 particles, lr 1e-4; zdim 1
   for the motion, 8 for the classes):
   - `cryofield train-vae --tilt-series --ntilts 10` for ``--epochs``;
   - `cryofield train-vae` on each particle's 0-degree image alone (single particles) for
     ``--single-epochs`` (by default as many images seen as the tilt-series run's);
   - `cryodrgn train_vae --encode-mode tilt --ntilts 10 --dose-per-tilt 5 --angle-per-tilt 6`
     for ``--epochs`` (its STAR file gains `_rlnGroupName`, the column it groups tilts by).
3. Scores: |Spearman| of z (its first principal component) with the true state for the motion;
   the adjusted Rand index of k-means (k = 5) of z against the true class for the classes.
   Speed: seconds per training epoch, and particles per second.

Prints one line per run and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import CRYOFIELD, peer_epoch_seconds, timed  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "cryofield" / "examples"
NETWORKS = ["--enc-dim", "256", "--enc-layers", "3", "--dec-dim", "256", "--dec-layers", "3", "-b", "16",
            "--lr", "1e-4"]
DATASETS = {"motion": (50, 1, 1), "classes": (5, 8, 2)}  # states, zdim, seed
NTILTS, DOSE, STEP = 10, 5.0, 6.0


def simulate(out: Path, n: int, states: int, seed: int, snr: float) -> None:
    """One dataset of the module docstring, once."""
    if (out / "truth.npz").is_file():
        return
    subprocess.run([CRYOFIELD, "simulate", "--pdb", str(EXAMPLES / "4ake_open_chainA_aligned.pdb"), "--pdb",
                    str(EXAMPLES / "1ake_closed.pdb"), "--states", str(states), "--box", "64", "--apix", "1.5",
                    "-n", str(n), "--snr", str(snr), "--shift-px", "3", "--tilt-series", "--tilt-range", "-60", "60",
                    "--tilt-step", str(STEP), "--dose-per-tilt", str(DOSE), "--seed", str(seed), "-o", str(out)],
                   check=True, capture_output=True)


def zero_degree_star(data: Path) -> Path:
    """A STAR file of each particle's least exposed image (its 0-degree tilt), for single-particle training."""
    from cryofield.io import read_particles

    star = data / "zero_degree.star"
    if not star.is_file():
        table = read_particles(data / "particles.star", tilt_series=True)
        rows = data / "zero_degree_rows.txt"
        np.savetxt(rows, table.tilts.members(1)[:, 0], fmt="%d")
        subprocess.run([CRYOFIELD, "select", str(data / "particles.star"), "--ind", str(rows), "-o", str(star)],
                       check=True, capture_output=True)
    return star


def peer_star(data: Path) -> Path:
    """The particles with `_rlnGroupName` (cryoDRGN groups the tilts of a particle by it)."""
    from cryofield.io.star import read_star, write_star

    star = data / "peer.star"
    if not star.is_file():
        blocks = read_star(data / "particles.star")
        table = blocks["particles"].table
        table["rlnGroupName"] = table["rlnTomoParticleName"]
        write_star(star, blocks)
    return star


def score(z: np.ndarray, state: np.ndarray, name: str) -> float:
    """|Spearman| of z's first principal component with the state (motion), or the ARI of k-means (classes)."""
    from scipy.stats import spearmanr
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    if name == "motion":
        pc1 = z[:, 0] if z.shape[1] == 1 else PCA(1).fit_transform(z)[:, 0]
        return abs(spearmanr(pc1, state).statistic)
    labels = KMeans(5, n_init=10, random_state=0).fit_predict(z)
    return adjusted_rand_score(state, labels)


def our_epoch_seconds(run: Path) -> list[float]:
    """Seconds of each training epoch of a cryofield run, from its ``log.jsonl``."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["seconds"] for r in records if "mse" in r and "seconds" in r]


def run_ours(star: Path, out: Path, epochs: int, zdim: int, series: bool) -> tuple[float, np.ndarray, list[float]]:
    """``(wall seconds, z, epoch seconds)`` of `cryofield train-vae`."""
    shutil.rmtree(out, ignore_errors=True)
    extra = ["--tilt-series", "--ntilts", str(NTILTS)] if series else []
    seconds, _ = timed([CRYOFIELD, "train-vae", str(star), "-o", str(out), "-n", str(epochs), "--zdim", str(zdim)]
                       + extra + NETWORKS)
    return seconds, np.load(out / "z.npy"), our_epoch_seconds(out)


def run_peer(peer: str, star: Path, out: Path, epochs: int, zdim: int) -> tuple[float, np.ndarray, list[float]]:
    """``(wall seconds, z, epoch seconds)`` of `cryodrgn train_vae --encode-mode tilt`."""
    from cryofield.io import load_legacy_pickle

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for what in ("pose", "ctf"):
        subprocess.run([peer, f"parse_{what}_star", str(star), "-o", str(out / f"{what}.pkl"), "-D", "64",
                        "--Apix", "1.5"], check=True, capture_output=True)
    seconds, _ = timed([peer, "train_vae", str(star), "--encode-mode", "tilt", "--poses", str(out / "pose.pkl"),
                        "--ctf", str(out / "ctf.pkl"), "--zdim", str(zdim), "-n", str(epochs), "--ntilts",
                        str(NTILTS), "--dose-per-tilt", str(DOSE), "--angle-per-tilt", str(STEP), "--tdim", "256",
                        "--tlayers", "3", "--t-emb-dim", "64", "--datadir", str(star.parent), "--no-analysis", "-o",
                        str(out / "run")] + NETWORKS)
    z_file = out / "run" / "z.pkl"
    z = np.asarray(load_legacy_pickle(z_file if z_file.exists() else out / "run" / f"z.{epochs - 1}.pkl"))
    return seconds, z, peer_epoch_seconds(out / "run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--snr", type=float, default=0.01, help="per tilt image (default 0.01)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--single-epochs", type=int, help="default: --epochs x 10, as many images seen")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_tilt_series"))
    parser.add_argument("--peer", default=shutil.which("cryodrgn") or "/tmp/peer/bin/cryodrgn")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--peer-datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS),
                        help="datasets the peer runs on (default both)")
    args = parser.parse_args()
    single_epochs = args.single_epochs or args.epochs * NTILTS
    rows = []
    for name in args.datasets:
        states, zdim, seed = DATASETS[name]
        data = args.workdir / name
        simulate(data, args.n, states, seed, args.snr)
        state = np.load(data / "truth.npz")["state"]
        runs = [("cryofield, tilt series", run_ours,
                 (data / "particles.star", args.workdir / f"{name}_series", args.epochs, zdim, True)),
                ("cryofield, 0-degree images", run_ours,
                 (zero_degree_star(data), args.workdir / f"{name}_single", single_epochs, zdim, False))]
        if name in args.peer_datasets and Path(args.peer).exists():
            runs.append(("cryoDRGN 4.3.1, --encode-mode tilt", run_peer,
                         (args.peer, peer_star(data), args.workdir / f"{name}_peer", args.epochs, zdim)))
        for label, go, given in runs:
            seconds, z, epochs = go(*given)
            value = score(z, state, name)
            per_epoch = float(np.median(epochs)) if epochs else float("nan")
            rows.append((name, label, len(epochs), value, seconds, per_epoch, args.n / per_epoch))
            print(f"{name}: {label}: {'|Spearman|' if name == 'motion' else 'ARI'} {value:.3f}; {len(epochs)} epochs, "
                  f"{seconds:.0f} s in all, {per_epoch:.1f} s per epoch ({args.n / per_epoch:.1f} particles/s)",
                  flush=True)
    print("\n| dataset | run | epochs | score | seconds | s/epoch | particles/s |\n|---|---|---|---|---|---|---|")
    for name, label, epochs, value, seconds, per_epoch, rate in rows:
        metric = "\\|Spearman\\|" if name == "motion" else "ARI"
        print(f"| {name} | {label} | {epochs} | {metric} {value:.3f} | {seconds:.0f} | {per_epoch:.1f} | {rate:.1f} |")


if __name__ == "__main__":
    main()
