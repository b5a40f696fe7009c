"""``cryofield train-vae``: a distribution of volumes, with a latent z per image."""

from __future__ import annotations

from cryofield.cli._common import command_parser
from cryofield.cli._train import add_training_arguments, run_training

NAME = "train-vae"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Train a VAE: an image encoder infers a latent z per particle and a "
                            "coordinate network decodes (k, z) to the volume's transform.", """
        cryofield train-vae particles.star -o run/ --zdim 8 -n 20
        cryofield train-vae particles.cs --datadir /data/P12 -o run/ --zdim 1 --beta 0.5
        cryofield train-vae big.star -o run/ --zdim 8 --lazy --buffer-size 16384      # larger than memory
        cryofield train-vae untilted.star --tilt tilted.star -o run/ --zdim 8         # tilt pairs
        cryofield train-vae warp_series.star --tilt-series -o run/ --ntilts 10        # cryo-ET: z per tilt series
        cryofield train-vae run_optimisation_set.star -o run/  # RELION 5 set (stacks without the CTF applied)
        cryofield train-vae particles.star -o run/ --resume -n 40                     # continue to 40 epochs
        torchrun --nproc-per-node 4 -m cryofield train-vae particles.star -o run/ -b 32  # 4 GPUs
        """)
    add_training_arguments(parser, vae=True)
    return parser


def run(args) -> None:
    run_training(args, vae=True)
