"""``cryofield pose-error``: error of estimated poses against the truth, after global alignment."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from cryofield.cli._common import command_parser
from cryofield.errors import InputError

NAME = "pose-error"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Rotation and translation error of estimated poses against the true "
                            "ones, after the global rotation, translation and hand that best align them: mean and "
                            "median of |R - R_true|_F^2 and of the squared shift error in pixels.", """
        cryofield pose-error run/poses.star sim/particles.star
        cryofield pose-error cryosparc_J12_particles.cs truth.star --json
        cryofield pose-error poses.pkl truth.pkl --box 128          # cryoDRGN (rot, trans) pickles
        cryofield pose-error poses.star truth.star --apix 1.7       # STAR files without a pixel size
        """)
    parser.add_argument("predicted", type=Path, metavar="PRED", help="estimated poses: .star, .cs or cryoDRGN .pkl")
    parser.add_argument("truth", type=Path, metavar="TRUTH", help="true poses, the same particles in the same order")
    parser.add_argument("--apix", type=float, help="pixel size in A, for .star/.cs files that give none (shifts in A "
                                                   "are turned into pixels)")
    parser.add_argument("--box", type=int, help="box size in pixels, for .pkl poses (their shifts are fractions of "
                                                "the box; default: the other file's box)")
    parser.add_argument("--hand", choices=("auto", "same", "flipped"), default="auto",
                        help="compare with the truth as given, mirrored, or whichever fits better (default auto)")
    parser.add_argument("--json", action="store_true", help="print JSON: rot_mean, rot_median, trans_mean, "
                                                            "trans_median, hand, n")
    return parser


def _read_table(path: Path, apix: float | None):
    from cryofield.io import read_particles

    if path.suffix.lower() not in (".star", ".cs"):
        raise InputError(path, "poses must be a RELION .star, a cryoSPARC .cs or a cryoDRGN .pkl")
    with warnings.catch_warnings():  # the reader's warnings concern the CTF, which poses do not need
        warnings.filterwarnings("ignore", message=".*_rlnAmplitudeContrast")
        table = read_particles(path, apix=apix)
    rotations = table.rotations  # InputError when the file has no poses
    shifts = table.shifts_px if table.shifts_angstrom is not None else None
    return rotations, shifts, table


def _table_box(table) -> int | None:
    try:
        return table.box_size
    except InputError:  # no box in the metadata and the stacks are not at hand
        return None


def _read_pickle(path: Path, box: int | None):
    from cryofield.io import load_legacy_pickle
    from cryofield.io.legacy import read_legacy_poses

    obj = load_legacy_pickle(path)
    has_trans = isinstance(obj, (tuple, list)) and len(obj) > 1
    rot = np.asarray(obj[0] if isinstance(obj, (tuple, list)) else obj)
    if rot.ndim != 3:
        raise InputError(path, f"rotations have shape {rot.shape}, expected (N, 3, 3)")
    if has_trans and box is None:
        raise InputError(path, "shifts are fractions of the box; pass --box (or a .star/.cs with a box size)")
    return read_legacy_poses(path, len(rot), box or 1)


def read_poses(paths: list[Path], apix: float | None, box: int | None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """``(rotations (N, 3, 3), shifts in pixels (N, 2) or None)`` of each file."""
    out: list = [None] * len(paths)
    tables = []
    for i, path in enumerate(paths):
        if not path.is_file():
            raise InputError(path, "file not found")
        if path.suffix.lower() != ".pkl":
            rotations, shifts, table = _read_table(path, apix)
            out[i] = (rotations, shifts)
            tables.append(table)
    for i, path in enumerate(paths):
        if out[i] is None:
            size = box if box is not None else next((b for b in map(_table_box, tables) if b), None)
            out[i] = _read_pickle(path, size)
    return out


def run(args) -> None:
    from cryofield.metrics import pose_error_frobenius

    if args.apix is not None and not args.apix > 0:
        raise InputError(None, f"--apix must be positive, got {args.apix}")
    if args.box is not None and args.box < 1:
        raise InputError(None, f"--box must be positive, got {args.box}")
    (rot, shifts), (true_rot, true_shifts) = read_poses([args.predicted, args.truth], args.apix, args.box)
    if len(rot) != len(true_rot):
        raise InputError(args.truth, f"{len(true_rot)} poses, but {args.predicted} has {len(rot)}; the files must "
                                     "hold the same particles in the same order")
    if len(rot) == 0:
        raise InputError(args.predicted, "holds no poses")
    with_shifts = shifts is not None and true_shifts is not None
    scores = pose_error_frobenius(rot, true_rot, shifts if with_shifts else None,
                                  true_shifts if with_shifts else None, hand=args.hand)
    result = {"rot_mean": scores["rot_mean"], "rot_median": scores["rot_median"],
              "trans_mean": scores.get("trans_mean"), "trans_median": scores.get("trans_median"),
              "hand": scores["hand"], "n": scores["n"]}
    if args.json:
        print(json.dumps(result, indent=2))
        return

    def degrees(frobenius: float) -> float:  # |R - R'|_F^2 = 8 sin^2(angle / 2)
        return math.degrees(2 * math.asin(min(1.0, math.sqrt(max(frobenius, 0.0) / 8))))

    rows = [("images", f"{result['n']}"),
            ("hand", "same" if result["hand"] == "same" else "flipped (the estimate is the truth's mirror image)"),
            ("rotation |R - R_true|_F^2", f"mean {result['rot_mean']:.5f}, median {result['rot_median']:.5f} "
                                          f"(median angle {degrees(result['rot_median']):.2f} deg)")]
    if with_shifts:
        rows.append(("translation error (px^2)", f"mean {result['trans_mean']:.5f}, "
                                                 f"median {result['trans_median']:.5f}"))
    else:
        missing = args.predicted if shifts is None else args.truth
        rows.append(("translation error", f"not scored ({missing.name} has no shifts)"))
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
