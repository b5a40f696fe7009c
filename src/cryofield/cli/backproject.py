"""``cryofield backproject``: voxel reconstruction with half maps and their FSC."""

from __future__ import annotations

from pathlib import Path

from cryofield.cli._common import (
    add_input_arguments,
    add_tilt_series_argument,
    check_outputs,
    command_parser,
    inputs_of,
    load_table,
    progress_bar,
)
from cryofield.errors import InputError
from cryofield.io import read_indices


def add_parser(subparsers):
    parser = command_parser(subparsers, "backproject", "Reconstruct a voxel map from particles with known poses "
                            "and CTF: two random half maps, their FSC and the resolution at 0.143.", """
        cryofield backproject particles.star -o recon/
        cryofield backproject particles.mrcs --poses poses.pkl --ctf ctf.pkl -o recon/ --ind keep.npy
        cryofield backproject particles.cs --datadir /data/P12 -o recon/ --uninvert-data
        cryofield backproject tilts.star --tilt-series -o recon/   # halves by particle, exposure-weighted
        """)
    add_input_arguments(parser)
    add_tilt_series_argument(parser, weighting=True)
    parser.add_argument("-o", "--outdir", type=Path, required=True,
                        help="folder for volume.mrc, half_a.mrc, half_b.mrc, fsc.txt, fsc.png")
    parser.add_argument("--ind", type=Path, help="use only these particles (.npy, .txt or .pkl)")
    parser.add_argument("--uninvert-data", action="store_true",
                        help="do not flip the data's contrast (for images already with positive density)")
    parser.add_argument("--reg", type=float, default=1e-2,
                        help="Wiener regulariser relative to the mean CTF^2 weight (default 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the half-set split (default 0)")
    parser.add_argument("-b", "--chunk-size", type=int, default=256, help="images per batch (default 256)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu; e.g. cuda)")
    return parser


def run(args) -> None:
    import torch

    from cryofield.io._atomic import atomic_outputs
    from cryofield.recon import backproject_table
    from cryofield.reports import plot_fsc

    table = load_table(args).with_tilt_weighting(args.tilt_weighting)
    if args.ind is not None:  # tilt series: particles, each with every tilt image
        table = (table.subset(read_indices(args.ind, table.n)) if table.tilts is None
                 else table.subset_particles(read_indices(args.ind, table.tilts.n_particles)))
    table.rotations  # noqa: B018  (raises a clear error when the input has no poses)
    outdir: Path = args.outdir
    names = ["volume.mrc", "half_a.mrc", "half_b.mrc", "fsc.txt", "fsc.png"]
    if outdir.exists() and not outdir.is_dir():
        raise InputError(outdir, "exists and is not a folder")
    if outdir.is_dir():
        check_outputs([outdir / n for n in names], inputs_of(args), table)
    with progress_bar(table.n, "backproject") as bar:
        result = backproject_table(table, invert=not args.uninvert_data, regularization=args.reg,
                                   chunk_size=args.chunk_size, seed=args.seed, device=torch.device(args.device),
                                   progress=bar.update)
    outdir.mkdir(parents=True, exist_ok=True)
    apix = result.pixel_size_angstrom
    with atomic_outputs(*(outdir / n for n in names)) as temps:
        result.write(*temps[:4])
        freqs_a = result.freqs / apix
        plot_fsc(temps[4], freqs_a, {f"half maps ({result.counts[0]} + {result.counts[1]} particles)": result.fsc},
                 title=f"{table.source.name}: {result.resolution_angstrom(0.143):.2f} A at FSC 0.143")
    count = f"{table.n} particles" if table.tilts is None else (
        f"{table.tilts.n_particles} particles in {table.n} tilt images, amplitude scale "
        f"{table.tilts.amplitude_source or 'none'}")
    print(f"wrote {outdir}/{{{','.join(names)}}}: {count}, box {result.volume.shape[-1]}, "
          f"{apix:.4f} A/px; half-map FSC 0.143 at {result.resolution_angstrom(0.143):.2f} A "
          f"(0.5 at {result.resolution_angstrom(0.5):.2f} A)")
