"""``cryofield simulate``: particle datasets with known ground truth."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cryofield.cli._common import command_parser, progress_bar
from cryofield.errors import InputError
from cryofield.simulate.junk import JUNK_KINDS


def add_parser(subparsers):
    parser = command_parser(subparsers, "simulate", "Simulate particle images of one or more maps (a discrete "
                            "mixture) with uniform random poses, shifts, CTF and noise, and write them with "
                            "their ground truth.", """
        cryofield simulate --volume hand.mrc -n 10000 --snr 0.1 -o sim/
        cryofield simulate --volume a.mrc --volume b.mrc --counts 3000 7000 --shift-px 4 -o mix/
        cryofield simulate --volume map.mrc -n 5000 --ctf-from run_data.star --tilt-pairs --tilt-deg 45 -o tilt/
        cryofield simulate --volume map.mrc -n 1000 --no-ctf --snr inf -o clean/
        cryofield simulate --pdb 1ake.pdb --pdb 4ake.pdb --box 64 --apix 3 -n 2000 --snr 0.01 --tilt-series \
            --tilt-range -60 60 --tilt-step 6 --dose-per-tilt 5 -o et/    # 2,000 particles x 21 tilts
        cryofield simulate --pdb 1ake.pdb --pdb 4ake.pdb --states 20 --box 64 --apix 1.5 -n 20000 --snr 0.1 -o ake/
        cryofield simulate --pdb 1ake.pdb --rotate A:122-159 --axis A:121:CA,A:122:CA --angles 0 45 \\
            --box 64 --apix 1.5 -n 10000 --population gaussian --means 2 7 --widths 1 1 -o lid/
        # a realistic benchmark: low SNR, 20 % junk, 2 degree pose errors, micrographs, float16
        cryofield simulate --pdb 1ake.pdb --pdb 4ake.pdb --box 128 --apix 1.5 -n 100000 --snr 0.02 \\
            --snr-radius 40 --ctf-from run_data.star --junk 0.2 --pose-error 2 --shift-error 0.5 \\
            --micrographs 1000 --float16 -o realistic/
        """)
    sources = parser.add_argument_group("sources (maps or atomic models)")
    sources.add_argument("--volume", type=Path, action="append", help="a map (repeat for several states)")
    sources.add_argument("--pdb", type=Path, action="append",
                         help="an atomic model (PDB/mmCIF); two of them: a trajectory from the first to the second")
    sources.add_argument("--ca-only", action="store_true", help="render C-alpha atoms only")
    sources.add_argument("--resolution", type=float, help="rendering resolution in A (default 2 x --apix)")
    sources.add_argument("--render", choices=["band-limited", "molmap"], default="band-limited",
                         help="atoms (Gaussians of --resolution) to a map: their exact transform at the grid's "
                              "frequencies (default), or sampled at the voxel centres as Chimera's molmap does "
                              "(aliased when narrower than a voxel; cryofield's rendering before 2026-11-26)")
    sources.add_argument("--box", type=int, help="box size in pixels (atomic models)")
    sources.add_argument("--states", type=int, default=10, help="states along a trajectory or rotation (default 10)")
    motion = parser.add_argument_group("rigid motions of part of one atomic model")
    motion.add_argument("--rotate", help="atoms that move, e.g. 'A:122-159' or 'A:30-59,A:60-72'")
    motion.add_argument("--axis", help="rotation axis through two atoms, e.g. 'A:121:CA,A:122:CA'")
    motion.add_argument("--angles", type=float, nargs=2, default=(0.0, 60.0), metavar=("FROM", "TO"),
                        help="angle range in degrees (default 0 60)")
    motion.add_argument("--circular", action="store_true", help="a full turn (0..360) instead of --angles")
    motion.add_argument("--rotate2", help="a second moving part: a 2-D grid of angle pairs")
    motion.add_argument("--axis2", help="axis of the second part")
    motion.add_argument("--angles2", type=float, nargs=2, default=(0.0, 60.0), metavar=("FROM", "TO"))
    motion.add_argument("--random-configs", type=int, metavar="K",
                        help="K random configurations (angles uniform in the ranges) instead of a grid")
    pop = parser.add_argument_group("population over states")
    pop.add_argument("-n", "--particles", type=int, help="number of particles")
    pop.add_argument("--population", choices=["uniform", "gaussian"], default="uniform")
    pop.add_argument("--means", type=float, nargs="+", help="gaussian: means along the states (state units)")
    pop.add_argument("--widths", type=float, nargs="+", help="gaussian: standard deviations (state units)")
    pop.add_argument("--counts", type=int, nargs="+", help="particles per state")
    parser.add_argument("-o", "--outdir", type=Path, required=True)
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
    series = parser.add_argument_group("cryo-ET tilt series (-n counts particles, each imaged at every tilt)")
    series.add_argument("--tilt-series", action="store_true",
                        help="image each particle at every stage tilt about y, damaged by its accumulated exposure; "
                             "one STAR row per tilt image (read back with --tilt-series)")
    series.add_argument("--tilt-range", type=float, nargs=2, default=(-60.0, 60.0), metavar=("MIN", "MAX"),
                        help="stage tilts in degrees (default -60 60)")
    series.add_argument("--tilt-step", type=float, default=3.0, help="degrees between tilts (default 3)")
    series.add_argument("--tilt-scheme", choices=["dose-symmetric", "bidirectional"], default="dose-symmetric",
                        help="order of acquisition (default dose-symmetric: 0, +s, -s, -2s, +2s, ...)")
    series.add_argument("--dose-per-tilt", type=float, default=3.0, help="e/A^2 per tilt image (default 3)")
    series.add_argument("--ice", type=float, default=1000.0,
                        help="ice thickness in A: particle heights, which change each tilt's defocus (default 1000)")
    series.add_argument("--premultiply", action="store_true",
                        help="multiply each image by its CTF and exposure weight, as RELION 5 and WarpTools extract "
                             "by default (_rlnCtfDataAreCtfPremultiplied 1)")
    real = parser.add_argument_group("as real data look (the truth keeps the true values apart)")
    real.add_argument("--junk", type=float, default=0.0, metavar="FRACTION",
                      help="fraction of the images that are junk (default 0), of the --junk-kinds in equal shares")
    real.add_argument("--junk-kinds", default=",".join(JUNK_KINDS),
                      help=f"comma-separated, of {', '.join(JUNK_KINDS)}: empty ice, clumps of 3-5 particles, "
                           "another protein, particles cut by a random plane (default all)")
    real.add_argument("--junk-volume", type=Path,
                      help="the map of the other protein (default a random compact blob of the particle's mass)")
    real.add_argument("--pose-error", type=float, default=0.0, metavar="DEG",
                      help="RMS angle of a random error rotation in the written poses (default 0)")
    real.add_argument("--shift-error", type=float, default=0.0, metavar="PX",
                      help="standard deviation of the error in each written shift coordinate (default 0)")
    real.add_argument("--micrographs", type=int, default=0, metavar="M",
                      help="group the particles into M micrographs: one stack and one defocus each (default: one "
                           "stack)")
    real.add_argument("--defocus-spread", type=float, default=100.0, metavar="A",
                      help="--micrographs: spread of a particle's defocus about its micrograph's (default 100)")
    real.add_argument("--float16", action="store_true", help="write float16 stacks (MRC mode 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-b", "--chunk-size", type=int, default=1000)
    return parser


def run(args) -> None:
    from cryofield.io import read_particles
    from cryofield.simulate.atomic import population
    from cryofield.simulate.dataset import write_dataset

    volumes, coordinates, apix = _sources(args)
    rng = np.random.default_rng(args.seed)
    n_states = len(volumes)
    if args.counts is not None:
        if len(args.counts) != n_states or min(args.counts) < 0:
            raise InputError(None, f"--counts needs {n_states} non-negative counts, one per state")
        kind = "counts"
    elif not args.particles:
        raise InputError(None, "say how many particles: -n N or --counts N1 N2 ...")
    else:
        kind = args.population
    try:
        states = population(n_states, args.particles or 0, rng, kind=kind, means=args.means, widths=args.widths,
                            counts=args.counts)
    except ValueError as exc:
        raise InputError(None, str(exc)) from None
    if len(states) == 0:
        raise InputError(None, "no particles to simulate")
    ctf_from = None
    if args.ctf_from is not None:
        source = read_particles(args.ctf_from, apix=apix) if args.ctf_from.suffix != ".pkl" else None
        if source is not None and source.ctf is not None:  # box and pixel size are set by the simulation
            ctf_from = np.column_stack([np.zeros((source.n, 2)), source.ctf.to_numpy(float)])
        elif source is None:
            from cryofield.io import load_legacy_pickle

            ctf_from = np.asarray(load_legacy_pickle(args.ctf_from), float)
        if ctf_from is None or ctf_from.ndim != 2 or ctf_from.shape[1] != 9 or not len(ctf_from):
            raise InputError(args.ctf_from, "has no CTF parameters")
    realism = _realism(args, volumes)
    if args.premultiply and not args.tilt_series:
        raise InputError(None, "--premultiply is for --tilt-series (cryo-ET particle stacks)")
    if args.tilt_series:
        _tilt_series(args, volumes, coordinates, apix, states, ctf_from, realism)
        return
    imaging = _imaging(args, apix)
    total = len(states) * (2 if args.tilt_pairs else 1)
    start = time.perf_counter()
    with progress_bar(total, "simulate") as bar:
        paths = write_dataset(args.outdir, volumes, states, imaging, ctf_from=ctf_from,
                              coordinates=coordinates[states],
                              tilt_deg=args.tilt_deg if args.tilt_pairs else None, realism=realism, seed=args.seed,
                              chunk_size=args.chunk_size, progress=bar.update)
    elapsed = time.perf_counter() - start
    where = paths.stack if len(paths.stacks) < 2 else f"{len(paths.stacks)} stacks in {paths.stack.parent}/"
    junk = f" ({args.junk:.0%} junk)" if args.junk else ""
    print(f"wrote {len(states)} images{junk} ({volumes[0].shape[-1]} px, {apix:.4f} A/px, {len(volumes)} states) "
          f"to {where} and {paths.star}" + (f", tilt partners to {paths.tilt_star}" if args.tilt_pairs else "")
          + f"; truth in {paths.truth} in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.0f} images/s)")


def _imaging(args, apix: float):
    """The :class:`Imaging` of the flags."""
    from cryofield.simulate.particles import Imaging

    return Imaging(pixel_size_angstrom=apix, snr=args.snr, snr_radius_px=args.snr_radius, shift_px=args.shift_px,
                   defocus_range_angstrom=tuple(args.defocus), voltage_kv=args.voltage, cs_mm=args.cs,
                   amplitude_contrast=args.amp_contrast, bfactor=args.bfactor, ctf=not args.no_ctf)


def _tilt_series(args, volumes, coordinates, apix, states, ctf_from, realism) -> None:
    """``--tilt-series``: write every particle's tilt series (:mod:`cryofield.simulate.tilt_series`)."""
    from cryofield.simulate.tilt_series import TiltScheme, write_tilt_series

    if args.no_ctf and args.premultiply:
        raise InputError(None, "--premultiply multiplies by the CTF: it cannot be used with --no-ctf")
    clashes = [flag for flag, used in (("--tilt-pairs", args.tilt_pairs), ("--junk", realism.junk_fraction),
                                       ("--micrographs", realism.micrographs), ("--pose-error", realism.pose_error_deg),
                                       ("--shift-error", realism.shift_error_px)) if used]
    if clashes:
        raise InputError(None, f"--tilt-series cannot be used with {', '.join(clashes)} (not simulated for them)")
    scheme = TiltScheme(*args.tilt_range, args.tilt_step, args.tilt_scheme, args.dose_per_tilt, args.ice)
    try:
        tilts = len(scheme.angles())
        if args.voltage not in (200.0, 300.0):
            raise ValueError(f"radiation damage is known at 200 and 300 kV, not at {args.voltage:g} kV")
    except ValueError as exc:
        raise InputError(None, str(exc)) from None
    start = time.perf_counter()
    with progress_bar(len(states) * tilts, "simulate") as bar:
        paths = write_tilt_series(args.outdir, volumes, states, _imaging(args, apix), scheme,
                                  coordinates=coordinates[states], ctf_from=ctf_from, float16=realism.float16,
                                  premultiply=args.premultiply, seed=args.seed, chunk_size=args.chunk_size,
                                  progress=bar.update)
    elapsed = time.perf_counter() - start
    print(f"wrote {len(states)} particles x {tilts} tilts ({scheme.min_deg:g} to {scheme.max_deg:g} by "
          f"{scheme.step_deg:g} deg, {scheme.scheme}, {scheme.dose_per_tilt:g} e/A^2 each) = {len(states) * tilts} "
          f"images ({volumes[0].shape[-1]} px, {apix:.4f} A/px, {len(volumes)} states) to {paths.stack} and "
          f"{paths.star}; truth in {paths.truth} in {elapsed:.1f} s")


