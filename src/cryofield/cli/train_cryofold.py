"""``cryofield train-cryofold``: fit a coarse-grained atomic model to particle images (Cryofold)."""

from __future__ import annotations

from pathlib import Path

from cryofield.cli._common import add_input_arguments
from cryofield.cli._train import (
    add_graph_argument,
    add_residual_argument,
    add_step_arguments,
    config_values,
    remember_defaults,
    run_trainer,
)

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
    return remember_defaults(parser)


def run(args) -> None:
    from cryofield.train import CryofoldConfig

    renames = {"init_noise_angstrom": "init_noise", "init_box_angstrom": "init_box", "width_angstrom": "width",
               "center_angstrom": "center"}
    values, changes = config_values(args, CryofoldConfig, renames, pdb=str(args.pdb.resolve()))

    def describe(record: dict) -> str:
        what = "warm-up" if record.get("warmup") else f"epoch {record['epoch'] + 1}"
        return (f"{what}: mse {record['mse']:.5f}" + (f", kl {record['kl']:.4f}" if record.get("kl") else "")
                + f", restraint {record.get('restraint', 0.0):.3g}, {record['images_per_second']:.0f} images/s")

    run_trainer(args, None if args.resume else CryofoldConfig(**values), changes, describe,
                label=lambda epoch, stage, n: "warm-up" if stage == "warm-up" else f"epoch {epoch + 1}/{n}")
