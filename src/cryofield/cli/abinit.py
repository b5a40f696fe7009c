"""``cryofield abinit``: a volume and every particle's pose from the images alone."""

from __future__ import annotations

import platform
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from cryofield.cli._common import EpochBars, add_input_arguments, load_table, progress_bar, read_indices
from cryofield.cli._train import add_decoder_arguments, add_step_arguments
from cryofield.errors import InputError

NAME = "abinit"


def add_parser(subparsers):
    from cryofield.cli._common import command_parser

    parser = command_parser(subparsers, NAME, "Ab initio reconstruction: train a neural volume (or, with --zdim, "
                            "a VAE over volumes) while searching each particle's rotation and shift on "
                            "multi-resolution grids over SO(3) x R^2 (cryoDRGN2's schedule with the model reset). "
                            "Writes poses.star for RELION or train-vae, the map after each stage, and z.npy for "
                            "heterogeneous runs.", """
        cryofield abinit particles.star -o run/                         # 30 + 30 (reset) + 30 epochs
        cryofield abinit particles.star -o run/ --zdim 8                # heterogeneous
        cryofield abinit untilted.star --tilt tilted.star --tilt-deg 45 -o run/   # tilt pairs
        cryofield abinit particles.mrcs --ctf ctf.pkl -o run/ --no-reset --epochs-search 30
        cryofield abinit particles.star -o run/ --kmax 32 --base-level 1   # coarser, faster search
        cryofield abinit particles.star -o run/ --resume                 # continue after the last checkpoint
        cryofield abinit particles.star -o gd/ --method gd --epochs-search 200 -b 512   # a baseline
        """)
    add_input_arguments(parser)
    parser.add_argument("-o", "--outdir", type=Path, required=True, help="work directory")
    parser.add_argument("--ind", type=Path, help="reconstruct from these particles only (.npy, .txt or .pkl)")
    parser.add_argument("--uninvert-data", action="store_true", help="do not flip the data's contrast")
    parser.add_argument("--window-r", type=float, default=0.85, help="soft real-space window radius (default 0.85)")
    model = parser.add_argument_group("model")
    model.add_argument("--zdim", type=int, default=0, help="latent dimension: 0 for one volume (default), more "
                       "for a heterogeneous VAE")
    model.add_argument("--enc-dim", type=int, default=256, help="encoder width (default 256)")
    model.add_argument("--enc-layers", type=int, default=3, help="encoder residual layers (default 3)")
    model.add_argument("--beta", type=float, help="KL weight (default 1/zdim)")
    model.add_argument("--tilt", type=Path, help="tilted partner of each particle (.star/.cs/.mrcs), same order: "
                       "poses are searched on both images together")
    model.add_argument("--tilt-deg", type=float, default=45.0, help="stage tilt about x in degrees (default 45)")
    add_decoder_arguments(model)
    schedule = parser.add_argument_group("schedule (cryoDRGN2 +r)")
    schedule.add_argument("--epochs-search", type=int, default=30,
                          help="stage 1: epochs with pose search, the first on random poses (default 30)")
    schedule.add_argument("--epochs-fixed", type=int, default=30,
                          help="stage 2: reset the model, train on the last poses (default 30)")
    schedule.add_argument("--epochs-refine", type=int, default=30,
                          help="stage 3: epochs with pose search again (default 30)")
    schedule.add_argument("--no-reset", action="store_true", help="stage 1 only (same as --epochs-fixed 0 "
                          "--epochs-refine 0)")
    schedule.add_argument("--search-every", type=int, default=5, help="search poses every N epochs (default 5)")
    schedule.add_argument("--kmax-ramp-epochs", type=int, default=25,
                          help="epochs over which the search's band limit grows from --kmin to --kmax (default 25)")
    search = parser.add_argument_group("pose search (defaults: the seed's table 5.5; for bnb its section 3.4.1)")
    search.add_argument("--method", choices=["hps", "bnb", "gd", "pose-vae"], default="hps",
                        help="hps: hierarchical pose search (cryoDRGN2, default); bnb: branch and bound with "
                             "frequency marching (cryoDRGN-BNB), for comparison; the baselines of the seed's "
                             "table 5.2, one stage of --epochs-search epochs: gd (gradient descent on poses from "
                             "random starts, step --pose-lr) and pose-vae (an encoder predicts each rotation)")
    search.add_argument("--pose-lr", type=float, default=1e-3,
                        help="gd: step size of the rotations (radians) and shifts (px) (default 1e-3)")
    search.add_argument("--base-level", type=int,
                        help="SO(3) base grid: 1 = 576 rotations (30 deg; bnb default), 2 = 4,608 (15 deg; hps "
                             "default), 3 = 36,864")
    search.add_argument("--keep", type=int, default=8, help="K: rotations kept per round (default 8)")
    search.add_argument("--rounds", type=int, help="M: refinement rounds (default 4; bnb: subdivisions, 5)")
    search.add_argument("--kmin", type=float, default=12, help="band limit of the base search, Fourier px (default 12)")
    search.add_argument("--kmax", type=float, default=48, help="band limit of the last round, capped at D/2 "
                        "(default 48)")
    search.add_argument("--n-shifts", type=int, help="T: translation grid T x T (default 14; bnb 7)")
    search.add_argument("--shift-extent", type=float, help="translation grid half-width in px (default 20 * D / 128)")
    search.add_argument("--oversample", type=float, default=2.0,
                        help="model lattice points per Fourier pixel for slice interpolation (default 2)")
    search.add_argument("--search-batch", type=int, default=32, help="images searched at a time (default 32)")
    search.add_argument("--search-chunk", type=int, default=256,
                        help="online search: render the model every N particles and train on each chunk right "
                             "after searching it, as cryoDRGN does per batch (default 256; 0: all particles "
                             "against one model, which converges far worse)")
    search.add_argument("--search-groups", type=int, default=1,
                        help="--zdim: search each chunk against the model at its mean latent (1, the default), or "
                             "at this many k-means centres of its latents (one render each; converged far worse "
                             "in our tests)")
    run = parser.add_argument_group("training")
    add_step_arguments(run)
    run.add_argument("--resume", action="store_true",
                     help="continue the run in OUTDIR from its last checkpoint, with its own settings")
    run.add_argument("--seed", type=int, default=0)
    return parser


