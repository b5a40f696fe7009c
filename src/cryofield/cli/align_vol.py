"""``cryofield align-vol``: rigid alignment (rotation, translation, hand) of one map onto another."""

from __future__ import annotations

import json
from pathlib import Path

from cryofield.cli._common import check_outputs, command_parser, read_volume
from cryofield.errors import InputError

NAME = "align-vol"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Rotate, translate and, if that fits better, mirror map B onto map A "
                            "(same box): global search over an SO(3) grid with FFT translations on downsampled "
                            "maps, then local refinement; writes the aligned B.", """
        cryofield align-vol reference.mrc abinitio.mrc -o abinitio_aligned.mrc
        cryofield align-vol truth.mrc run/reconstruct.mrc -o aligned.mrc --json > alignment.json
        cryofield align-vol a.mrc b.mrc -o b_aligned.mrc --hand same --level 3   # finer search, keep B's hand
        cryofield align-vol a.mrc b.mrc -o b_aligned.mrc --device cuda
        """)
    parser.add_argument("reference", type=Path, metavar="A", help="the reference map (stays put)")
    parser.add_argument("moving", type=Path, metavar="B", help="the map to align onto A (same box)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="aligned B (.mrc), with A's pixel size")
    parser.add_argument("--apix", type=float, help="pixel size in A (default: A's header)")
    parser.add_argument("--hand", choices=("auto", "same", "flipped"), default="auto",
                        help="try B and its mirror (auto, default), or only one of them")
    parser.add_argument("--search-size", type=int, default=24,
                        help="box of the global search in pixels (maps are Fourier-cropped to it; default 24)")
    parser.add_argument("--level", type=int, default=2,
                        help="SO(3) grid level of the global search: 1 = 576 rotations (30 deg), 2 = 4,608 "
                             "(15 deg, default), 3 = 36,864 (7.5 deg)")
    parser.add_argument("--refine-size", type=int, default=128,
                        help="largest box for the final local refinement (default 128; 0 = the full box)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu; e.g. cuda)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def run(args) -> None:
    import torch

    from cryofield.io import write_map
    from cryofield.io._atomic import atomic_outputs
    from cryofield.metrics import align_volumes, apply_alignment

    if not 1 <= args.level <= 3:
        raise InputError(None, f"--level must be between 1 and 3, got {args.level}")
    if args.search_size < 8:
        raise InputError(None, f"--search-size must be at least 8, got {args.search_size}")
    if args.refine_size < 0:
        raise InputError(None, f"--refine-size must be 0 or positive, got {args.refine_size}")
    a, apix = read_volume(args.reference, args.apix)
    b, _ = read_volume(args.moving, apix)
    if a.shape != b.shape:
        raise InputError(args.moving, f"map is {b.shape}, the reference {a.shape}; resample it to the same box first")
    check_outputs([args.output], [args.reference, args.moving])
    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise InputError(None, f"--device {args.device}: {exc}") from None
    alignment = align_volumes(torch.from_numpy(a), torch.from_numpy(b), hand=args.hand, search_size=args.search_size,
                              level=args.level, refine_size=args.refine_size or None, device=device)
    aligned = apply_alignment(torch.from_numpy(b).to(device), alignment).cpu().numpy()
    with atomic_outputs(args.output) as (temp,):
        write_map(temp, aligned, apix)
    euler = alignment.euler_deg
    shift_angstrom = alignment.shift_px * apix
    if args.json:
        print(json.dumps({
            "hand": alignment.hand, "euler_deg": euler.tolist(), "angle_deg": alignment.angle_deg,
            "rotation": alignment.rotation.tolist(), "shift_angstrom": shift_angstrom.tolist(),
            "shift_px": alignment.shift_px.tolist(), "correlation_before": alignment.correlation_before,
            "correlation_after": alignment.correlation_after, "output": str(args.output)}, indent=2))
        return
    rows = [("hand", "same" if alignment.hand == "same" else "flipped (B was mirrored through z = 0 first)"),
            ("rotation (rot, tilt, psi)", ", ".join(f"{v:.2f}" for v in euler)
             + f" deg (RELION Euler angles; {alignment.angle_deg:.2f} deg about the box centre)"),
            ("shift (x, y, z)", ", ".join(f"{v:.2f}" for v in shift_angstrom) + " A, after the rotation"),
            ("correlation with A", f"{alignment.correlation_before:.4f} before, {alignment.correlation_after:.4f} "
                                   "after")]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    print(f"wrote {args.output}")
