"""``cryofield train-cryofold``: fit a coarse-grained atomic model to particle images (Cryofold)."""

from __future__ import annotations

from cryofield.cli._common import add_input_arguments
from cryofield.cli._train import (
    STEP,
    add_resume_argument,
    add_settings,
    config_values,
    remember_defaults,
    run_trainer,
)

NAME = "train-cryofold"


def add_parser(subparsers):
    from cryofield.cli._common import command_parser
    from cryofield.train import CryofoldConfig

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
    config = CryofoldConfig
    add_input_arguments(parser)
    add_settings(parser, config, "pdb", "outdir", "ind", "uninvert_data", "window_r")
    model = parser.add_argument_group("atomic model")
    add_settings(model, config, "center_angstrom", "init", "init_noise_angstrom", "init_box_angstrom", "ablate",
                 "width_angstrom", "a0", "bond_strength", "warmup_epochs", "zdim", "enc_dim", "enc_layers", "dec_dim",
                 "dec_layers", "residual", "beta")
    run = parser.add_argument_group("training")
    add_settings(run, config, "epochs", *STEP, "cuda_graph", "lazy", "buffer_size")
    add_resume_argument(run, "continue the run in OUTDIR with its own settings")
    add_settings(run, config, "seed")
    return remember_defaults(parser)


def run(args) -> None:
    from cryofield.train import CryofoldConfig

    values, changes = config_values(args, CryofoldConfig, pdb=str(args.pdb.resolve()))

    def describe(record: dict) -> str:
        what = "warm-up" if record.get("warmup") else f"epoch {record['epoch'] + 1}"
        return (f"{what}: mse {record['mse']:.5f}" + (f", kl {record['kl']:.4f}" if record.get("kl") else "")
                + f", restraint {record.get('restraint', 0.0):.3g}, {record['images_per_second']:.0f} images/s")

    run_trainer(args, None if args.resume else CryofoldConfig(**values), changes, describe,
                label=lambda epoch, stage, n: "warm-up" if stage == "warm-up" else f"epoch {epoch + 1}/{n}")
