"""``cryofield select``: write a subset of particles as .star, .cs or .mrcs + .star."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofield.cli._common import (
    add_input_arguments,
    add_tilt_series_argument,
    check_outputs,
    command_parser,
    inputs_of,
    load_table,
    progress_bar,
)
from cryofield.errors import InputError
from cryofield.io import export_stack, read_indices, write_particles
from cryofield.io.export import output_paths


def add_parser(subparsers):
    parser = command_parser(subparsers, "select", "Write a subset of particles, in their original order, "
                            "as .star (layout, optics table and every column kept), .cs (from a .cs every "
                            "field and uid kept, with the passthrough fields of the input's group; from "
                            "other inputs built as cryoSPARC imports particles; always with a .csg result "
                            "group for cryoSPARC's Import Result Group) or .mrcs plus a matching .star.", """
        cryofield select particles.star --ind keep.npy -o subset.star
        cryofield select particles.cs --exclude junk.txt -o clean.cs     # + clean.csg for cryoSPARC
        cryofield select particles.star --ind keep.txt -o keep.cs         # RELION -> cryoSPARC
        cryofield select particles.star --ind cluster3.pkl -o cluster3.mrcs   # images + cluster3.star
        cryofield select tilts.star --tilt-series --ind keep.txt -o kept.star  # particles, every tilt row kept
        """)
    add_input_arguments(parser)
    add_tilt_series_argument(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--ind", type=Path, help="indices to keep (.npy, .txt or cryoDRGN .pkl; 0-based)")
    which.add_argument("--exclude", type=Path, help="indices to drop (.npy, .txt or .pkl; 0-based)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .star, .cs or .mrcs")
    parser.add_argument("-b", "--chunk-size", type=int, default=512, help="images per chunk for .mrcs output")
    return parser


def run(args) -> None:
    table = load_table(args)
    particles = table.n if table.tilts is None else table.tilts.n_particles  # tilt series: indices count particles
    chosen = read_indices(args.ind or args.exclude, particles)
    if args.exclude is not None:
        chosen = np.setdiff1d(np.arange(particles), chosen)
    if len(chosen) == 0:
        raise InputError(args.ind or args.exclude, "selects no particles")
    subset = table.subset(chosen) if table.tilts is None else table.subset_particles(chosen)
    out: Path = args.output
    ext = out.suffix.lower()
    if table.record.one_row_per_particle and ext != ".star":
        raise InputError(out, "a RELION 5 tomography set is written back as .star, one row per particle (its "
                              "images are re-extracted by RELION)")
    if ext in (".mrcs", ".mrc"):
        star = out.with_suffix(".star")
        check_outputs([out, star], inputs_of(args), table)
        with progress_bar(subset.n, "select") as bar:
            export_stack(subset, out, star, chunk_size=args.chunk_size, progress=bar.update)
        print(f"wrote {_count(subset, table)} to {out} and {star}")
        return
    if ext not in (".star", ".cs"):
        raise InputError(out, "output must end in .star, .cs or .mrcs")
    outputs = output_paths(subset, out)  # a .cs comes with its result group (.csg) and passthrough table
    check_outputs(outputs, inputs_of(args))
    write_particles(subset, out)  # all of them whole, or none
    print(f"wrote {_count(subset, table)} to {', '.join(map(str, outputs))}")


def _count(subset, table) -> str:
    """``"K of N particles"`` (tilt series: with their tilt images)."""
    if table.tilts is None:
        return f"{subset.n} of {table.n} particles"
    return f"{subset.tilts.n_particles} of {table.tilts.n_particles} particles ({subset.n} tilt images)"
