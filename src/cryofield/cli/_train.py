"""What ``train-nn`` and ``train-vae`` share: options, data preparation, the run."""

from __future__ import annotations

import argparse
import hashlib
import platform
from pathlib import Path

import numpy as np

from cryofield.cli._common import EpochBars, add_input_arguments, load_table, progress_bar, read_indices
from cryofield.errors import InputError


def add_training_arguments(parser: argparse.ArgumentParser, vae: bool) -> None:
    """Options of the established tool where they overlap, with cryofield's defaults."""
    add_input_arguments(parser)
    parser.add_argument("-o", "--outdir", type=Path, required=True, help="work directory")
    parser.add_argument("--ind", type=Path, help="train on these particles only (.npy, .txt or .pkl)")
    parser.add_argument("--uninvert-data", action="store_true", help="do not flip the data's contrast")
    parser.add_argument("--window-r", type=float, default=0.85, help="soft real-space window radius (default 0.85)")
    model = parser.add_argument_group("model")
    if vae:
        model.add_argument("--zdim", type=int, default=8, help="latent dimension (default 8)")
        model.add_argument("--enc-dim", type=int, default=256, help="encoder width (default 256)")
        model.add_argument("--enc-layers", type=int, default=3,
                           help="encoder hidden-to-hidden (residual) layers, counted as cryoDRGN does (default 3)")
        model.add_argument("--beta", type=float, help="KL weight (default 1/zdim)")
        model.add_argument("--tilt", type=Path, help="tilted partner of each particle (.star/.cs/.mrcs), same order")
        model.add_argument("--tilt-deg", type=float, default=45.0,
                           help="stage tilt about x in degrees, for --tilt files without poses (default 45)")
    add_decoder_arguments(model)
    run = parser.add_argument_group("training")
    run.add_argument("-n", "--epochs", type=int, default=20, help="epochs (default 20)")
    add_step_arguments(run)
    run.add_argument("--compile", dest="compile_mode", nargs="?", const="default", default=None,
                     choices=["default", "reduce-overhead", "max-autotune"],
                     help="compile the networks with torch.compile (MODE default: 'default'); pays on a GPU, "
                          "where it fuses the many small operations of a step; slower to start")
    add_graph_argument(run)
    run.add_argument("--lazy", action="store_true",
                     help="read images as needed through a shuffling buffer (memory independent of N)")
    run.add_argument("--buffer-size", type=int, default=8192, help="--lazy: images in the buffer (default 8192)")
    run.add_argument("--refine-poses", action="store_true",
                     help="learn a rotation and shift correction per particle; writes OUTDIR/poses.npz")
    run.add_argument("--pose-lr", type=float, default=1e-3, help="step size of the pose corrections (default 1e-3)")
    run.add_argument("--resume", action="store_true",
                     help="continue a run in OUTDIR from its last checkpoint, with the run's own settings "
                          "(only -n, --checkpoint, --device, --compile and --no-cuda-graph may change)")
    run.add_argument("--seed", type=int, default=0)
    parser.set_defaults(option_defaults={name: parser.get_default(name) for name in _RUN_SETTINGS})


def add_step_arguments(group, amp_help: str = "full fp32 instead of bf16/fp16 mixed precision") -> None:
    """Batch size, learning rate, checkpoints, precision and device: what every trainer takes."""
    group.add_argument("-b", "--batch-size", type=int, default=8, help="images per step (default 8)")
    group.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    group.add_argument("--checkpoint", type=int, default=5, help="checkpoint every N epochs (default 5)")
    group.add_argument("--no-amp", action="store_true", help=amp_help)
    group.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")


def add_graph_argument(group) -> None:
    """``--no-cuda-graph``, for the trainers that replay their steps as CUDA graphs."""
    group.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                       help="on a GPU, launch each step's kernels one by one instead of replaying the step as one "
                            "CUDA graph (the default there, where the run allows it)")


def add_decoder_arguments(group) -> None:
    """The volume decoder's options (shared by the trainers)."""
    group.add_argument("--dec-dim", type=int, default=256, help="decoder width (default 256)")
    group.add_argument("--dec-layers", type=int, default=3,
                       help="decoder hidden-to-hidden (residual) layers, counted as cryoDRGN does (default 3)")
    group.add_argument("--pe-type", choices=["gaussian", "geom_full", "geom_lowf"], default="gaussian",
                       help="positional encoding (default gaussian)")
    group.add_argument("--pe-dim", type=int, help="frequencies per axis (default box/2)")
    group.add_argument("--feat-sigma", type=float, default=0.5, help="gaussian features' scale (default 0.5)")
    group.add_argument("--domain", choices=["fourier", "hartley"], default="fourier",
                       help="decoder outputs: Re/Im of F or Hartley H(k), H(-k) (default fourier)")
    add_residual_argument(group)


