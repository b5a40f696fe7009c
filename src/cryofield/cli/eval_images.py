"""``cryofield eval-images``: latents and losses of a trained model for any particle set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofield.cli._common import command_parser, load_table, progress_bar, read_indices
from cryofield.errors import InputError

NAME = "eval-images"

def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Encode particles with a trained model: posterior means (OUT), "
                            "log-variances (OUT stem + .logvar.npy) and per-image losses (+ .loss.npy).", """
        cryofield eval-images run/ -o z.npy                          # the training particles
        cryofield eval-images run/ --particles other.star -o z_other.npy
        """)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, help="posterior means, .npy")
    parser.add_argument("--particles", type=Path, help="particles to encode (default: the training set)")
    parser.add_argument("-b", "--batch-size", type=int, default=256)
    return parser

def run(args) -> None:
    import argparse

    from cryofield.data import prepare_particles
    from cryofield.train import TrainConfig, evaluate_images, load_models

    if not (args.workdir / "config.json").is_file():
        raise InputError(args.workdir, "not a trained work directory (config.json)")
    config = TrainConfig.load(args.workdir / "config.json")
    source = argparse.Namespace(
        input=args.particles or Path(config.particles), datadir=config.datadir and Path(config.datadir),
        poses=None if args.particles else (config.poses and Path(config.poses)),
        ctf=None if args.particles else (config.ctf and Path(config.ctf)), apix=config.apix)
    table = load_table(source)
    if args.particles is None and config.ind:
        table = table.subset(read_indices(Path(config.ind), table.n))
    if table.check_images() != config.box:
        raise InputError(source.input, f"images are {table.box_size} px; the model was trained at {config.box}")
    with progress_bar(table.n, "prepare") as bar:
        data = prepare_particles(table, invert=not config.uninvert_data, window_r=config.window_r,
                                 scale=config.data_scale, progress=bar.update)
    _, models = load_models(args.workdir, config.box, data.images.shape[1])
    means, logvars, losses = evaluate_images(models, data, args.batch_size)
    stem = args.output.with_suffix("")
    np.save(args.output, means)
    np.save(f"{stem}.logvar.npy", logvars)
    np.save(f"{stem}.loss.npy", losses)
    print(f"wrote {args.output} ({means.shape[0]} x {means.shape[1]}), {stem}.logvar.npy and {stem}.loss.npy "
          f"(mean loss {losses.mean():.5f})")
