"""``cryofield report``: one self-contained HTML page of a run (settings, losses, latents, FSC, maps, trajectories)."""

from __future__ import annotations

from pathlib import Path

from cryofield.cli._common import command_parser
from cryofield.io import WorkDir

NAME = "report"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Write one self-contained HTML page of a run from its saved results: "
                            "settings, loss curves, interactive PCA/UMAP scatter plots by cluster (a lasso downloads a "
                            "polygon for `cryofield filter --polygon`), cluster populations, FSC curves, and each map "
                            "as slices, projections and a surface, trajectories as strips. Opens offline.", """
        cryofield analyze run/ && cryofield report run/ -o report.html
        cryofield report run/ --analysis run/analysis_refined/ --traversal paths/graph/ -o report.html
        cryofield report run/ --fsc recon/fsc.txt half_maps_fsc.txt --iso-percentile 98.5
        # in the page: lasso particles, "Download selection polygon", then
        cryofield filter run/ --polygon selection.json -o selected.ind.txt
        cryofield select particles.star --ind selected.ind.txt -o selected.star
        """)
    parser.add_argument("workdir", type=Path, help="a training run's work directory (config.json, log.jsonl, ...)")
    parser.add_argument("-o", "--output", type=Path, help="the .html file (default WORKDIR/report.html)")
    parser.add_argument("--analysis", type=Path, help="a `cryofield analyze` folder (default WORKDIR/analysis)")
    parser.add_argument("--fsc", type=Path, nargs="+", default=[], metavar="FILE",
                        help="FSC text files (`cryofield fsc -o`, backproject's fsc.txt) besides WORKDIR's fsc*.txt")
    parser.add_argument("--traversal", type=Path, nargs="+", default=[], metavar="DIR",
                        help="traversal folders (z_path.txt + vol_XXX.mrc) besides those under WORKDIR")
    parser.add_argument("--max-points", type=int, default=20000,
                        help="particles per scatter plot, a random subset beyond (default 20000)")
    parser.add_argument("--iso-percentile", type=float, default=99.0,
                        help="map surfaces at this percentile of each map set's voxel values (default 99)")
    parser.add_argument("--max-map-size", type=int, default=128,
                        help="maps are block-averaged to at most this many voxels a side for pictures (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scatter plots' subset (default 0)")
    return parser


def run(args) -> None:
    from cryofield.reports.html import write_report

    output = args.output or WorkDir(args.workdir).report
    contents = write_report(args.workdir, output, analysis=args.analysis, fsc_files=args.fsc,
                            traversals=args.traversal, max_points=args.max_points,
                            iso_percentile=args.iso_percentile, max_map_size=args.max_map_size, seed=args.seed)
    latent = (f"{contents['points']} of {contents['particles']} particles in {'/'.join(contents['spaces'])}"
              if contents["spaces"] else "no latent scatter")
    print(f"wrote {output} ({contents['bytes'] / 1e6:.1f} MB): {contents['epochs']} epochs, {latent}, "
          f"{contents['fsc']} FSC curves, {contents['maps']} maps")
