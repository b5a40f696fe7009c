"""``cryofield flip-hand``: invert the handedness of a map."""

from __future__ import annotations

from pathlib import Path

from cryofield.cli._common import command_parser, read_volume, write_volume

NAME = "flip-hand"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Invert a map's hand by mirroring it through the z = 0 plane "
                            "(the box centre stays put).", """
        cryofield flip-hand volume.mrc -o volume_flipped.mrc
        """)
    parser.add_argument("input", type=Path, metavar="MAP")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--apix", type=float, help="pixel size in A (default: the header)")
    return parser


def run(args) -> None:
    from cryofield.metrics import flip_hand

    volume, apix = read_volume(args.input, args.apix)
    write_volume(args, flip_hand(volume), apix)
    print(f"wrote {args.output}")
