"""``cryofield analyze``: PCA, clusters with on-data maps, PC traversals and figures of a run's latents."""

from __future__ import annotations

from pathlib import Path

from cryofield.cli._common import command_parser, progress_bar
from cryofield.cli._latents import load_run_latents
from cryofield.errors import InputError
from cryofield.io import WorkDir, read_array

NAME = "analyze"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Analyse a train-vae run's latent space: PCA, k-means with on-data "
                            "centres (maps and particle index files per cluster), maps along the PCs, UMAP, optional "
                            "Gaussian mixture, |z| for outliers, and figures. Writes WORKDIR/analysis/.", """
        cryofield analyze run/                                   # 20 clusters, PC1-PC2 traversals, maps
        cryofield analyze run/ --ksample 10 --gmm 4 --pc 3 --seed 1
        cryofield analyze run/ --z run/z_refined.npy -o run/analysis_refined/
        cryofield analyze run/ --labels classes.txt --labels-name relion_class
        cryofield analyze --z z.npy -o latents/                  # latents alone: no maps
        cryofield select particles.star --ind run/analysis/kmeans20/cluster_004.ind.txt -o c4.star
        """)
    parser.add_argument("workdir", type=Path, nargs="?", help="a train-vae run")
    parser.add_argument("--z", type=Path, help="latents (.npy, N x zdim; default WORKDIR/z.npy)")
    parser.add_argument("-o", "--outdir", type=Path, help="default WORKDIR/analysis")
    parser.add_argument("--ksample", type=int, default=20, help="k-means clusters (default 20)")
    parser.add_argument("--gmm", type=int, metavar="K", help="also a Gaussian mixture with K components")
    parser.add_argument("--pc", type=int, default=2, help="traverse the first N principal components (default 2)")
    parser.add_argument("--pc-points", type=int, default=10, help="maps per traversal (default 10)")
    parser.add_argument("--labels", type=Path, help="per-particle labels to colour by (.npy or .txt, N values)")
    parser.add_argument("--labels-name", default="labels", help="their name in the figure (default labels)")
    parser.add_argument("--no-maps", action="store_true", help="skip the maps")
    parser.add_argument("--no-umap", action="store_true", help="skip the UMAP embedding")
    parser.add_argument("--seed", type=int, default=0, help="clustering seed (default 0)")
    return parser


def run(args) -> None:
    from cryofield.analysis import analyze_latents
    from cryofield.reports import plot_latent_figures

    if args.workdir is None and (args.z is None or args.outdir is None):
        raise InputError(Path("."), "give a run directory, or --z and -o for latents alone")
    z_file = args.z or WorkDir(args.workdir).latents
    rows = None
    if args.workdir is not None:
        z, rows = load_run_latents(args)  # rows of the run's input file
    else:
        z = read_array(z_file, ndim=2, what="latents")
    for name in ("ksample", "pc", "pc_points"):
        if getattr(args, name) < 1:
            raise InputError(z_file, f"--{name.replace('_', '-')} must be at least 1")
    if args.gmm is not None and not 1 <= args.gmm <= len(z):
        raise InputError(z_file, f"--gmm {args.gmm}: between 1 and the {len(z)} particles")
    labels = None
    if args.labels is not None:
        labels = read_array(args.labels, ndim=1, rows=len(z), what="labels")
    outdir = args.outdir or WorkDir(args.workdir).analysis
    with_maps = args.workdir is not None and not args.no_maps
    n_maps = min(args.ksample, len(z)) + (args.gmm or 0) + min(args.pc, z.shape[1]) * args.pc_points
    with progress_bar(n_maps if with_maps else 0, "maps", unit="map") as bar:
        result = analyze_latents(z, outdir, workdir=args.workdir if with_maps else None, particle_indices=rows,
                                  ksample=args.ksample, pcs=args.pc, pc_points=args.pc_points, gmm=args.gmm,
                                  umap=not args.no_umap, seed=args.seed, progress=bar.update)
    log = WorkDir(args.workdir).read_log() if args.workdir is not None else None
    figures = plot_latent_figures(outdir, log=log, labels=labels, labels_name=args.labels_name)
    variance = ", ".join(f"{100 * v:.1f}" for v in result.explained_variance_ratio[:3])
    kmeans = result.kmeans
    print(f"analysed {len(z)} latents (zdim {z.shape[1]}): PC variance {variance} %; {kmeans.name} clusters of "
          f"{kmeans.counts.min()}-{kmeans.counts.max()} particles")
    print(f"wrote {outdir}/: " + (f"{result.summary['maps']['count']} maps, " if "maps" in result.summary else "")
          + f"cluster index files, {len(figures)} figures ({', '.join(figures)})")
