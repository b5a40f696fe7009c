"""``cryofield info``: what a particle file holds."""

from __future__ import annotations

import json

import numpy as np

from cryofield.cli._common import add_input_arguments, command_parser, load_table
from cryofield.errors import InputError
from cryofield.io import ParticleTable


def add_parser(subparsers):
    parser = command_parser(subparsers, "info", "Summarise a particle file: count, box, pixel size, "
                            "optics groups, metadata present and value ranges.", """
        cryofield info particles.star
        cryofield info particles.cs --datadir /data/cryosparc/P12 --json
        cryofield info particles.mrcs --poses poses.pkl --ctf ctf.pkl
        """)
    add_input_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    return parser


def _range(values: np.ndarray) -> list[float]:
    return [float(np.min(values)), float(np.max(values))] if len(values) else []


def summarise(table: ParticleTable) -> dict:
    """The facts ``info`` reports, as plain Python values."""
    refs = table.refs
    stacks_found, missing = 0, []
    for sid in range(len(refs.stack_names)):
        try:
            refs.stack(sid)
            stacks_found += 1
        except InputError:
            missing.append(refs.stack_names[sid])
    try:
        box = table.box_size if table.n else None
    except InputError:
        box = None
    summary = {
        "file": str(table.source), "format": table.record.kind if table.record.kind != "none" else "stack",
        "particles": table.n, "box_size_px": box,
        "pixel_size_angstrom": sorted({round(float(a), 6) for a in np.unique(table.pixel_size_angstrom)}),
        "optics_groups": {int(g): int(c) for g, c in zip(*np.unique(table.optics_group, return_counts=True))},
        "stacks": len(refs.stack_names), "stacks_found": stacks_found, "stacks_missing": missing[:5],
        "present": table.present(),
        "ranges": {},
    }
    ranges = summary["ranges"]
    if table.ctf is not None:
        for column in table.ctf.columns:
            ranges[column] = _range(table.ctf[column].to_numpy())
    if table.rotations_or_none is not None:
        tilt = np.degrees(np.arccos(np.clip(table.rotations_or_none[:, 2, 2], -1, 1)))
        ranges["tilt_deg"] = _range(tilt)
    if table.shifts_angstrom is not None:
        ranges["shift_x_px"] = _range(table.shifts_px[:, 0])
        ranges["shift_y_px"] = _range(table.shifts_px[:, 1])
    return summary


def run(args) -> None:
    summary = summarise(load_table(args))
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    present = [k for k, v in summary["present"].items() if v] or ["none"]
    apix = ", ".join(f"{a:g}" for a in summary["pixel_size_angstrom"])
    lines = [
        f"file              {summary['file']} ({summary['format']})",
        f"particles         {summary['particles']}",
        f"box size          {summary['box_size_px']} px",
        f"pixel size        {apix} A",
        f"optics groups     {len(summary['optics_groups'])}: "
        + ", ".join(f"{g} ({c})" for g, c in list(summary["optics_groups"].items())[:8])
        + (" ..." if len(summary["optics_groups"]) > 8 else ""),
        f"image stacks      {summary['stacks_found']} of {summary['stacks']} found"
        + (f"; missing e.g. {summary['stacks_missing'][0]} (use --datadir)"
           if summary["stacks_missing"] else ""),
        f"metadata          {', '.join(present)}",
    ]
    for name, (low, high) in summary["ranges"].items():
        lines.append(f"  {name:<24s}{low:12.4g} .. {high:.4g}")
    print("\n".join(lines))
