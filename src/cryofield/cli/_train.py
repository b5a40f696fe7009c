"""What the trainers share (``train-nn``, ``train-vae``, ``abinit``, ``train-cryofold``): options, and the run.

Each trainer's options are its config's settings by name (a few renamed, e.g. ``IN`` is
``particles``); :func:`config_values` reads the config (and, for ``--resume``, the changes
asked for) from them, and :func:`run_trainer` calls :func:`cryofield.train.run` or
:func:`cryofield.train.resume` with progress bars and prints what was written.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

from cryofield.cli._common import add_input_arguments, progress_bar


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
    remember_defaults(parser)


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


def remember_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Keep every option's default in ``args.defaults`` (``--resume`` passes on only the options given)."""
    parser.set_defaults(defaults={action.dest: parser.get_default(action.dest) for action in parser._actions})
    return parser


def _plain(value):
    """A command-line value as a config holds it (paths as strings, tuples as lists)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def config_values(args: argparse.Namespace, config_class: type, renames: dict[str, str] | None = None,
                  **fixed) -> tuple[dict, dict]:
    """A config's settings from the command line, and those given with other values than the defaults.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser passed through :func:`remember_defaults`.
    config_class : type
        The method's config dataclass; a setting is the option of the same name, or of the
        name ``renames`` maps it to.
    **fixed
        Settings that do not come from an option (e.g. ``zdim=0`` for ``train-nn``).

    Returns
    -------
    (dict, dict)
        Every setting found; and the changes a resumed run is asked for (the particles'
        path included, for their checksum).
    """
    renames = {"particles": "input", **(renames or {})}
    values, changes = {}, {}
    for f in dataclasses.fields(config_class):
        option = renames.get(f.name, f.name)
        if f.name == "amp":
            values["amp"], default = not args.no_amp, not args.defaults["no_amp"]
        elif f.name in fixed:
            values[f.name], default = fixed[f.name], fixed[f.name]
        elif hasattr(args, option):
            values[f.name], default = _plain(getattr(args, option)), _plain(args.defaults.get(option))
        else:
            continue
        if values[f.name] != default:
            changes[f.name] = values[f.name]
    changes.pop("outdir", None)
    changes["particles"] = values["particles"]
    return values, changes


def run_training(args: argparse.Namespace, vae: bool) -> None:
    """``train-nn`` (``vae`` False) and ``train-vae``."""
    from cryofield.train import TrainConfig

    values, changes = config_values(args, TrainConfig, **({} if vae else {"zdim": 0}))

    def describe(record: dict) -> str:
        return (f"epoch {record['epoch'] + 1}: mse {record['mse']:.5f}" + (f", kl {record['kl']:.4f}" if vae else "")
                + f", {record['images_per_second']:.0f} images/s")

    run_trainer(args, None if args.resume else TrainConfig(**values), changes, describe)


def run_trainer(args: argparse.Namespace, config, changes: dict, describe: Callable[[dict], str],
                label: Callable[[int, str, int], str] | None = None,
                poses_found: Callable[[int, object], None] | None = None) -> None:
    """Run (or with ``--resume``, continue) a trainer with progress bars; print each epoch and what was written.

    Parameters
    ----------
    args : argparse.Namespace
        ``outdir`` and ``resume``.
    config : TrainConfig
        The new run's config (ignored with ``--resume``).
    changes : dict
        What ``--resume`` is asked to change (:func:`config_values`).
    describe : callable
        ``describe(record)``: the line printed after each epoch.
    label : callable, optional
        ``label(epoch, stage, epochs)``: a progress bar's title (default ``epoch E/N``).
    poses_found : callable, optional
        Ab initio's ``poses_found(epoch, poses)`` after each search.
    """
    from cryofield.train import Callbacks, resume, run

    label = label or (lambda epoch, stage, n: f"epoch {epoch + 1}/{n}")
    bars = _Bars(label)

    def epoch_end(record: dict) -> None:
        bars.close()
        print(describe(record))

    callbacks = Callbacks(reading=bars.reading, start=bars.start, progress=bars.progress, epoch_end=epoch_end,
                          poses_found=poses_found)
    try:
        result = (resume(args.outdir, changes, callbacks=callbacks) if args.resume
                  else run(config, callbacks=callbacks))
    finally:
        bars.close()
    print("\n".join(f"wrote {path} ({what})" for path, what in result.written))


class _Bars:
    """The progress bars of a run: one while the images are prepared, then one per epoch and stage."""

    def __init__(self, label: Callable[[int, str, int], str]):
        self.label, self.epochs, self.bar, self.key = label, 0, None, None

    def start(self, config) -> None:
        self.close()
        self.epochs = config.epochs

    def reading(self, done: int, total: int) -> None:
        self._show(("prepare",), total, "prepare", done)

    def progress(self, done: int, total: int, epoch: int, stage: str) -> None:
        self._show((epoch, stage), total, self.label(epoch, stage, self.epochs), done)

    def _show(self, key: tuple, total: int, title: str, done: int) -> None:
        if key != self.key:
            self.close()
            self.key, self.bar = key, progress_bar(total, title)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.key, self.bar = None, None
