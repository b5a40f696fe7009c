"""Accuracy on the realistic recipe (issue 24, item 4): junk found, motion recovered, retraining.

    python benchmarks/bench_realistic.py [--n 2500] [--epochs 5] [--box 128] [--workdir DIR] [--peer PATH]

1. `cryofield simulate` makes adenylate kinase along its closed -> open path (10 states) as
   real data look: ``--box`` px at 1 A/px, SNR 0.03 in a 40 px radius (at 128 px), 20 % junk
   of four kinds, 2 degree pose errors and 0.5 px shift errors in the metadata, one defocus per
   micrograph from RELION's example STAR file, float16 stacks.
2. Three runs with the same networks (256x3 encoder and decoder, zdim 8, batch 8, lr 1e-4) and
   epochs: `cryofield train-vae`, `cryofield train-vae --refine-poses`, `cryodrgn train_vae`.
3. Each run is scored by the same code:
   - junk: k-means (k = 20) of its latents, and the clusters whose members are mostly junk
     by the truth flagged (the choice a user makes by looking at the clusters' maps, here made
     by the truth so that it is the same for both tools): precision and recall of the flagged
     particles as junk; and, needing no choice, the 5-fold cross-validated ROC AUC of a
     15-nearest-neighbour classifier from z to junk or not;
   - motion, on the true particles only: |Spearman| of latent PC1 with the true coordinate,
     and the per-image FSC of maps at each image's z (100 images along the coordinate; the
     peer's maps from its own `eval_vol`).
4. The particles the first cryofield run keeps (its flagged clusters removed) are written by
   `cryofield select` and trained again from scratch for the same epochs; the true particles
   among them are scored again: the maps should improve once the junk is gone.

Prints one line per run and a Markdown table.
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

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import ARCH, CRYOFIELD, our_maps, score_latents_and_maps, timed  # noqa: E402

DATA = Path(os.environ.get("CRYOFIELD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "cryofield" / "examples"


def simulate(out: Path, n: int, box: int) -> None:
    """The realistic dataset (module docstring), once."""
    if (out / "truth.npz").is_file():
        return
    subprocess.run([CRYOFIELD, "simulate", "--pdb", str(EXAMPLES / "1ake_closed.pdb"), "--pdb",
                    str(EXAMPLES / "4ake_open_chainA_aligned.pdb"), "--states", "10", "--box", str(box),
                    "--apix", "1.0", "-n", str(n), "--snr", "0.03", "--snr-radius", str(40 * box // 128),
                    "--shift-px", "4", "--junk", "0.2", "--pose-error", "2", "--shift-error", "0.5",
                    "--micrographs", str(max(1, n // 100)), "--float16", "--ctf-from",
                    str(DATA / "relion/relion31.star"), "-o", str(out)], check=True, capture_output=True)


def junk_scores(z: np.ndarray, junk: np.ndarray) -> dict:
    """Junk found in latents ``z`` (N, zdim) against the true labels ``junk`` (N,) (module docstring)."""
    from sklearn.cluster import KMeans
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    labels = KMeans(n_clusters=20, n_init=10, random_state=0).fit_predict(z)
    flagged_clusters = [c for c in range(20) if (labels == c).any() and junk[labels == c].mean() > 0.5]
    flagged = np.isin(labels, flagged_clusters)
    true_pos = int((flagged & junk).sum())
    auc = cross_val_score(KNeighborsClassifier(15), z, junk, cv=5, scoring="roc_auc").mean()
    return {"flagged_clusters": len(flagged_clusters), "flagged": int(flagged.sum()),
            "precision": true_pos / max(int(flagged.sum()), 1), "recall": true_pos / max(int(junk.sum()), 1),
            "knn_auc": float(auc), "kept": np.flatnonzero(~flagged)}


def peer_maps(peer: str, run: Path, work: Path, apix: float):
    """``maps_for`` of :func:`score_latents_and_maps` for a cryoDRGN run, through its own ``eval_vol``."""
    from cryofield.io import read_map

    def maps_for(zs):
        np.savetxt(work / "zpicks.txt", zs)
        weights = sorted(run.glob("weights*.pkl"), key=os.path.getmtime)[-1]  # the last epoch's
        subprocess.run([peer, "eval_vol", str(weights), "-c", str(run / "config.yaml"), "--zfile",
                        str(work / "zpicks.txt"), "-o", str(work / "maps"), "--Apix", str(apix)], check=True,
                       capture_output=True)
        return [read_map(work / "maps" / f"vol_{i + 1:03d}.mrc")[0] for i in range(len(zs))]
    return maps_for


def describe(name: str, seconds: float, junk: dict, motion: dict) -> str:
    fsc = motion["per_image_fsc"]
    return (f"{name}: {seconds:.0f} s; junk: {junk['flagged_clusters']} clusters flagged, precision "
            f"{junk['precision']:.3f}, recall {junk['recall']:.3f}, kNN AUC {junk['knn_auc']:.3f}; motion: |Spearman| "
            f"PC1 {motion['spearman_pc1']:.3f}, per-image FSC 0.5 at {fsc['resolution_px_mean']:.2f} +- "
            f"{fsc['resolution_px_std']:.2f} px (AUC {fsc['auc_mean']:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--box", type=int, default=128)
    parser.add_argument("--workdir", default="/tmp/cryofield-bench-realistic")
    parser.add_argument("--peer", default=os.environ.get("CRYODRGN", "/tmp/peer/bin/cryodrgn"))
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--no-refine", action="store_true", help="skip the --refine-poses run")
    args = parser.parse_args()
    work = Path(args.workdir)
    data = work / "data"
    work.mkdir(parents=True, exist_ok=True)
    simulate(data, args.n, args.box)
    truth = np.load(data / "truth.npz")
    junk = truth["junk_kind"] > 0
    particles = np.flatnonzero(~junk)
    star = data / "particles.star"
    epochs = ["-n", str(args.epochs)]
    results = []

    def ours(name: str, run: Path, star: Path, rows: np.ndarray, extra: list[str]) -> dict:
        shutil.rmtree(run, ignore_errors=True)
        seconds, rss = timed([CRYOFIELD, "train-vae", str(star), "-o", str(run), *epochs, *ARCH, *extra])
        z = np.load(run / "z.npy")
        real = ~junk[rows]
        junk_score = junk_scores(z, junk[rows])
        motion = score_latents_and_maps(z[real], data, rows[real], our_maps(run))
        print(describe(name, seconds, junk_score, motion), flush=True)
        results.append((name, len(rows), seconds, junk_score, motion))
        return junk_score

    first = ours("cryofield train-vae", work / "vae", star, np.arange(args.n), [])
    if not args.no_refine:
        ours("cryofield train-vae --refine-poses", work / "vae_refine", star, np.arange(args.n), ["--refine-poses"])
    peer = shutil.which(args.peer) or (args.peer if Path(args.peer).exists() else None)
    if peer and not args.no_peer:
        theirs = work / "cryodrgn"
        shutil.rmtree(theirs, ignore_errors=True)
        theirs.mkdir()
        for what in ("pose", "ctf"):
            subprocess.run([peer, f"parse_{what}_star", str(star), "-o", str(theirs / f"{what}.pkl")], check=True,
                           capture_output=True)
        seconds, rss = timed([peer, "train_vae", str(star), "--datadir", str(data), "--poses",
                              str(theirs / "pose.pkl"), "--ctf", str(theirs / "ctf.pkl"), *epochs, "-o",
                              str(theirs / "run"), "--no-analysis", *ARCH])
        from cryofield.io import load_legacy_pickle

        z_file = theirs / "run" / "z.pkl"
        z = np.asarray(load_legacy_pickle(z_file if z_file.exists() else theirs / "run" / f"z.{args.epochs - 1}.pkl"))
        junk_score = junk_scores(z, junk)
        motion = score_latents_and_maps(z[particles], data, particles, peer_maps(peer, theirs / "run", theirs, 1.0))
        print(describe("cryodrgn train_vae", seconds, junk_score, motion), flush=True)
        results.append(("cryodrgn train_vae", args.n, seconds, junk_score, motion))
    # retrain on what the first cryofield run kept
    kept = first["kept"]
    np.savetxt(work / "kept.txt", kept, fmt="%d")
    kept_star = data / "kept.star"  # beside the stacks it names
    subprocess.run([CRYOFIELD, "select", str(star), "--ind", str(work / "kept.txt"), "-o", str(kept_star)],
                   check=True, capture_output=True)
    ours("cryofield train-vae on the kept particles", work / "vae_kept", kept_star, kept, [])
    print("\n| run | images | time | junk clusters flagged | precision | recall | kNN AUC | |Spearman| PC1 | "
          "per-image FSC 0.5 (px) | FSC AUC |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, count, seconds, j, m in results:
        fsc = m["per_image_fsc"]
        print(f"| {name} | {count} | {seconds:.0f} s | {j['flagged_clusters']} | {j['precision']:.3f} | "
              f"{j['recall']:.3f} | {j['knn_auc']:.3f} | {m['spearman_pc1']:.3f} | {fsc['resolution_px_mean']:.2f} "
              f"+- {fsc['resolution_px_std']:.2f} | {fsc['auc_mean']:.3f} |")
    (work / "results.json").write_text(json.dumps(
        [{"run": name, "images": count, "seconds": seconds, "junk": {k: v for k, v in j.items() if k != "kept"},
          "motion": m} for name, count, seconds, j, m in results], indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
