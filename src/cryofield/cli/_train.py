"""What the trainers share (``train-nn``, ``train-vae``, ``abinit``, ``train-cryofold``): options, and the run.

Each trainer's options are built from its config's settings (:func:`add_settings`) and
carry their names (``IN`` is ``particles``); :func:`config_values` reads the config (and,
for ``--resume``, the changes asked for) from them, and :func:`run_trainer` calls :func:`cryofield.train.run` or
:func:`cryofield.train.resume` with progress bars and prints what was written.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

from cryofield.cli._common import add_input_arguments, add_settings, progress_bar


def add_training_arguments(parser: argparse.ArgumentParser, vae: bool) -> None:
    """The options of ``train-nn`` and ``train-vae`` (the established tool's where they overlap)."""
    from cryofield.train import TrainConfig, VaeConfig

    config = VaeConfig if vae else TrainConfig
    add_input_arguments(parser)
    add_settings(parser, config, "outdir", "ind", "tilt_series", "tilt_weighting", "uninvert_data", "window_r")
    model = parser.add_argument_group("model")
    if vae:
        add_settings(model, config, "zdim", "enc_dim", "enc_layers", "beta", "tilt", "tilt_deg", "ntilts",
                     "tilt_pooling", "tilt_emb_dim")
    add_settings(model, config, *DECODER)
    run = parser.add_argument_group("training")
    add_settings(run, config, "epochs", *STEP, "compile_mode", "cuda_graph", "lazy", "buffer_size", "table_storage",
                 "refine_poses", "pose_lr")
    add_resume_argument(run, "continue a run in OUTDIR from its last checkpoint, with the run's own settings "
                             "(only -n and where it runs may change: --checkpoint, --device, --compile, "
                             "--no-cuda-graph, --on-nan, --table-storage)")
    add_settings(run, config, "seed")
    remember_defaults(parser)


#: The volume decoder's settings, and those of an optimiser step, in the order every trainer shows them.
DECODER = ("dec_dim", "dec_layers", "pe_type", "pe_dim", "feat_sigma", "domain", "residual")
STEP = ("batch_size", "lr", "ema_decay", "checkpoint", "on_nan", "amp", "device")


def add_resume_argument(group, help: str) -> None:
    """``--resume``: continue the run in OUTDIR (not a setting: what to do with them)."""
    group.add_argument("--resume", action="store_true", help=help)


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


def config_values(args: argparse.Namespace, config_class: type, **fixed) -> tuple[dict, dict]:
    """A config's settings from the command line, and those given with other values than the defaults.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser passed through :func:`remember_defaults`; each setting is the
        option of the same name (:func:`add_settings`), the particles are ``IN``.
    config_class : type
        The method's config dataclass.
    **fixed
        Settings that do not come from an option (ab initio's ``poses=None``, Cryofold's
        resolved ``pdb``).

    Returns
    -------
    (dict, dict)
        Every setting found; and the changes a resumed run is asked for (the particles'
        path included, for their checksum).
    """
    values, changes = {"particles": str(args.input)}, {"particles": str(args.input)}
    for f in dataclasses.fields(config_class):
        if f.name in fixed:
            values[f.name] = fixed[f.name]
        elif f.name != "particles" and hasattr(args, f.name):
            values[f.name] = _plain(getattr(args, f.name))
            if values[f.name] != _plain(args.defaults.get(f.name)) and f.name != "outdir":
                changes[f.name] = values[f.name]
    return values, changes


def run_training(args: argparse.Namespace, vae: bool) -> None:
    """``train-nn`` (``vae`` False) and ``train-vae``."""
    from cryofield.train import TrainConfig, VaeConfig

    config_class = VaeConfig if vae else TrainConfig
    values, changes = config_values(args, config_class)

    def describe(record: dict) -> str:
        return (f"epoch {record['epoch'] + 1}: mse {record['mse']:.5f}" + (f", kl {record['kl']:.4f}" if vae else "")
                + f", {record['images_per_second']:.0f} images/s"
                + (f" ({record['particles_per_second']:.1f} particles/s)" if "particles_per_second" in record else ""))

    run_trainer(args, None if args.resume else config_class(**values), changes, describe)


def run_trainer(args: argparse.Namespace, config, changes: dict, describe: Callable[[dict], str],
                label: Callable[[int, str, int], str] | None = None,
                poses_found: Callable[[int, object], None] | None = None,
                after_epoch: Callable[[dict], None] | None = None) -> None:
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
    after_epoch : callable, optional
        ``after_epoch(record)`` after each epoch's line (e.g. to redraw a figure from the log).
    """
    from cryofield.train import Callbacks, resume, run

    label = label or (lambda epoch, stage, n: f"epoch {epoch + 1}/{n}")
    bars = _Bars(label)

    def epoch_end(record: dict) -> None:
        bars.close()
        print(describe(record))
        if after_epoch is not None:
            after_epoch(record)

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
