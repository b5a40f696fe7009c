"""``cryofield pc-traversal``: latents and maps along a principal component of the latent space."""

from __future__ import annotations

from cryofield.cli._common import command_parser
from cryofield.cli._latents import add_path_arguments, load_run_latents, write_path
from cryofield.errors import InputError

NAME = "pc-traversal"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Maps along one principal component of a run's latents, evenly "
                            "spaced between two percentiles of the particles on it (the other PCs at 0).", """
        cryofield pc-traversal run/ --pc 1 -o run/pc1/
        cryofield pc-traversal run/ --pc 2 -n 20 --lim 1 99 -o run/pc2/
        """)
    add_path_arguments(parser)
    parser.add_argument("--pc", type=int, default=1, help="which component, from 1 (default 1)")
    parser.add_argument("-n", "--points", type=int, default=10, help="points along it (default 10)")
    parser.add_argument("--lim", type=float, nargs=2, default=(5.0, 95.0), metavar=("LOW", "HIGH"),
                        help="percentiles of the particles on the PC (default 5 95)")
    return parser


def run(args) -> None:
    from cryofield.analysis import pc_traversal

    z, _ = load_run_latents(args)
    if not 1 <= args.pc <= z.shape[1]:
        raise InputError(args.workdir, f"--pc {args.pc}: the latents have {z.shape[1]} components")
    if args.points < 2 or not 0 <= args.lim[0] < args.lim[1] <= 100:
        raise InputError(args.workdir, "need -n >= 2 and 0 <= LOW < HIGH <= 100")
    write_path(args, pc_traversal(z, args.pc, args.points, lim=tuple(args.lim)), f"PC{args.pc}")