def _config(args, data, runtime):
    import torch

    from cryofield import __version__
    from cryofield.cli._train import _digest
    from cryofield.train.abinit import AbinitConfig

    if args.no_reset or args.method in ("gd", "pose-vae"):  # the baselines run one stage
        args.epochs_fixed = args.epochs_refine = 0
    bnb = args.method == "bnb"
    for name, hps_default, bnb_default in (("base_level", 2, 1), ("rounds", 4, 5), ("n_shifts", 14, 7)):
        if getattr(args, name) is None:
            setattr(args, name, bnb_default if bnb else hps_default)
    if args.method != "hps" and (args.zdim or args.tilt):
        raise InputError(args.outdir, f"--method {args.method} reconstructs one volume from single images (no "
                         "--zdim or --tilt)")
    if args.zdim < 0:
        raise InputError(args.outdir, "--zdim must be 0 or more")
    if args.pose_lr <= 0:
        raise InputError(args.outdir, "--pose-lr must be positive")
    for name in ("epochs_search", "search_every", "keep", "n_shifts", "batch_size", "search_batch", "search_groups"):
        if getattr(args, name) < 1:
            raise InputError(args.outdir, f"--{name.replace('_', '-')} must be at least 1")
    if args.search_chunk < 0:
        raise InputError(args.outdir, "--search-chunk must be 0 (all at once) or more")
    if args.kmin <= 0 or args.kmax < args.kmin:
        raise InputError(args.outdir, f"need 0 < --kmin <= --kmax (got {args.kmin}, {args.kmax})")
    return AbinitConfig(
        particles=str(args.input), outdir=str(args.outdir), ctf=args.ctf and str(args.ctf),
        datadir=args.datadir and str(args.datadir), ind=args.ind and str(args.ind), apix=args.apix,
        zdim=args.zdim, enc_dim=args.enc_dim, enc_layers=args.enc_layers, beta=args.beta,
        tilt=args.tilt and str(args.tilt), tilt_deg=args.tilt_deg, dec_dim=args.dec_dim, dec_layers=args.dec_layers,
        domain=args.domain, residual=args.residual, pe_type=args.pe_type, pe_dim=args.pe_dim,
        feat_sigma=args.feat_sigma, batch_size=args.batch_size, lr=args.lr, uninvert_data=args.uninvert_data,
        window_r=args.window_r, amp=not args.no_amp, checkpoint=args.checkpoint, seed=args.seed,
        device=str(runtime.device), box=data.box, data_pixel_size=data.pixel_size_angstrom, data_scale=data.scale,
        epochs_search=args.epochs_search, epochs_fixed=args.epochs_fixed, epochs_refine=args.epochs_refine,
        search_every=args.search_every, kmax_ramp_epochs=args.kmax_ramp_epochs, base_level=args.base_level,
        method=args.method, keep=args.keep, rounds=args.rounds, kmin=args.kmin, kmax=args.kmax, n_shifts=args.n_shifts,
        shift_extent_px=args.shift_extent, oversample=args.oversample, search_batch=args.search_batch,
        search_chunk=args.search_chunk, search_groups=args.search_groups, pose_lr=args.pose_lr,
        versions={"cryofield": __version__, "torch": torch.__version__, "python": platform.python_version(),
                  "inputs_sha256": {str(p): _digest(p) for p in (args.input, args.ctf, args.tilt) if p}})


