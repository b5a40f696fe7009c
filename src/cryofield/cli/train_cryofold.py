"""``cryofield train-cryofold``: fit a coarse-grained atomic model to particle images (Cryofold)."""

from __future__ import annotations

import argparse
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np

from cryofield.cli._common import EpochBars, add_input_arguments, load_table, read_indices
from cryofield.cli._train import add_graph_argument, add_residual_argument, add_step_arguments
from cryofield.errors import InputError

NAME = "train-cryofold"


def add_parser(subparsers):
    from cryofield.cli._common import command_parser

    parser = command_parser(subparsers, NAME, "Fit a coarse-grained atomic model (two Gaussians per residue, "
                            "bonds and side-chain restraints) to particle images with known poses; with --zdim, a "
                            "VAE moves the residues along a latent (Cryofold). Writes the fitted structure as a "
                            "PDB and its map.", """
        cryofield train-cryofold particles.star --pdb reference.pdb -o fit/                 # one structure
        cryofield train-cryofold particles.star --pdb reference.pdb -o fit/ --zdim         # a 1-D motion
        # closer ends of a motion (docs/benchmarks.md: within 3 A on adenylate kinase at SNR 0.1):
        cryofield train-cryofold particles.star --pdb open.pdb -o fit/ --zdim --lr 3e-5 --bond-strength 30 -n 15
        cryofield train-cryofold particles.star --pdb ref.pdb -o fit/ --init noise --init-noise 6
        cryofield train-cryofold particles.star --pdb ref.pdb -o fit/ --ablate bonds       # the seed's table 7.2
        cryofield eval-cryofold fit/ --z-file z_path.txt -o states/                        # structures along z
        """)
    add_input_arguments(parser)
    parser.add_argument("--pdb", type=Path, required=True, help="reference structure (PDB or mmCIF), in the frame "
                        "of the particles' poses (see --center)")
    parser.add_argument("-o", "--outdir", type=Path, required=True, help="work directory")
    parser.add_argument("--ind", type=Path, help="train on these particles only (.npy, .txt or .pkl)")
    parser.add_argument("--uninvert-data", action="store_true", help="do not flip the data's contrast")
    parser.add_argument("--window-r", type=float, default=0.85, help="soft real-space window radius (default 0.85)")
    model = parser.add_argument_group("atomic model")
    model.add_argument("--center", type=float, nargs=3, metavar=("X", "Y", "Z"),
                       help="the reference's point (A) at the box centre (default: its electron-weighted centroid, "
                            "as 'cryofield simulate' places a model; for a model fitted into a map with its origin "
                            "at 0, use D/2 * pixel size on each axis)")
    model.add_argument("--init", choices=["reference", "noise", "random"], default="reference",
                       help="start from the reference (default), from it with uniform noise on each C-alpha "
                            "(--init-noise), or from random C-alphas in a cube at the centre (--init-box); side "
                            "chains of noisy and random starts begin on their C-alpha")
    model.add_argument("--init-noise", type=float, default=6.0, help="noise half-width per coordinate, A (default 6)")
    model.add_argument("--init-box", type=float, default=64.0, help="edge of the random start's cube, A (default 64)")
    model.add_argument("--ablate", nargs="+", choices=["side-chains", "bonds", "images"], default=[],
                       help="drop model parts: one Gaussian per residue, no bond restraints, or no image loss")
    model.add_argument("--width", type=float, default=3.71, help="initial Gaussian width, A (default 3.71)")
    model.add_argument("--a0", type=float, help="initial amplitude per electron (default: the least-squares fit "
                       "of the starting model to the first 256 images)")
    model.add_argument("--bond-strength", type=float, default=0.1,
                       help="restraint strength k (default 0.1, the seed's; 30 kept the fitted structures "
                            "closer to the true ones in our benchmarks)")
    model.add_argument("--warmup-epochs", type=int, default=1,
                       help="epochs fitting width and amplitude before the coordinates restart (default 1)")
    model.add_argument("--zdim", type=int, nargs="?", const=1, default=0,
                       help="latent dimension for a heterogeneous fit (--zdim alone: 1, the seed's; default 0)")
    model.add_argument("--enc-dim", type=int, default=256, help="encoder width (default 256)")
    model.add_argument("--enc-layers", type=int, default=3, help="encoder residual layers (default 3)")
    model.add_argument("--dec-dim", type=int, default=256, help="offset decoder width (default 256)")
    model.add_argument("--dec-layers", type=int, default=3, help="offset decoder residual layers (default 3)")
    add_residual_argument(model)
    model.add_argument("--beta", type=float, help="KL weight (default 1/zdim)")
    run = parser.add_argument_group("training")
    run.add_argument("-n", "--epochs", type=int, default=10, help="epochs after the warm-up (default 10)")
    add_step_arguments(run, "the encoder in fp32 instead of bf16/fp16")
    add_graph_argument(run)
    run.add_argument("--lazy", action="store_true", help="read images through a shuffling buffer")
    run.add_argument("--buffer-size", type=int, default=8192, help="--lazy: images in the buffer (default 8192)")
    run.add_argument("--resume", action="store_true", help="continue the run in OUTDIR with its own settings")
    run.add_argument("--seed", type=int, default=0)
    return parser


