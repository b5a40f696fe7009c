"""``cryofield evaluate``: score a run on simulated data against its ground truth."""

from __future__ import annotations

import json
from pathlib import Path

from cryofield.cli._common import command_parser


def add_parser(subparsers):
    parser = command_parser(subparsers, "evaluate", "Score a train-nn/train-vae run on data from cryofield "
                            "simulate: per-image FSC, |Spearman| of latent PCs with the true coordinates, "
                            "adjusted Rand index of k-means labels, map NMSE.", """
        cryofield evaluate run/ --truth sim/
        cryofield evaluate run/ --truth sim/ --json > scores.json
        cryofield evaluate run/ --truth sim/ --z z_refined.npy       # other latents of the same particles
        cryofield evaluate run/ --truth sim/ --selection kept.ind.txt # how well a filter removed the junk
        """)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--truth", type=Path, required=True, help="the simulation folder (truth.npz, truth_vols/)")
    parser.add_argument("--images", type=int, default=100, help="images for the per-image FSC (default 100)")
    parser.add_argument("--z", type=Path, help="score these latents (.npy, the run's particle order) "
                                               "instead of WORKDIR/z.npy")
    parser.add_argument("--selection", type=Path,
                        help="indices of the particles a selection keeps (e.g. from filter): precision and recall "
                             "of the junk it leaves out, against the simulation's junk labels")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def run(args) -> None:
    from cryofield.analysis import evaluate_run

    scores = evaluate_run(args.workdir, args.truth, n_images=args.images, latents=args.z, selection=args.selection)
    if args.json:
        print(json.dumps(scores, indent=2))
        return
    fsc = scores["per_image_fsc"]
    rows = [("images scored", f"{scores['images_scored']}"),
            ("per-image FSC 0.5 (px)", f"{fsc['resolution_px_mean']:.3f} +- {fsc['resolution_px_std']:.3f}"),
            ("per-image FSC AUC", f"{fsc['auc_mean']:.4f}"),
            ("map NMSE (scaled)", f"{scores['nmse']:.4f}")]
    if "spearman" in scores:
        rows += [(f"|Spearman| PC{i + 1}", ", ".join(f"{v:.4f}" for v in row)) for i, row in
                 enumerate(scores["spearman"])]
    if "ari" in scores:
        rows.append(("ARI (k-means)", f"{scores['ari']:.4f}"))
    if "junk" in scores:
        junk = scores["junk"]
        share = "n/a" if junk["precision"] is None else f"{junk['precision']:.3f}"
        found = "n/a" if junk["recall"] is None else f"{junk['recall']:.3f}"
        rows += [("junk removed: precision", f"{share} ({junk['removed']} removed)"),
                 ("junk removed: recall", f"{found} (of {junk['junk']} junk)")]
        rows += [(f"  recall, {kind}", "n/a" if value is None else f"{value:.3f}")
                 for kind, value in junk["recall_by_kind"].items()]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
