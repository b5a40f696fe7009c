"""``cryofield downsample``: Fourier-crop a particle stack to a smaller box."""

from __future__ import annotations

from cryofield.cli._common import (
    add_input_arguments,
    add_output_arguments,
    command_parser,
    load_table,
    write_transformed_stack,
)
from cryofield.errors import InputError


def add_parser(subparsers):
    parser = command_parser(subparsers, "downsample", "Downsample particle images by Fourier cropping "
                            "(read and written in chunks; memory does not grow with the dataset).", """
        cryofield downsample particles.star -D 128 -o particles.128.mrcs   # also writes particles.128.star
        cryofield downsample particles.cs --datadir /data/P12 -D 64 -o p64.mrcs
        cryofield downsample stack.mrcs -D 96 -o stack.96.mrcs
        """)
    add_input_arguments(parser)
    parser.add_argument("-D", "--box", type=int, required=True, help="new box size in pixels")
    add_output_arguments(parser)
    return parser


def run(args) -> None:
    import torch  # here, not at the top: `cryofield info` should not pay for it

    from cryofield.fourier import downsample_images

    table = load_table(args)
    old = table.check_images() if table.n else 0
    if table.n and not 1 <= args.box <= old:
        raise InputError(args.input, f"new box {args.box} must be between 1 and the current box {old}")

    def crop(images, _indices):
        with torch.no_grad():
            return downsample_images(torch.from_numpy(images), args.box).numpy()

    write_transformed_stack(args, table, "downsample", crop, box_size=args.box,
                            pixel_size_angstrom=table.pixel_size_angstrom * old / max(args.box, 1))