def _config(args, data, runtime):
    import torch

    from cryofield import __version__
    from cryofield.cli._train import _digest
    from cryofield.train.cryofold import CryofoldConfig

    if args.epochs < 1 or args.batch_size < 1 or args.warmup_epochs < 0 or args.zdim < 0:
        raise InputError(args.outdir, "need --epochs and --batch-size >= 1, --warmup-epochs and --zdim >= 0")
    if args.width <= 0 or (args.a0 is not None and args.a0 <= 0) or args.init_box <= 0:
        raise InputError(args.outdir, "--width, --a0 and --init-box must be positive")
    if args.bond_strength < 0 or args.init_noise < 0:
        raise InputError(args.outdir, "--bond-strength and --init-noise must be 0 or more")
    return CryofoldConfig(
        particles=str(args.input), outdir=str(args.outdir), poses=args.poses and str(args.poses),
        ctf=args.ctf and str(args.ctf), datadir=args.datadir and str(args.datadir), ind=args.ind and str(args.ind),
        apix=args.apix, zdim=args.zdim, enc_dim=args.enc_dim, enc_layers=args.enc_layers, dec_dim=args.dec_dim,
        dec_layers=args.dec_layers, residual=args.residual, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, beta=args.beta,
        uninvert_data=args.uninvert_data, window_r=args.window_r, amp=not args.no_amp, checkpoint=args.checkpoint,
        seed=args.seed, device=str(runtime.device), cuda_graph=args.cuda_graph, lazy=args.lazy,
        buffer_size=args.buffer_size, world_size=runtime.world_size, box=data.box,
        data_pixel_size=data.pixel_size_angstrom, data_scale=data.scale, pdb=str(args.pdb.resolve()), init=args.init,
        init_noise_angstrom=args.init_noise,
        init_box_angstrom=args.init_box, ablate=list(args.ablate), width_angstrom=args.width, a0=args.a0,
        bond_strength=args.bond_strength, warmup_epochs=args.warmup_epochs,
        center_angstrom=None if args.center is None else list(args.center),
        versions={"cryofield": __version__, "torch": torch.__version__, "python": platform.python_version(),
                  "inputs_sha256": {str(p): _digest(p) for p in (args.input, args.poses, args.ctf, args.pdb) if p}})


def run(args) -> None:
    import torch

    from cryofield.cli._train import prepare_data
    from cryofield.imaging import render_volume
    from cryofield.io import read_atomic_model, write_map
    from cryofield.io.atoms import write_coarse_pdb
    from cryofield.train import init_runtime, posterior_means
    from cryofield.train.cryofold import CryofoldConfig, reference_model, resolve_start, train_cryofold

    outdir: Path = args.outdir
    if args.resume:
        if not (outdir / "config.json").is_file():
            raise InputError(outdir, "no run to resume")
        saved = CryofoldConfig.load(outdir / "config.json")
        for name in ("poses", "ctf", "datadir", "ind"):
            setattr(args, name, getattr(saved, name) and Path(getattr(saved, name)))
        args.apix, args.uninvert_data, args.window_r = saved.apix, saved.uninvert_data, saved.window_r
        args.lazy, args.buffer_size, args.pdb = saved.lazy, saved.buffer_size, Path(saved.pdb)
    else:
        read_atomic_model(args.pdb)  # a clear error before the images are read
    runtime = init_runtime(args.device)
    table = load_table(args)
    if args.ind is not None:
        table = table.subset(read_indices(args.ind, table.n))
    table.rotations  # noqa: B018  (a clear error when there are no poses)
    table = table.without_source_rows()
    data = prepare_data(argparse.Namespace(**vars(args), tilt=None), table, vae=bool(args.zdim))
    if args.resume:
        config = replace(saved, device=str(runtime.device), cuda_graph=args.cuda_graph)
    else:
        try:
            config = resolve_start(_config(args, data, runtime), data)
        except ValueError as exc:
            raise InputError(args.pdb, str(exc)) from None
    if runtime.is_main:
        outdir.mkdir(parents=True, exist_ok=True)
        config.save(outdir / "config.json")
    progress = EpochBars(len(data), lambda epoch, stage: "warm-up" if stage == "warm-up"
                         else f"epoch {epoch + 1}/{config.epochs}")

    def log(record: dict) -> None:
        progress.close()
        what = "warm-up" if record.get("warmup") else f"epoch {record['epoch'] + 1}"
        print(f"{what}: mse {record['mse']:.5f}" + (f", kl {record['kl']:.4f}" if config.zdim else "")
              + f", restraint {record.get('restraint', 0.0):.3g}"
              + f", {record['images_per_second']:.0f} images/s")

    models = train_cryofold(config, data, runtime=runtime, resume=args.resume, progress=progress, log=log)
    if not runtime.is_main:
        return
    coarse, center = reference_model(config)
    written = []
    z = None
    if config.zdim:
        latents = posterior_means(models, data)
        np.save(outdir / "z.npy", latents)
        written.append(f"{outdir}/z.npy")
        z = torch.from_numpy(np.median(latents, axis=0)).float()[None]
    decoder = models.decoder.cpu()
    with torch.no_grad():
        positions = decoder.positions_angstrom(z, center).reshape(-1, 3).numpy()
        volume = render_volume(decoder, data.box, z) * data.scale
    write_coarse_pdb(outdir / "structure.pdb", coarse, positions)
    write_map(outdir / "volume.mrc", volume.numpy(), data.pixel_size_angstrom)
    what = "at the median latent" if config.zdim else "fitted"
    width = float(decoder.width_angstrom.detach())
    print(f"wrote {outdir}/structure.pdb and {outdir}/volume.mrc (the structure {what}; Gaussian width "
          f"{width:.2f} A){''.join(', ' + w for w in written)}; 'cryofield eval-cryofold "
          f"{outdir} ...' writes structures and maps at any z")
