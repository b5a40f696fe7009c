"""``cryofield simulate``: particle datasets with known ground truth."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cryofield.cli._common import command_parser, progress_bar
from cryofield.errors import InputError


def add_parser(subparsers):
    parser = command_parser(subparsers, "simulate", "Simulate particle images of one or more maps (a discrete "
                            "mixture) with uniform random poses, shifts, CTF and noise, and write them with "
                            "their ground truth.", """
        cryofield simulate --volume hand.mrc -n 10000 --snr 0.1 -o sim/
        cryofield simulate --volume a.mrc --volume b.mrc --counts 3000 7000 --shift-px 4 -o mix/
        cryofield simulate --volume map.mrc -n 5000 --ctf-from run_data.star --tilt-pairs --tilt-deg 45 -o tilt/
        cryofield simulate --volume map.mrc -n 1000 --no-ctf --snr inf -o clean/
        """)
    parser.add_argument("--volume", type=Path, action="append", required=True,
                        help="a map (repeat for several states)")
    parser.add_argument("-o", "--outdir", type=Path, required=True)
    parser.add_argument("-n", "--particles", type=int, help="number of particles (states drawn uniformly)")
    parser.add_argument("--counts", type=int, nargs="+", help="particles per state, one count per --volume")
    parser.add_argument("--apix", type=float, help="pixel size in A (default: the first map's header)")
    parser.add_argument("--snr", type=float, default=float("inf"), help="signal/noise variance (default inf: none)")
    parser.add_argument("--snr-radius", type=float, help="measure the signal variance inside this radius (px)")
    parser.add_argument("--shift-px", type=float, default=0.0, help="shifts uniform in +-this (px, default 0)")
    parser.add_argument("--defocus", type=float, nargs=2, default=(10000.0, 25000.0), metavar=("MIN", "MAX"),
                        help="defocus range in A (default 10000 25000)")
    parser.add_argument("--ctf-from", type=Path, help="draw CTF parameters from this .star/.cs/.pkl instead")
    parser.add_argument("--voltage", type=float, default=300.0, help="kV (default 300)")
    parser.add_argument("--cs", type=float, default=2.7, help="spherical aberration in mm (default 2.7)")
    parser.add_argument("--amp-contrast", type=float, default=0.1, help="amplitude contrast (default 0.1)")
    parser.add_argument("--bfactor", type=float, default=0.0, help="B-factor envelope in A^2 (default 0)")
    parser.add_argument("--no-ctf", action="store_true", help="no CTF")
    parser.add_argument("--tilt-pairs", action="store_true", help="also write a tilted partner of each particle")
    parser.add_argument("--tilt-deg", type=float, default=45.0, help="tilt about x for the partners (default 45)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-b", "--chunk-size", type=int, default=1000)
    return parser


def run(args) -> None:
    from cryofield.io import read_map, read_particles
    from cryofield.simulate.dataset import write_dataset
    from cryofield.simulate.particles import Imaging

    volumes, header_apix = [], None
    for path in args.volume:
        volume, apix = read_map(path)
        if volume.ndim != 3 or len(set(volume.shape)) != 1:
            raise InputError(path, f"map is {volume.shape}; simulation needs a cube")
        if volumes and volume.shape != volumes[0].shape:
            raise InputError(path, f"map is {volume.shape}, the first is {volumes[0].shape}")
        volumes.append(volume)
        header_apix = header_apix or apix
    apix = args.apix or header_apix
    if not apix:
        raise InputError(args.volume[0], "no pixel size in the header; pass --apix")
    rng = np.random.default_rng(args.seed)
    if args.counts is not None:
        if len(args.counts) != len(volumes) or min(args.counts) < 0:
            raise InputError(None, f"--counts needs {len(volumes)} non-negative counts, one per --volume")
        states = rng.permutation(np.repeat(np.arange(len(volumes)), args.counts))
    elif args.particles:
        states = rng.integers(0, len(volumes), args.particles)
    else:
        raise InputError(None, "say how many particles: -n N or --counts N1 N2 ...")
    if len(states) == 0:
        raise InputError(None, "no particles to simulate")
    ctf_from = None
    if args.ctf_from is not None:
        source = read_particles(args.ctf_from, apix=apix) if args.ctf_from.suffix != ".pkl" else None
        if source is not None:
            ctf_from = source.ctf_array() if source.ctf is not None else None
        else:
            from cryofield.io import load_legacy_pickle

            ctf_from = np.asarray(load_legacy_pickle(args.ctf_from), float)
        if ctf_from is None or ctf_from.ndim != 2 or ctf_from.shape[1] != 9 or not len(ctf_from):
            raise InputError(args.ctf_from, "has no CTF parameters")
    imaging = Imaging(pixel_size_angstrom=apix, snr=args.snr, snr_radius_px=args.snr_radius, shift_px=args.shift_px,
                      defocus_range_angstrom=tuple(args.defocus), voltage_kv=args.voltage, cs_mm=args.cs,
                      amplitude_contrast=args.amp_contrast, bfactor=args.bfactor, ctf=not args.no_ctf)
    total = len(states) * (2 if args.tilt_pairs else 1)
    start = time.perf_counter()
    with progress_bar(total, "simulate") as bar:
        paths = write_dataset(args.outdir, volumes, states, imaging, ctf_from=ctf_from,
                              tilt_deg=args.tilt_deg if args.tilt_pairs else None, seed=args.seed,
                              chunk_size=args.chunk_size, progress=bar.update)
    elapsed = time.perf_counter() - start
    print(f"wrote {len(states)} particles ({volumes[0].shape[-1]} px, {apix:.4f} A/px, {len(volumes)} states) to "
          f"{paths.stack} and {paths.star}" + (f", tilt partners to {paths.tilt_star}" if args.tilt_pairs else "")
          + f"; truth in {paths.truth} in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.0f} images/s)")
