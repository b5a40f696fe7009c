"""``cryofield phase-flip``: correct the sign of the CTF in particle images."""

from __future__ import annotations

from cryofield.cli._common import (
    add_input_arguments,
    add_output_arguments,
    add_tilt_series_argument,
    command_parser,
    load_table,
    write_transformed_stack,
)

NAME = "phase-flip"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Phase-flip particle images: multiply each image's Fourier "
                            "transform by the sign of its CTF.", """
        cryofield phase-flip particles.star -o particles.flipped.mrcs
        cryofield phase-flip particles.mrcs --ctf ctf.pkl -o particles.flipped.mrcs
        """)
    add_input_arguments(parser)
    add_tilt_series_argument(parser)
    add_output_arguments(parser)
    return parser


def run(args) -> None:
    import torch  # here, not at the top: `cryofield info` should not pay for it

    from cryofield.imaging import phase_flip

    table = load_table(args)
    table.refuse_premultiplied("phase flipping")
    ctf = torch.from_numpy(table.ctf_array())

    def flip(images, indices):
        with torch.no_grad():
            return phase_flip(torch.from_numpy(images), ctf[indices]).numpy()

    write_transformed_stack(args, table, NAME, flip)
