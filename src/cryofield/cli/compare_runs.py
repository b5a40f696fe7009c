"""``cryofield compare-runs``: how reproducible two runs on the same particles are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cryofield.cli._common import command_parser
from cryofield.cli._latents import load_run_latents
from cryofield.errors import InputError

NAME = "compare-runs"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Compare two train-vae runs on the same particles: k-means on each "
                            "run's latents, clusters matched between the runs (Hungarian assignment), agreement "
                            "and the confusion matrix.", """
        cryofield compare-runs runA/ runB/
        cryofield compare-runs runA/ runB/ --k 10 --plot confusion.png --json
        """)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--k", type=int, default=20, help="k-means clusters in each run (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, help="save the confusion matrix as an image")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def run(args) -> None:
    import argparse

    from cryofield.analysis import kmeans_clusters
    from cryofield.analysis.selection import match_clusters

    loaded = [load_run_latents(argparse.Namespace(workdir=w, z=None)) for w in (args.run_a, args.run_b)]
    (za, rows_a), (zb, rows_b) = loaded
    if not np.array_equal(rows_a, rows_b):
        raise InputError(args.run_b, f"trained on other particles than {args.run_a} ({len(rows_b)} vs {len(rows_a)})")
    if not 2 <= args.k <= len(za):
        raise InputError(Path("--k"), f"--k {args.k}: between 2 and the {len(za)} particles")
    a = kmeans_clusters(za, args.k, seed=args.seed).labels
    b = kmeans_clusters(zb, args.k, seed=args.seed).labels
    mapping, agreement, confusion = match_clusters(a, b)
    if args.plot:
        from cryofield.reports import plot_confusion

        plot_confusion(args.plot, confusion, f"{args.run_a.name} vs {args.run_b.name}: agreement {agreement:.3f}")
    if args.json:
        print(json.dumps({"agreement": agreement, "mapping": mapping.tolist(), "confusion": confusion.tolist(),
                          "k": args.k, "particles": len(za)}, indent=2))
        return
    print(f"{len(za)} particles, k-means k={args.k} in each run: {100 * agreement:.1f} % in matched clusters")
    per = np.diag(confusion) / np.maximum(confusion.sum(1), 1)
    print("A cluster -> B cluster (fraction of A's particles): "
          + ", ".join(f"{i}->{m} ({f:.2f})" for i, (m, f) in enumerate(zip(mapping, per))))
