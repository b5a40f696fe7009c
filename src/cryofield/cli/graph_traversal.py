"""``cryofield graph-traversal``: a path on the data through anchor particles, and its maps."""

from __future__ import annotations

import re
from pathlib import Path

from cryofield.cli._common import command_parser
from cryofield.cli._latents import add_path_arguments, latent_rows, load_run_latents, write_path
from cryofield.errors import InputError
from cryofield.io import WorkDir

NAME = "graph-traversal"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "The shortest path through anchor particles on the nearest-neighbour "
                            "graph of the latents (neighbours closer than a distance chosen for 5 on average, at "
                            "most 10 each), with a map at every particle it visits.", """
        cryofield graph-traversal run/ --anchors 1204 88 5120 -o run/path/
        cryofield graph-traversal run/ --anchors $(cat run/analysis/kmeans20/centers_ind.txt | head -3) -o path/
        """)
    add_path_arguments(parser)
    parser.add_argument("--anchors", type=int, nargs="+", required=True,
                        help="particles to visit in order (indices in the run's input file, from 0)")
    parser.add_argument("--avg-neighbors", type=float, default=5, help="average neighbours per node (default 5)")
    parser.add_argument("--max-neighbors", type=int, default=10, help="at most this many per node (default 10)")
    parser.add_argument("--exact", action="store_true",
                        help="exact nearest neighbours (default: approximate within 1.5x, several times faster)")
    return parser


def run(args) -> None:
    from cryofield.analysis import graph_path

    z, rows = load_run_latents(args)
    if len(args.anchors) < 2:
        raise InputError(Path("--anchors"), "give at least 2 anchors")
    if args.avg_neighbors <= 0 or args.max_neighbors < 1:
        raise InputError(Path("--avg-neighbors"), "neighbour counts must be positive")
    anchors = latent_rows(args.anchors, rows, Path("--anchors"))
    try:
        path = graph_path(z, anchors, avg_neighbours=args.avg_neighbors, max_neighbours=args.max_neighbors,
                          eps=0.0 if args.exact else 0.5)
    except ValueError as exc:  # name the particles as the user did (input-file indices, not latent rows)
        message = re.sub(r"(particle|to) (\d+)", lambda m: f"{m.group(1)} {rows[int(m.group(2))]}", str(exc))
        raise InputError(args.z or WorkDir(args.workdir).latents, message) from None
    write_path(args, z[path], f"graph path through {len(anchors)} anchors", particle_rows=rows[path])
