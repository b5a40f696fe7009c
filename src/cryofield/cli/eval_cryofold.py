"""``cryofield eval-cryofold``: structures and maps of a Cryofold run at chosen latents."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofield.cli._common import command_parser, progress_bar
from cryofield.errors import InputError
from cryofield.io import WorkDir, numbered_map, read_array

NAME = "eval-cryofold"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Write the coarse-grained structures (PDB: C-alpha and side-chain "
                            "pseudo-atoms, the reference's residue names and numbers) and maps of a "
                            "train-cryofold run, one per latent z, and all structures in order as one multi-model "
                            "PDB (a trajectory for ChimeraX or PyMOL).", """
        cryofield eval-cryofold fit/ -o out/                           # homogeneous: out/structure_000.pdb, vol_000.mrc
        cryofield eval-cryofold fit/ --z -1.5 -o out/
        cryofield eval-cryofold fit/ --z-file path.txt -o out/         # out/trajectory.pdb: one model per row
        cryofield eval-cryofold fit/ --z-range 10 -o out/              # 10 steps between the 5th and 95th percentiles
        """)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("-o", "--outdir", type=Path, required=True)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--z", type=float, nargs="+", help="one latent (zdim numbers)")
    which.add_argument("--z-file", type=Path, help="latents, one per row (.txt or .npy)")
    which.add_argument("--z-range", type=int, metavar="STEPS",
                       help="zdim 1: STEPS latents evenly from the 5th to the 95th percentile of WORKDIR/z.npy")
    parser.add_argument("--no-maps", action="store_true", help="structures only")
    return parser


def _latents(args, zdim: int) -> np.ndarray:
    if not zdim:
        return np.zeros((1, 0))
    if args.z is not None:
        zs = np.asarray(args.z, float)[None]
    elif args.z_file is not None:
        zs = read_array(args.z_file, ndim=2, what="latents")
    elif args.z_range is not None:
        run = WorkDir(args.workdir)
        if zdim != 1 or not run.latents.is_file():
            raise InputError(args.workdir, "--z-range needs a zdim 1 run with its z.npy")
        low, high = np.percentile(run.read_latents(1)[:, 0], [5, 95])
        zs = np.linspace(low, high, max(args.z_range, 2))[:, None]
    else:
        raise InputError(args.workdir, f"this run has zdim {zdim}: pass --z, --z-file or --z-range")
    zs = np.asarray(zs, float).reshape(len(zs), -1)
    if zs.shape[1] != zdim:
        raise InputError(args.z_file or args.workdir, f"latents have {zs.shape[1]} values; the run has zdim {zdim}")
    return zs


def run(args) -> None:
    import torch

    from cryofield.imaging import render_volume
    from cryofield.io import write_map
    from cryofield.io.atoms import write_coarse_pdb
    from cryofield.train.cryofold import CryofoldConfig, load_cryofold

    run = WorkDir(args.workdir)
    if not run.is_trained():
        raise InputError(args.workdir, "not a train-cryofold work directory (config.json and checkpoints/last.pt)")
    if not CryofoldConfig.load(run).pdb:
        raise InputError(args.workdir, "not a train-cryofold run (no reference structure in config.json)")
    config, coarse, models = load_cryofold(args.workdir)
    zs = _latents(args, config.zdim)
    decoder = models.decoder
    args.outdir.mkdir(parents=True, exist_ok=True)
    frames = []
    with torch.no_grad(), progress_bar(len(zs), "structures", unit="z") as bar:
        for i, row in enumerate(zs):
            z = torch.as_tensor(row, dtype=torch.float32)[None] if config.zdim else None
            positions = decoder.positions_angstrom(z, config.center_angstrom).reshape(-1, 3).numpy()
            frames.append(positions)
            write_coarse_pdb(args.outdir / f"structure_{i:03d}.pdb", coarse, positions)
            if not args.no_maps:
                volume = render_volume(decoder, config.box, z) * config.data_scale
                write_map(numbered_map(args.outdir, i), volume.numpy(), config.data_pixel_size)
            bar.update(1)
    write_coarse_pdb(args.outdir / "trajectory.pdb", coarse, np.stack(frames))
    maps = "" if args.no_maps else f" and vol_000.mrc ... ({config.box}^3, {config.data_pixel_size:.4f} A/px)"
    print(f"wrote {len(zs)} structure(s) to {args.outdir}/structure_000.pdb ...{maps}, all in order in "
          f"{args.outdir}/trajectory.pdb")
