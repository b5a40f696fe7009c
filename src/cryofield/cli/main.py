"""``cryofield``: the command-line entry point."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import warnings
from pathlib import Path

from cryofield import __version__
from cryofield.cli import (
    abinit,
    align_vol,
    analyze,
    backproject,
    compare_runs,
    direct_traversal,
    downsample,
    eval_cryofold,
    eval_images,
    eval_vol,
    evaluate,
    explore,
    filter_particles,
    flip_hand,
    fsc,
    graph_traversal,
    info,
    invert,
    landscape,
    mask,
    pc_traversal,
    phase_flip,
    pose_error,
    report,
    rmsd,
    select,
    sharpen,
    simulate,
    train_cryofold,
    train_nn,
    train_vae,
)
from cryofield.errors import InputError, RunStopped

COMMANDS = [info, downsample, phase_flip, invert, select, simulate, backproject, fsc, mask, sharpen, flip_hand,
            train_nn, train_vae, eval_vol, eval_images, evaluate, analyze, pc_traversal, graph_traversal,
            direct_traversal, filter_particles, compare_runs, landscape, report, explore, abinit, pose_error,
            align_vol, train_cryofold, eval_cryofold, rmsd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryofield",
        description="Reconstruct flexible and mixed macromolecules from cryo-EM particle images.",
        epilog="Run 'cryofield COMMAND --help' for the options and examples of a command.")
    parser.add_argument("--version", action="version", version=f"cryofield {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(subparsers).set_defaults(run=module.run)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"cryofield: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    new_folders = _new_output_folders(args)
    try:
        args.run(args)
    except InputError as exc:
        _remove_empty(new_folders)
        print(f"cryofield {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RunStopped as exc:
        print(f"cryofield {args.command}: stopped: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except BrokenPipeError:  # `cryofield info ... | head`: the reader has gone, which is not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"cryofield {args.command}: stopped: the disk is full ({exc.filename or exc}); outputs are written "
              "whole or not at all, so nothing was left half-written", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cryofield: interrupted; no output was written", file=sys.stderr)
        return 130
    return 0


def _new_output_folders(args) -> list[Path]:
    """The output folders named on the command line that do not exist yet (a failed command removes them)."""
    named = [getattr(args, name, None) for name in ("outdir", "output")]
    return [Path(p) for p in named if isinstance(p, (str, os.PathLike)) and not os.path.lexists(p)]


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this command made and left empty: bad input leaves nothing behind."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


if __name__ == "__main__":
    sys.exit(main())