def run(args) -> None:

    from cryofield.cli._train import tilt_partners
    from cryofield.data import prepare_particles
    from cryofield.io._atomic import atomic_outputs
    from cryofield.io.export import write_particles
    from cryofield.reports import plot_viewing_directions
    from cryofield.train import Runtime, resolve_device
    from cryofield.train.abinit import AbinitConfig, abinit

    outdir: Path = args.outdir
    if args.resume:
        if not (outdir / "checkpoints/last.pt").is_file() or not (outdir / "config.json").is_file():
            raise InputError(outdir, "no checkpoint to resume from")
        saved = AbinitConfig.load(outdir / "config.json")
        args.ctf = saved.ctf and Path(saved.ctf)
        args.datadir = saved.datadir and Path(saved.datadir)
        args.ind = saved.ind and Path(saved.ind)
        args.apix, args.uninvert_data, args.window_r = saved.apix, saved.uninvert_data, saved.window_r
        args.tilt, args.tilt_deg = saved.tilt and Path(saved.tilt), saved.tilt_deg
    args.poses = None
    table = load_table(args)
    if args.ind is not None:
        table = table.subset(read_indices(args.ind, table.n))
    runtime = Runtime(resolve_device(args.device))
    tilt = None if args.tilt is None else tilt_partners(args, table)
    unposed = {"rotations": np.broadcast_to(np.eye(3), (table.n, 3, 3)).copy(), "shifts_px": np.zeros((table.n, 2))}
    with progress_bar(table.n * (1 if tilt is None else 2), "prepare") as bar:
        data = prepare_particles(table, invert=not args.uninvert_data, window_r=args.window_r, progress=bar.update,
                                 **unposed)
        if tilt is not None:
            data.tilted = prepare_particles(tilt, invert=not args.uninvert_data, window_r=args.window_r,
                                            scale=data.scale, progress=bar.update, **unposed)
    if args.resume:
        config = replace(saved, device=str(runtime.device))
    else:
        config = _config(args, data, runtime)
        outdir.mkdir(parents=True, exist_ok=True)
        config.save(outdir / "config.json")
    (outdir / "poses").mkdir(parents=True, exist_ok=True)
    progress = EpochBars(len(data), lambda epoch, what: f"epoch {epoch + 1}/{config.epochs} {what}")

    def log(record: dict) -> None:
        progress.close()
        searched = (f", searched in {record['search_seconds']:.0f} s (k < {record['search_kmax']:g}, median change "
                    f"{record['pose_change_deg_median']:.1f} deg)") if "search_seconds" in record else ""
        print(f"epoch {record['epoch'] + 1} (stage {record['stage']}{', reset' if record.get('reset') else ''}): "
              f"mse {record['mse']:.5f}, high-frequency gradient {record['grad_high']:.2e}{searched}")

    def on_search(epoch: int, poses) -> None:
        plot_viewing_directions(outdir / "poses" / f"directions_epoch{epoch + 1:03d}.png", poses.rotations.numpy(),
                                title=f"Viewing directions after the search of epoch {epoch + 1}")

    _, poses = abinit(config, data, runtime=runtime, resume=args.resume, progress=progress, log=log,
                           on_search=on_search)
    apix = data.pixel_size_angstrom
    outputs = {"poses.star": _posed(table, poses.rotations, poses.shifts_px, apix)}
    if tilt is not None:  # the partners' own poses: train-vae --tilt poses_tilt.star reads them
        from cryofield.so3 import rotation_about_x

        outputs["poses_tilt.star"] = _posed(tilt, rotation_about_x(config.tilt_deg, dtype=poses.rotations.dtype)
                                            @ poses.rotations, poses.tilt_shifts_px, apix)
    with atomic_outputs(*(outdir / name for name in outputs), outdir / "volume.mrc") as paths:
        for posed, star in zip(outputs.values(), paths):
            write_particles(posed, star)
        shutil.copyfile(outdir / "maps" / f"stage{config.stage(config.epochs - 1)}.mrc", paths[-1])  # the last map
    latents = f", the latents in {outdir}/z.npy" if config.zdim else ""
    print(f"wrote {', '.join(f'{outdir}/{name}' for name in outputs)} ({table.n} particles), {outdir}/volume.mrc "
          f"({data.box}^3, {apix:.4f} A/px){latents}, maps per stage in {outdir}/maps/ and viewing directions in "
          f"{outdir}/poses/")


def _posed(table, rotations, shifts_px, apix: float):
    """``table`` with found poses and absolute stack paths (so that the STAR file works from any folder)."""
    names = list(table.refs.stack_names)
    for sid in np.unique(table.refs.stack_id):
        names[sid] = str(table.refs.stack(int(sid)).path.resolve())
    return replace(table.without_source_rows(), refs=replace(table.refs, stack_names=tuple(names), _opened={}),
                   rotations_or_none=rotations.double().numpy(), shifts_angstrom=shifts_px.double().numpy() * apix)