def add_residual_argument(group) -> None:
    """``--residual``: the residual blocks of every network a trainer builds."""
    group.add_argument("--residual", choices=["post", "pre"], default="post",
                       help="every network's residual blocks: post = relu(W h + b + h), the seed's and cryoDRGN's "
                            "(default); pre = h + relu(W h + b), cryofield's before 2026-11-27")


# options that define a run: ``--resume`` takes them from the run's config.json
_RUN_SETTINGS = ("poses", "ctf", "datadir", "ind", "apix", "zdim", "enc_dim", "enc_layers", "dec_dim", "dec_layers",
                 "domain", "residual", "pe_type", "pe_dim", "feat_sigma", "batch_size", "lr", "beta", "uninvert_data",
                 "window_r", "no_amp", "seed", "lazy", "buffer_size", "tilt", "tilt_deg", "refine_poses", "pose_lr")
_PATH_SETTINGS = ("poses", "ctf", "datadir", "ind", "tilt")


def _resume_settings(args: argparse.Namespace) -> None:
    """Set the options that define a run to the values saved in ``OUTDIR/config.json``.

    An option given on the command line with another value than the run's is an error
    (the checkpoint would not fit it, or the run would not continue exactly).
    """
    from cryofield.train import TrainConfig

    saved = TrainConfig.load(args.outdir / "config.json")
    values = {**{name: getattr(saved, name) for name in _RUN_SETTINGS if name != "no_amp"}, "no_amp": not saved.amp}
    for name, value in values.items():
        if not hasattr(args, name):
            continue  # train-nn has no encoder options
        given = getattr(args, name)
        if isinstance(given, Path):
            given = str(given) if value is None or Path(value).resolve() != given.resolve() else value
        if given != value and given != args.option_defaults[name]:
            flag = "--" + name.replace("_", "-")
            raise InputError(args.outdir / "config.json", f"--resume continues the run with its own settings: "
                                                          f"{flag} {given} differs from the run's {value}")
        setattr(args, name, Path(value) if name in _PATH_SETTINGS and value is not None else value)
    digest = saved.versions.get("inputs_sha256", {}).get(saved.particles)
    if digest is not None and _digest(args.input) != digest:
        raise InputError(args.input, f"--resume: not the particles the run was trained on ({saved.particles})")


def _digest(path: Path | None) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tilt_table(args: argparse.Namespace, table):
    """The tilted partners' table (CTF from the untilted particles where it has none) and their poses."""
    from cryofield.so3 import rotation_about_x

    tilt = tilt_partners(args, table)
    if tilt.rotations_or_none is not None:
        return tilt, tilt.rotations, tilt.shifts_px
    # a stage tilt rotates the specimen in the microscope's frame: R_tilt = Rx(tilt) R
    return tilt, rotation_about_x(args.tilt_deg).numpy() @ table.rotations, table.shifts_px


def tilt_partners(args: argparse.Namespace, table):
    """The table of ``args.tilt``, checked to pair up with ``table`` (its CTF where the partners have none)."""
    from dataclasses import replace

    tilt = load_table(argparse.Namespace(input=args.tilt, datadir=args.datadir, poses=None, ctf=None, apix=args.apix))
    if args.ind is not None:
        tilt = tilt.subset(read_indices(args.ind, tilt.n))
    if tilt.n != table.n:
        raise InputError(args.tilt, f"{tilt.n} tilted images for {table.n} particles; they must pair up in order")
    if tilt.box_size != table.box_size:
        raise InputError(args.tilt, f"tilted images are {tilt.box_size} px, the particles {table.box_size} px")
    if tilt.ctf is None and table.ctf is not None:
        tilt = replace(tilt, ctf=table.ctf)
    return tilt


def prepare_data(args: argparse.Namespace, table, vae: bool, scale: float | None = None):
    """In-memory or lazy training data, tilted partners attached (``scale``: a trained model's)."""
    from cryofield.data import LazyParticles, prepare_particles

    tilt = _tilt_table(args, table) if vae and args.tilt is not None else None
    invert, window_r = not args.uninvert_data, args.window_r
    if args.lazy:
        tilted = None if tilt is None else LazyParticles(tilt[0], invert=invert, window_r=window_r, scale=1.0,
                                                         rotations=tilt[1], shifts_px=tilt[2])
        return LazyParticles(table, invert=invert, window_r=window_r, scale=scale, tilted=tilted)
    with progress_bar(table.n * (2 if tilt else 1), "prepare") as bar:
        data = prepare_particles(table, invert=invert, window_r=window_r, scale=scale, progress=bar.update)
        if tilt is not None:
            data.tilted = prepare_particles(tilt[0], invert=invert, window_r=window_r, scale=data.scale,
                                            rotations=tilt[1], shifts_px=tilt[2], progress=bar.update)
    return data


