"""``cryofield eval-vol``: maps from a trained model, one per latent z."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofield.cli._common import command_parser, progress_bar
from cryofield.errors import InputError
from cryofield.io import WorkDir, numbered_map, read_array

NAME = "eval-vol"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Write the volumes of a trained model: one map per latent z "
                            "(or the single volume of train-nn), positive density, pixel size in the header.", """
        cryofield eval-vol run/ -o maps/                       # train-nn: maps/vol_000.mrc
        cryofield eval-vol run/ --z 0.5 -1.2 0 0 0 0 0 0 -o maps/
        cryofield eval-vol run/ --z-file centers.txt -o maps/ --box 64 --flip --lowpass 6
        cryofield eval-vol run/ --mean-of run/analysis/kmeans20/cluster_003.ind.txt selected.txt -o maps/
        """)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("-o", "--outdir", type=Path, required=True)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--z", type=float, nargs="+", help="one latent (zdim numbers)")
    which.add_argument("--z-file", type=Path, help="latents, one per row (.txt or .npy)")
    which.add_argument("--mean-of", type=Path, nargs="+", metavar="IND",
                       help="one map per index file (input-file indices): at the mean latent of its particles")
    parser.add_argument("--latents", type=Path, help="--mean-of: latents to average (default WORKDIR/z.npy)")
    parser.add_argument("--box", type=int, help="render at this smaller box (Fourier-cropped)")
    parser.add_argument("--apix", type=float, help="pixel size in A to write (default: the training data's)")
    parser.add_argument("--flip", action="store_true", help="invert the hand")
    parser.add_argument("--lowpass", type=float, help="low-pass at this resolution (A)")
    parser.add_argument("--no-amp", action="store_true",
                        help="evaluate the network in fp32 (default: in the precision it was trained in, bf16 "
                             "unless trained with --no-amp; the maps agree to FSC >= 0.997)")
    return parser


def run(args) -> None:
    from cryofield.train import TrainConfig, write_volumes

    config = TrainConfig.load(WorkDir(args.workdir).require_trained())
    if config.zdim:
        if args.z is not None:
            zs = np.asarray(args.z, float)[None]
        elif args.z_file is not None:
            zs = read_array(args.z_file, ndim=2, what="latents")
        elif args.mean_of is not None:
            zs = _set_means(args)
        else:
            raise InputError(args.workdir, f"this model has zdim {config.zdim}: pass --z, --z-file or --mean-of")
        zs = np.asarray(zs, float).reshape(len(zs), -1)
        if zs.shape[1] != config.zdim:
            raise InputError(args.z_file or args.workdir, f"latents have {zs.shape[1]} values; the model has "
                                                          f"zdim {config.zdim}")
    else:
        zs = np.zeros((1, 0))
    args.outdir.mkdir(parents=True, exist_ok=True)
    paths = [numbered_map(args.outdir, i) for i in range(len(zs))]
    with progress_bar(len(zs), "maps", unit="map") as bar:
        box, apix = write_volumes(args.workdir, zs, paths, box=args.box, apix=args.apix, flip=args.flip,
                                  lowpass=args.lowpass, amp=False if args.no_amp else None,
                                  progress=bar.update)
    print(f"wrote {len(paths)} map(s) to {args.outdir}/ ({box}^3, {apix:.4f} A/px)")


def _set_means(args) -> np.ndarray:
    """The mean latent of the particles of each ``--mean-of`` file, (files, zdim)."""
    import argparse

    from cryofield.cli._latents import latent_rows, load_run_latents
    from cryofield.io import read_indices

    z, rows = load_run_latents(argparse.Namespace(workdir=args.workdir, z=args.latents))
    means = []
    for path in args.mean_of:
        chosen = read_indices(path, np.iinfo(np.int64).max)
        if not len(chosen):
            raise InputError(path, "no particles")
        means.append(z[latent_rows(chosen, rows, path)].mean(0))
    return np.stack(means)
