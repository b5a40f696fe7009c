"""``cryofield rmsd``: C-alpha RMSD of two atomic models after optimal superposition."""

from __future__ import annotations

import json
from pathlib import Path

from cryofield.cli._common import command_parser
from cryofield.errors import InputError

NAME = "rmsd"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "C-alpha RMSD between two models (PDB or mmCIF; the first model of "
                            "each file), after least-squares superposition, and the fraction of C-alphas within "
                            "3 A. Residues are matched by chain and number.", """
        cryofield rmsd truth.pdb fit/structure.pdb
        cryofield rmsd truth.pdb fit/structure.pdb --no-superpose --json
        """)
    parser.add_argument("a", type=Path, help="the reference")
    parser.add_argument("b", type=Path, help="the model compared (superposed onto A)")
    parser.add_argument("--no-superpose", action="store_true", help="compare in the files' own frames")
    parser.add_argument("--json", action="store_true", help="print rmsd_angstrom, within_3a, n_matched as JSON")
    return parser


def run(args) -> None:
    from dataclasses import asdict

    from cryofield.io import read_atomic_model
    from cryofield.metrics import compare_ca

    a, b = read_atomic_model(args.a), read_atomic_model(args.b)
    try:
        result = compare_ca(a, b, superpose=not args.no_superpose)
    except ValueError as exc:
        raise InputError(args.b, str(exc)) from None
    if args.json:
        print(json.dumps(asdict(result)))
        return
    print(f"C-alpha RMSD {result.rmsd_angstrom:.3f} A over {result.n_matched} residues"
          f"{'' if args.no_superpose else ' after superposition'}; {100 * result.within_3a:.1f} % within 3 A")
