"""``cryofield invert``: flip the contrast of particle images."""

from __future__ import annotations

from cryofield.cli._common import (
    add_input_arguments,
    add_output_arguments,
    command_parser,
    load_table,
    write_transformed_stack,
)


def add_parser(subparsers):
    parser = command_parser(subparsers, "invert",
                            "Invert the contrast of particle images (multiply by -1).", """
        cryofield invert particles.mrcs -o particles.inv.mrcs
        cryofield invert particles.star -o particles.inv.mrcs    # also writes particles.inv.star
        """)
    add_input_arguments(parser)
    add_output_arguments(parser)
    return parser


def run(args) -> None:
    write_transformed_stack(args, load_table(args), "invert", lambda images, _indices: -images)
