"""``cryofield fsc``: Fourier shell correlation between two maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofield.cli._common import command_parser, read_volume
from cryofield.errors import InputError
from cryofield.io._atomic import save_table


def add_parser(subparsers):
    parser = command_parser(subparsers, "fsc", "Fourier shell correlation of two maps, and the resolution at "
                            "FSC 0.5 and 0.143.", """
        cryofield fsc half_a.mrc half_b.mrc --mask auto --plot fsc.png
        cryofield fsc reconstruction.mrc truth.mrc --mask mask.mrc -o fsc.txt
        """)
    parser.add_argument("maps", nargs=2, type=Path, metavar="MAP")
    parser.add_argument("--mask", help="'auto' (threshold, dilate, soft edge; see cryofield mask) or a mask file")
    parser.add_argument("--threshold", type=float, help="auto mask: threshold (default half the 99.99th percentile)")
    parser.add_argument("--dilate", type=float, default=25.0, help="auto mask: dilation in A (default 25)")
    parser.add_argument("--soft-edge", type=float, default=15.0, help="auto mask: cosine edge width in A (default 15)")
    parser.add_argument("--apix", type=float, help="pixel size in A (default: the first map's header)")
    parser.add_argument("--plot", type=Path, help="save the curve as a figure (.png or .pdf)")
    parser.add_argument("-o", "--output", type=Path, help="save the curve as text")
    return parser


def run(args) -> None:
    import torch

    from cryofield.metrics import auto_mask, fsc, resolution_at

    a, apix = read_volume(args.maps[0], args.apix)
    b, _ = read_volume(args.maps[1], apix)
    if a.shape != b.shape:
        raise InputError(args.maps[1], f"map is {b.shape}, the first is {a.shape}")
    mask = None
    if args.mask == "auto":
        mask = auto_mask(a, apix, threshold=args.threshold, dilate_angstrom=args.dilate,
                         soft_edge_angstrom=args.soft_edge)
    elif args.mask:
        mask, _ = read_volume(Path(args.mask), apix)
        if mask.shape != a.shape:
            raise InputError(args.mask, f"mask is {mask.shape}, the maps {a.shape}")
    freqs, curve = fsc(torch.from_numpy(a), torch.from_numpy(b), None if mask is None else torch.from_numpy(mask))
    res5, res143 = (apix / resolution_at(freqs, curve, t) for t in (0.5, 0.143))
    if args.output:
        save_table(args.output, np.column_stack([freqs / apix, curve]), fmt="%.6f", header="freq_1/A  fsc")
    if args.plot:
        from cryofield.reports import plot_fsc

        plot_fsc(args.plot, freqs / apix, {f"{args.maps[0].name} vs {args.maps[1].name}"
                                           + (" (masked)" if mask is not None else ""): curve},
                 title=f"FSC 0.143: {res143:.2f} A, 0.5: {res5:.2f} A")
    print(f"FSC 0.5 at {res5:.2f} A, FSC 0.143 at {res143:.2f} A" + (" (masked)" if mask is not None else ""))