def run_training(args: argparse.Namespace, vae: bool) -> None:
    """Prepare the data, save the resolved config, train, and write the results (rank 0 under torchrun)."""
    import torch

    from cryofield import __version__
    from cryofield.imaging import render_volume
    from cryofield.io import write_map
    from cryofield.train import TrainConfig, init_runtime, posterior_means, train

    outdir: Path = args.outdir
    if args.resume:
        if not (outdir / "checkpoints/last.pt").is_file() or not (outdir / "config.json").is_file():
            raise InputError(outdir, "no checkpoint to resume from")
        _resume_settings(args)
    runtime = init_runtime(args.device)
    if args.refine_poses and runtime.world_size > 1:
        raise InputError(outdir, "--refine-poses runs in a single process, not under torchrun")
    table = load_table(args)
    if args.ind is not None:
        table = table.subset(read_indices(args.ind, table.n))
    table.rotations  # noqa: B018  (a clear error when there are no poses)
    table = table.without_source_rows()  # training never exports
    data = prepare_data(args, table, vae)
    tilt = getattr(args, "tilt", None)
    config = TrainConfig(
        particles=str(args.input), outdir=str(outdir), poses=args.poses and str(args.poses),
        ctf=args.ctf and str(args.ctf), datadir=args.datadir and str(args.datadir), ind=args.ind and str(args.ind),
        apix=args.apix, zdim=args.zdim if vae else 0, enc_dim=getattr(args, "enc_dim", 256),
        enc_layers=getattr(args, "enc_layers", 3), dec_dim=args.dec_dim, dec_layers=args.dec_layers,
        domain=args.domain, residual=args.residual, pe_type=args.pe_type,
        pe_dim=args.pe_dim, feat_sigma=args.feat_sigma, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, beta=getattr(args, "beta", None), uninvert_data=args.uninvert_data,
        window_r=args.window_r, amp=not args.no_amp, checkpoint=args.checkpoint, seed=args.seed,
        device=str(runtime.device), compile_mode=args.compile_mode, cuda_graph=args.cuda_graph, lazy=args.lazy,
        buffer_size=args.buffer_size,
        tilt=tilt and str(tilt),
        tilt_deg=getattr(args, "tilt_deg", 45.0), refine_poses=args.refine_poses, pose_lr=args.pose_lr,
        world_size=runtime.world_size, box=data.box, data_pixel_size=data.pixel_size_angstrom, data_scale=data.scale,
        versions={"cryofield": __version__, "torch": torch.__version__, "python": platform.python_version(),
                  "inputs_sha256": {str(p): _digest(p) for p in (args.input, args.poses, args.ctf, tilt) if p}})
    if runtime.is_main:
        outdir.mkdir(parents=True, exist_ok=True)
        config.save(outdir / "config.json")
    progress = EpochBars(len(data), lambda epoch, _: f"epoch {epoch + 1}/{config.epochs}")

    def log(record: dict) -> None:
        progress.close()
        print(f"epoch {record['epoch'] + 1}: mse {record['mse']:.5f}" + (f", kl {record['kl']:.4f}" if vae else "")
              + f", {record['images_per_second']:.0f} images/s")

    models = train(config, data, runtime=runtime, resume=args.resume, progress=progress, log=log)
    progress.close()
    if not runtime.is_main:
        return
    if models.poses is not None:
        d_rotation, d_shift = (t.cpu().double().numpy() for t in models.poses.all())
        rotations, shifts = table.rotations @ d_rotation, table.shifts_px + d_shift
        np.savez(outdir / "poses.npz", rotations=rotations, shifts_px=shifts)
        angles = np.degrees(np.linalg.norm(models.poses.rotvec.weight.detach().cpu().numpy(), axis=1))
        print(f"wrote {outdir}/poses.npz (refined rotations and shifts; median correction {np.median(angles):.2f} deg, "
              f"{np.median(np.linalg.norm(d_shift, axis=1)):.2f} px)")
    if vae:
        np.save(outdir / "z.npy", posterior_means(models, data))
        print(f"wrote {outdir}/z.npy (posterior means, {len(data)} x {config.zdim}) and checkpoints")
    else:
        with torch.no_grad():
            volume = render_volume(models.decoder.cpu(), data.box) * data.scale
        write_map(outdir / "volume.mrc", volume.numpy(), data.pixel_size_angstrom)
        print(f"wrote {outdir}/volume.mrc ({data.box}^3, {data.pixel_size_angstrom:.4f} A/px) and checkpoints")