def _realism(args, volumes: list[np.ndarray]):
    """The :class:`Realism` the flags ask for, checked (an InputError naming the flag)."""
    from cryofield.io import read_map
    from cryofield.simulate.junk import Realism

    other = None
    if args.junk_volume is not None:
        other, _ = read_map(args.junk_volume)
        if other.shape != volumes[0].shape:
            raise InputError(args.junk_volume, f"map of shape {other.shape}; the particles' are {volumes[0].shape}")
    realism = Realism(junk_fraction=args.junk, junk_kinds=tuple(k.strip() for k in args.junk_kinds.split(",")
                                                               if k.strip()),
                      other_volume=other, pose_error_deg=args.pose_error, shift_error_px=args.shift_error,
                      micrographs=args.micrographs, defocus_spread_angstrom=args.defocus_spread, float16=args.float16)
    try:
        realism.check()
    except ValueError as exc:
        raise InputError(None, str(exc)) from None
    if args.micrographs and args.tilt_pairs:
        raise InputError(None, "--micrographs and --tilt-pairs cannot be used together")
    return realism


def _sources(args) -> tuple[list[np.ndarray], np.ndarray, float]:
    """The maps of every state, their true coordinates (states, d), and the pixel size."""
    from cryofield.io import read_atomic_model
    from cryofield.simulate.sources import RigidMotions, map_states, model_states

    if bool(args.volume) == bool(args.pdb):
        raise InputError(None, "give either --volume maps or --pdb models")
    if args.volume:
        try:
            volumes, coordinates, apix = map_states(args.volume, args.apix)
        except ValueError as exc:
            raise InputError(*exc.args) from None
        if not apix:
            raise InputError(args.volume[0], "no pixel size in the header; pass --apix")
        return volumes, coordinates, apix
    if not args.box or not args.apix:
        raise InputError(args.pdb[0], "atomic models need --box and --apix")
    motions = None
    if args.rotate and len(args.pdb) == 1:  # two models make a trajectory between them
        if not args.axis or (args.rotate2 and not args.axis2):
            raise InputError(args.pdb[-1], "--rotate needs --axis" if not args.axis else "--rotate2 needs --axis2")
        parts = [(args.rotate, args.axis, tuple(args.angles))]
        if args.rotate2:
            parts.append((args.rotate2, args.axis2, tuple(args.angles2)))
        motions = RigidMotions(parts, circular=args.circular, random_configs=args.random_configs, seed=args.seed)
    try:
        volumes, coordinates = model_states([read_atomic_model(p) for p in args.pdb], states=args.states,
                                            box=args.box, apix=args.apix, resolution=args.resolution or 2 * args.apix,
                                            ca_only=args.ca_only, render=args.render, motions=motions)
    except ValueError as exc:
        raise InputError(args.pdb[-1], str(exc)) from None
    return volumes, coordinates, args.apix
