"""``cryofield direct-traversal``: straight lines in latent space between anchors, and their maps."""

from __future__ import annotations

from pathlib import Path

from cryofield.cli._common import command_parser
from cryofield.cli._latents import add_path_arguments, latent_rows, load_run_latents, write_path
from cryofield.errors import InputError
from cryofield.io import read_array

NAME = "direct-traversal"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Straight lines in latent space through anchor particles (or given "
                            "latents), n points per leg, optionally back to the start, with their maps.", """
        cryofield direct-traversal run/ --anchors 1204 88 -n 20 -o run/line/
        cryofield direct-traversal run/ --anchors 1204 88 5120 --loop -o run/loop/
        cryofield direct-traversal run/ --z-anchors ends.txt -o run/line/     # latents, one per row
        """)
    add_path_arguments(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--anchors", type=int, nargs="+", help="particles (indices in the run's input file)")
    which.add_argument("--z-anchors", type=Path, help="anchor latents, one per row (.txt or .npy)")
    parser.add_argument("-n", "--points", type=int, default=10, help="points per leg (default 10)")
    parser.add_argument("--loop", action="store_true", help="return from the last anchor to the first")
    return parser


def run(args) -> None:
    from cryofield.analysis import direct_path

    z, rows = load_run_latents(args)
    if args.anchors is not None:
        points = z[latent_rows(args.anchors, rows, Path("--anchors"))]
    else:
        points = read_array(args.z_anchors, ndim=2, what="anchor latents")
        if points.shape[1] != z.shape[1]:
            raise InputError(args.z_anchors, f"anchor latents have {points.shape[1]} values; the run has zdim "
                                             f"{z.shape[1]}")
    if len(points) < 2 or args.points < 1:
        raise InputError(Path("--anchors"), "give at least 2 anchors and -n >= 1")
    path = direct_path(points, args.points, loop=args.loop)
    write_path(args, path, f"{len(points)} anchors" + (", looped" if args.loop else ""))
