"""``cryofield train-nn``: one neural volume from particles with known poses."""

from __future__ import annotations

from cryofield.cli._common import command_parser
from cryofield.cli._train import add_training_arguments, run_training

NAME = "train-nn"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Train a coordinate network (positional encoding and MLP) to "
                            "represent one volume in Fourier space, from particles with known poses and CTF.", """
        cryofield train-nn particles.star -o run/ -n 20
        cryofield train-nn particles.mrcs --poses poses.pkl --ctf ctf.pkl -o run/ --pe-type geom_lowf
        cryofield train-nn particles.star -o run/ -n 40 --resume     # continue after the last checkpoint
        cryofield train-nn particles.star -o run/ --refine-poses     # also refine rotations and shifts
        """)
    add_training_arguments(parser, vae=False)
    return parser


def run(args) -> None:
    run_training(args, vae=False)
