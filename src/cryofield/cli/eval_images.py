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
        cryofield eval-images tilt_run/ --particles other.star --tilt other_tilt.star -o z_other.npy
        cryofield eval-images run/ --refine-z 10 -o z_refined.npy    # each image's own best z, from the encoder's
        """)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, help="posterior means, .npy")
    parser.add_argument("--particles", type=Path, help="particles to encode (default: the training set)")
    parser.add_argument("--tilt", type=Path, help="tilted partners of --particles (models trained on tilt pairs)")
    parser.add_argument("--lazy", action="store_true", help="read the images in chunks (memory independent of N)")
    parser.add_argument("-b", "--batch-size", type=int, default=256)
    refine = parser.add_argument_group("latent refinement (closes the encoder's amortization gap; each step "
                                       "costs about one training epoch)")
    refine.add_argument("--refine-z", type=int, default=0, metavar="STEPS",
                        help="then refine each image's z by this many Adam steps on its own loss and the prior, "
                             "the decoder fixed (default 0: the encoder means)")
    refine.add_argument("--refine-lr", type=float, default=0.05, help="step size in latent units (default 0.05)")
    refine.add_argument("--refine-radius", type=float,
                        help="fit only pixels within this radius (px; default: the whole training circle; "
                             "5/16 of the box, e.g. 20 px at 64, is 2.5x cheaper and keeps most of the gain)")
    return parser

def run(args) -> None:
    import argparse

    from cryofield.cli._train import prepare_data
    from cryofield.train import TrainConfig, evaluate_images, image_losses, load_models, refine_latents

    if args.refine_z < 0 or args.refine_lr <= 0 or (args.refine_radius is not None and args.refine_radius <= 0):
        raise InputError(args.workdir, "--refine-z must be >= 0, --refine-lr and --refine-radius > 0")
    if not (args.workdir / "config.json").is_file():
        raise InputError(args.workdir, "not a trained work directory (config.json)")
    config = TrainConfig.load(args.workdir / "config.json")
    if args.refine_z and not config.zdim:
        raise InputError(args.workdir, "--refine-z needs a train-vae run (this model has no latent)")
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
    means, logvars, losses = evaluate_images(models, data, args.batch_size, losses=not args.refine_z)
    if args.refine_z:
        radius = args.refine_radius or None
        with progress_bar(len(data), "refine z") as bar:
            means = refine_latents(models, data, steps=args.refine_z, lr=args.refine_lr, radius_px=radius,
                                   kl_weight=config.kl_weight, amp=config.amp, progress=bar.update)
        losses = image_losses(models, data, means, args.batch_size)
    stem = args.output.with_suffix("")
    np.save(args.output, means)
    np.save(f"{stem}.logvar.npy", logvars)
    np.save(f"{stem}.loss.npy", losses)
    what = f"refined latents ({args.refine_z} steps)" if args.refine_z else "posterior means"
    print(f"wrote {args.output} ({what}, {means.shape[0]} x {means.shape[1]}), {stem}.logvar.npy (the encoder's) "
          f"and {stem}.loss.npy (mean loss {losses.mean():.5f})")
