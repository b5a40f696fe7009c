"""``cryofield sharpen``: apply a B-factor, given or estimated by Guinier analysis."""

from __future__ import annotations

from pathlib import Path

from cryofield.cli._common import command_parser, read_volume, write_volume


def add_parser(subparsers):
    parser = command_parser(subparsers, "sharpen", "Sharpen (or blur) a map with a B-factor: a given one, or "
                            "minus the B estimated from the slope of its Guinier plot.", """
        cryofield sharpen volume.mrc -o sharp.mrc                 # B from the Guinier plot, 10 A to Nyquist
        cryofield sharpen volume.mrc --bfactor -80 --lowpass 3.5 -o sharp.mrc
        """)
    parser.add_argument("input", type=Path, metavar="MAP")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--bfactor", type=float, help="B in A^2 applied as exp(-B k^2/4); negative sharpens")
    parser.add_argument("--fit-low", type=float, default=10.0, help="Guinier fit from this resolution (A, default 10)")
    parser.add_argument("--fit-high", type=float, help="Guinier fit to this resolution (A, default Nyquist)")
    parser.add_argument("--lowpass", type=float, help="also low-pass at this resolution (A)")
    parser.add_argument("--apix", type=float, help="pixel size in A (default: the header)")
    return parser


def run(args) -> None:
    import torch

    from cryofield.errors import InputError
    from cryofield.metrics import apply_bfactor, guinier_bfactor

    volume, apix = read_volume(args.input, args.apix)
    v = torch.from_numpy(volume)
    bfactor = args.bfactor
    if bfactor is None:
        try:
            bfactor = -guinier_bfactor(v, apix, low_angstrom=args.fit_low, high_angstrom=args.fit_high)
        except ValueError as exc:
            raise InputError(args.input, str(exc)) from None
    write_volume(args, apply_bfactor(v, apix, bfactor, args.lowpass).numpy(), apix)
    print(f"wrote {args.output}: B-factor {bfactor:.1f} A^2 applied"
          + ("" if args.bfactor is not None else " (minus the Guinier estimate)")
          + (f", low-passed at {args.lowpass:g} A" if args.lowpass else ""))
