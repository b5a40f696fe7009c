"""``cryofield info``: what a particle file holds."""

from __future__ import annotations

import json

import numpy as np

from cryofield.cli._common import add_input_arguments, add_tilt_series_argument, command_parser, load_table
from cryofield.errors import InputError
from cryofield.io import ParticleTable
from cryofield.io.tilts import group_column


def add_parser(subparsers):
    parser = command_parser(subparsers, "info", "Summarise a particle file: count, box, pixel size, "
                            "optics groups, metadata present and value ranges.", """
        cryofield info particles.star
        cryofield info particles.cs --datadir /data/cryosparc/P12 --json
        cryofield info particles.mrcs --poses poses.pkl --ctf ctf.pkl
        cryofield info tilts.star --tilt-series     # particles, tilts per particle, tilt and exposure ranges
        """)
    add_input_arguments(parser)
    add_tilt_series_argument(parser)
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
    if table.tilts is not None:
        summary["tilt_series"] = _tilt_series(table)
    else:
        hint = _tilt_series_hint(table)
        if hint:
            summary["hint"] = hint
    return summary


def _tilt_series(table: ParticleTable) -> dict:
    """Particles, tilt images per particle and the ranges of tilt and exposure."""
    tilts = table.tilts
    counts = tilts.counts()
    out = {"particles": tilts.n_particles, "tilt_images": table.n,
           "tilts_per_particle": [int(counts.min()), float(np.median(counts)), int(counts.max())],
           "ctf_premultiplied": tilts.ctf_premultiplied}
    if tilts.tilt_deg is not None:
        out |= {"tilt_deg": _range(tilts.tilt_deg), "tilt_from": tilts.tilt_source}
    if tilts.exposure is not None:
        out |= {"exposure_e_per_a2": _range(tilts.exposure), "exposure_from": tilts.exposure_source}
    if tilts.amplitude is not None:
        out |= {"amplitude_scale": _range(tilts.amplitude), "amplitude_from": tilts.amplitude_source}
    return out


def _tilt_series_hint(table: ParticleTable) -> str:
    """A line suggesting ``--tilt-series`` when the rows share particle names, as tilt images do."""
    if table.record.kind != "star":
        return ""
    rows = table.record.star_rows()
    key = group_column(rows.columns)
    if key is None:
        return ""
    counts = rows[key].value_counts()
    if len(counts) == len(rows) or counts.min() < 2:
        return ""
    return (f"the rows share _{key} values ({len(counts)} groups of {counts.min()}-{counts.max()} rows): if they "
            "are tilt images, pass --tilt-series to read them as particles")


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
    series = summary.get("tilt_series")
    if series is not None:
        low, median, high = series["tilts_per_particle"]
        lines += [f"tilt series       {series['particles']} particles in {series['tilt_images']} tilt images, "
                  f"{low}-{high} per particle (median {median:g})"]
        for name, source, label, unit in (("tilt_deg", "tilt_from", "stage tilt", " deg"),
                                          ("exposure_e_per_a2", "exposure_from", "exposure", " e/A^2"),
                                          ("amplitude_scale", "amplitude_from", "amplitude scale", "")):
            if name in series:
                lines.append(f"  {label:<24s}{series[name][0]:12.4g} .. {series[name][1]:.4g}{unit} "
                             f"(from {series[source]})")
        if series["ctf_premultiplied"]:
            lines.append("  images multiplied by their CTF when extracted (_rlnCtfDataAreCtfPremultiplied)")
    if summary.get("hint"):
        lines.append("note              " + summary["hint"])
    print("\n".join(lines))
