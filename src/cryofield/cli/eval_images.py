"""``cryofield eval-images``: latents and losses of a trained model for any particle set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofield.cli._common import command_parser, load_table, read_indices
from cryofield.errors import InputError

NAME = "eval-images"

def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Encode particles with a trained model: posterior means (OUT), "
                            "log-variances (OUT stem + .logvar.npy) and per-image losses (+ .loss.npy).", """
        cryofield eval-images run/ -o z.npy                          # the training particles
        cryofield eval-images run/ --particles other.star -o z_other.npy
        cryofield eval-images tilt_run/ --particles other.star --tilt other_tilt.star -o z_other.npy
        """)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, help="posterior means, .npy")
    parser.add_argument("--particles", type=Path, help="particles to encode (default: the training set)")
    parser.add_argument("--tilt", type=Path, help="tilted partners of --particles (models trained on tilt pairs)")
    parser.add_argument("--lazy", action="store_true", help="read the images in chunks (memory independent of N)")
    parser.add_argument("-b", "--batch-size", type=int, default=256)
    return parser

def run(args) -> None:
    import argparse

    from cryofield.cli._train import prepare_data
    from cryofield.train import TrainConfig, evaluate_images, load_models

    if not (args.workdir / "config.json").is_file():
        raise InputError(args.workdir, "not a trained work directory (config.json)")
    config = TrainConfig.load(args.workdir / "config.json")
    if config.tilt and args.particles is not None and args.tilt is None:
        raise InputError(args.workdir, "the model encodes tilt pairs: pass --tilt with --particles")
    source = argparse.Namespace(
        input=args.particles or Path(config.particles), datadir=config.datadir and Path(config.datadir),
        poses=None if args.particles else (config.poses and Path(config.poses)),
        ctf=None if args.particles else (config.ctf and Path(config.ctf)), apix=config.apix,
        ind=None if args.particles else (config.ind and Path(config.ind)),
        tilt=(args.tilt or (None if args.particles else config.tilt and Path(config.tilt))) if config.tilt else None,
        tilt_deg=config.tilt_deg, uninvert_data=config.uninvert_data, window_r=config.window_r, lazy=args.lazy)
    table = load_table(source)
    if source.ind is not None:
        table = table.subset(read_indices(source.ind, table.n))
    if table.check_images() != config.box:
        raise InputError(source.input, f"images are {table.box_size} px; the model was trained at {config.box}")
    data = prepare_data(source, table, vae=bool(config.zdim), scale=config.data_scale)
    _, models = load_models(args.workdir, config.box, data.n_pixels)
    means, logvars, losses = evaluate_images(models, data, args.batch_size)
    stem = args.output.with_suffix("")
    np.save(args.output, means)
    np.save(f"{stem}.logvar.npy", logvars)
    np.save(f"{stem}.loss.npy", losses)
    print(f"wrote {args.output} ({means.shape[0]} x {means.shape[1]}), {stem}.logvar.npy and {stem}.loss.npy "
          f"(mean loss {losses.mean():.5f})")
