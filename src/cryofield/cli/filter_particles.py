"""``cryofield filter``: choose particles of a run by clusters, index files, |z|, latent ranges, regions, at random."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cryofield.cli._common import command_parser
from cryofield.cli._latents import load_run_latents
from cryofield.errors import InputError
from cryofield.io import WorkDir, read_indices
from cryofield.io._atomic import save_table

NAME = "filter"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Select particles of a train-vae run and write their indices in the "
                            "run's input file (for `cryofield select`). Criteria given together must all hold.", """
        cryofield filter run/ --clusters 3 7 -o keep.txt           # k-means clusters of run/analysis/
        cryofield filter run/ --znorm-sigma 4 --invert -o keep.txt  # drop |z| outliers
        cryofield filter run/ --z-range -0.5 1.2 -o band.txt        # a threshold on a 1-D latent
        cryofield filter run/ --polygon lasso.json --space umap -o region.txt
        cryofield filter run/ --ind runA.txt runB.txt --combine intersection -o both.txt
        cryofield filter run/ --fraction 0.9 --seed 1 -o train.txt    # and --invert for the held-out rest
        cryofield select particles.star --ind keep.txt -o keep.star
        """)
    parser.add_argument("workdir", type=Path, help="a train-vae run")
    parser.add_argument("--z", type=Path, help="latents (.npy; default WORKDIR/z.npy)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="index file to write (.txt)")
    parser.add_argument("--analysis", type=Path, help="an analyze folder (default WORKDIR/analysis)")
    parser.add_argument("--clusters", type=int, nargs="+", help="k-means clusters of the analyze folder")
    parser.add_argument("--kmeans", help="which clustering, e.g. kmeans20 or gmm4 (default: the k-means one)")
    parser.add_argument("--ind", type=Path, nargs="+", help="index files (input-file indices)")
    parser.add_argument("--combine", choices=["union", "intersection"], default="union",
                        help="how several --ind files combine (default union)")
    parser.add_argument("--znorm-above", type=float, help="|z| above this value")
    parser.add_argument("--znorm-sigma", type=float, help="|z| more than this many robust SDs above the median")
    parser.add_argument("--z-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="a latent value in a range")
    parser.add_argument("--dim", type=int, default=1, help="--z-range: which latent dimension, from 1 (default 1)")
    parser.add_argument("--polygon", type=Path,
                        help='JSON: {"space": "pca"|"umap", "vertices": [[x, y], ...]} or a list of vertices')
    parser.add_argument("--space", choices=["pca", "umap"], help="--polygon coordinates (default: the file's, or pca)")
    parser.add_argument("--fraction", type=float, help="a random fraction of what the other criteria keep")
    parser.add_argument("--seed", type=int, default=0, help="--fraction: random seed (default 0)")
    parser.add_argument("--invert", action="store_true", help="take the particles NOT selected")
    return parser


def run(args) -> None:
    from cryofield.analysis.selection import (
        cluster_mask,
        mask_to_rows,
        norm_outliers,
        polygon_mask,
        random_mask,
        range_mask,
    )

    z, rows = load_run_latents(args)
    analysis = args.analysis or WorkDir(args.workdir).analysis
    mask = np.ones(len(z), bool)
    criteria = []
    if args.clusters is not None:
        result = _analysis(analysis)
        clusters = result.clusters.get(args.kmeans) if args.kmeans else result.kmeans
        if clusters is None:
            raise InputError(analysis, "no cluster labels: run `cryofield analyze` first (or give --kmeans)")
        if len(clusters.labels) != len(z):
            raise InputError(analysis / clusters.name / "labels.npy",
                             f"{len(clusters.labels)} labels for {len(z)} particles")
        mask &= cluster_mask(clusters.labels, args.clusters)
        criteria.append(f"{clusters.name} clusters {' '.join(map(str, args.clusters))}")
    if args.ind:
        sets = [np.isin(rows, read_indices(path, np.iinfo(np.int64).max)) for path in args.ind]
        mask &= np.logical_or.reduce(sets) if args.combine == "union" else np.logical_and.reduce(sets)
        criteria.append(f"{args.combine} of {len(sets)} index file(s)")
    if args.znorm_above is not None or args.znorm_sigma is not None:
        if args.znorm_above is not None and args.znorm_sigma is not None:
            raise InputError(Path("--znorm-above"), "give --znorm-above or --znorm-sigma, not both")
        mask &= norm_outliers(z, above=args.znorm_above, sigma=args.znorm_sigma)
        criteria.append("|z| outliers")
    if args.z_range is not None:
        if not 1 <= args.dim <= z.shape[1]:
            raise InputError(Path("--dim"), f"--dim {args.dim}: the latents have {z.shape[1]} dimensions")
        mask &= range_mask(z[:, args.dim - 1], *args.z_range)
        criteria.append(f"z{args.dim} in [{args.z_range[0]}, {args.z_range[1]}]")
    if args.polygon is not None:
        mask &= _polygon(args, analysis, len(z), polygon_mask)
        criteria.append(f"polygon {args.polygon.name}")
    if args.fraction is not None:
        if not 0 <= args.fraction <= 1:
            raise InputError(Path("--fraction"), f"--fraction {args.fraction} must be in [0, 1]")
        chosen = np.flatnonzero(mask)
        mask = np.zeros_like(mask)
        mask[chosen[random_mask(len(chosen), args.fraction, args.seed)]] = True
        criteria.append(f"random {100 * args.fraction:g} % (seed {args.seed})")
    if not criteria:
        raise InputError(Path("filter"), "give at least one criterion (--clusters, --ind, --znorm-*, --z-range, "
                                         "--polygon, --fraction)")
    if args.invert:
        mask = ~mask
    selected = mask_to_rows(mask, rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_table(args.output, selected, fmt="%d")
    print(f"selected {len(selected)} of {len(z)} particles ({'NOT ' if args.invert else ''}{'; '.join(criteria)}); "
          f"wrote {args.output}")


def _analysis(folder: Path):
    """The analysis in ``folder``, or a clear error when ``cryofield analyze`` has not written one."""
    from cryofield.io import LatentAnalysis

    if not (folder / "z_pca.npy").is_file():
        raise InputError(folder, "no analysis: run `cryofield analyze` first (or give --analysis)")
    return LatentAnalysis.load(folder)


def _polygon(args, analysis: Path, n: int, polygon_mask) -> np.ndarray:
    try:
        spec = json.loads(args.polygon.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(args.polygon, f"not a JSON polygon ({exc})") from None
    vertices = spec.get("vertices") if isinstance(spec, dict) else spec
    space = args.space or (spec.get("space") if isinstance(spec, dict) else None) or "pca"
    points = _analysis(analysis).coordinates(space)
    if points is None or len(points) != n:
        raise InputError(analysis / f"z_{space}.npy", f"no 2-D {space} coordinates of the {n} particles: run "
                                                      "`cryofield analyze` first")
    try:
        return polygon_mask(points, np.asarray(vertices, float))
    except (ValueError, TypeError) as exc:
        raise InputError(args.polygon, str(exc)) from None
