"""``cryofield mask``: a soft mask from a map."""

from __future__ import annotations

from pathlib import Path

from cryofield.cli._common import command_parser, read_volume, write_volume


def add_parser(subparsers):
    parser = command_parser(subparsers, "mask", "Make a soft mask: threshold the map (default half its 99.99th "
                            "percentile), dilate it, and give it a cosine edge.", """
        cryofield mask volume.mrc -o mask.mrc
        cryofield mask volume.mrc --threshold 0.02 --dilate 10 --soft-edge 8 -o mask.mrc
        """)
    parser.add_argument("input", type=Path, metavar="MAP")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--threshold", type=float, help="density threshold (default half the 99.99th percentile)")
    parser.add_argument("--dilate", type=float, default=25.0, help="dilation in A (default 25)")
    parser.add_argument("--soft-edge", type=float, default=15.0, help="cosine edge width in A (default 15)")
    parser.add_argument("--apix", type=float, help="pixel size in A (default: the header)")
    return parser


def run(args) -> None:
    from cryofield.errors import InputError
    from cryofield.metrics import auto_mask

    volume, apix = read_volume(args.input, args.apix)
    try:
        mask = auto_mask(volume, apix, threshold=args.threshold, dilate_angstrom=args.dilate,
                         soft_edge_angstrom=args.soft_edge)
    except ValueError as exc:
        raise InputError(args.input, str(exc)) from None
    write_volume(args, mask, apix)
    print(f"wrote {args.output}: {float((mask > 0.5).mean()) * 100:.1f}% of the box inside")
