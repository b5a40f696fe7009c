"""``cryofield eval-images``: latents and losses of a trained model for any particle set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofield.cli._common import command_parser, progress_bar
from cryofield.errors import InputError
from cryofield.io import WorkDir
from cryofield.io._atomic import atomic_outputs

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
    from dataclasses import replace

    from cryofield.train import (
        TrainConfig,
        evaluate_images,
        image_losses,
        load_models,
        prepare,
        read_table,
        refine_latents,
        tilt_partners,
    )

    if args.refine_z < 0 or args.refine_lr <= 0 or (args.refine_radius is not None and args.refine_radius <= 0):
        raise InputError(args.workdir, "--refine-z must be >= 0, --refine-lr and --refine-radius > 0")
    workdir = WorkDir(args.workdir).require_config()
    config = TrainConfig.load(workdir)
    if args.refine_z and not config.zdim:
        raise InputError(args.workdir, "--refine-z needs a train-vae run (this model has no latent)")
    if config.tilt and args.particles is not None and args.tilt is None:
        raise InputError(args.workdir, "the model encodes tilt pairs: pass --tilt with --particles")
    particles = None if args.particles is None else str(args.particles)
    table = read_table(config, particles)
    if table.check_images() != config.box:
        raise InputError(particles or config.particles, f"images are {table.box_size} px; the model was trained at "
                                                        f"{config.box}")
    tilt = None
    if config.tilt and config.zdim:
        tilt = tilt_partners(config, table, None if args.tilt is None else str(args.tilt))
    with progress_bar(0 if args.lazy else table.n * (2 if tilt is not None else 1), "prepare") as bar:
        data = prepare(replace(config, lazy=args.lazy), table, scale=config.data_scale, tilt=tilt,
                       progress=lambda done, total: bar.update(done - bar.n))
    _, models = load_models(workdir, config.box, data.n_pixels)
    means, logvars, losses = evaluate_images(models, data, args.batch_size, losses=not args.refine_z, amp=config.amp)
    if args.refine_z:
        radius = args.refine_radius or None
        with progress_bar(len(data), "refine z") as bar:
            means = refine_latents(models, data, steps=args.refine_z, lr=args.refine_lr, radius_px=radius,
                                   kl_weight=config.kl_weight, amp=config.amp, progress=bar.update)
        losses = image_losses(models, data, means, args.batch_size, amp=config.amp)
    stem = args.output.with_suffix("")
    with atomic_outputs(args.output, f"{stem}.logvar.npy", f"{stem}.loss.npy") as temps:
        for temp, array in zip(temps, (means, logvars, losses)):
            with open(temp, "wb") as fh:
                np.save(fh, array)
    what = f"refined latents ({args.refine_z} steps)" if args.refine_z else "posterior means"
    print(f"wrote {args.output} ({what}, {means.shape[0]} x {means.shape[1]}), {stem}.logvar.npy (the encoder's) "
          f"and {stem}.loss.npy (mean loss {losses.mean():.5f})")
