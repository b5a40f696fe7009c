"""What the commands share: input arguments, output checks, progress bars."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
import time
import typing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cryofield.errors import InputError
from cryofield.io import ParticleTable, export_stack, read_particles


def command_parser(subparsers, name: str, summary: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand parser whose ``--help`` ends with worked examples."""
    return subparsers.add_parser(
        name, help=summary, description=summary,
        epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples).strip(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """``IN`` and the options that say where its images and metadata are."""
    parser.add_argument("input", metavar="IN", type=Path,
                        help="particles: .mrcs/.mrc stack, .txt list of stacks, RELION .star, cryoSPARC .cs or .csg")
    parser.add_argument("--datadir", type=Path, help="folder holding the image stacks the metadata names")
    parser.add_argument("--poses", type=Path, help="poses from another file (.pkl, .star or .cs)")
    parser.add_argument("--ctf", type=Path, help="CTF parameters from another file (.pkl, .star or .cs)")
    parser.add_argument("--apix", type=float, help="pixel size in Angstrom (overrides the files)")


def add_tilt_series_argument(parser: argparse.ArgumentParser, *, weighting: bool = False) -> None:
    """``--tilt-series`` (the rows of ``IN`` are tilt images, grouped into particles) and ``--tomograms``.

    With ``weighting``, also ``--tilt-weighting`` (the tilt images' amplitude scale, as training's).
    """
    parser.add_argument("--tilt-series", action="store_true",
                        help="IN lists one row per tilt image (Warp/M, cryoDRGN parse_relion/parse_warptools): group "
                             "the rows into particles by _rlnTomoParticleName or _rlnGroupName; indices then count "
                             "particles")
    parser.add_argument("--tomograms", type=Path,
                        help="the tomograms .star of a RELION 5 particles .star given without its optimisation set")
    if weighting:
        from cryofield.io.tilts import WEIGHTING_HELP, WEIGHTINGS

        parser.add_argument("--tilt-weighting", choices=WEIGHTINGS, default="auto", help=WEIGHTING_HELP)


def add_settings(group, config_class: type, *names: str) -> None:
    """Add the options of a config's settings, each built from its one declaration (:func:`cryofield.train.setting`).

    The option's dest is the setting's name; its flag, default, help, choices and nargs come
    from the field, its type from the annotation (paths as :class:`pathlib.Path`, booleans as
    switches: ``--x`` turns on a False default, ``--no-x`` turns off a True one).
    """
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    for name in names:
        f, meta = fields[name], fields[name].metadata
        flags = meta.get("flags") or ("--" + name.replace("_", "-"),)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        options = {"dest": name, "help": meta.get("help")}
        kind = _scalar_type(hints[name])
        if kind is bool:
            options["action"] = "store_false" if default else "store_true"
        else:
            options |= {"type": Path if meta.get("path") else kind, "default": default,
                        "metavar": meta.get("metavar") or (None if meta.get("choices") else
                                                           flags[-1].lstrip("-").replace("-", "_").upper())}
            for key in ("choices", "nargs", "const"):
                if meta.get(key) is not None:
                    options[key] = meta[key]
            if default is dataclasses.MISSING or meta.get("required"):
                options["required"], options["default"] = True, None
        group.add_argument(*flags, **options)


def _scalar_type(hint) -> type:
    """``int`` of ``int``, ``int | None``, ``list[int]`` and ``list[int] | None``."""
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return _scalar_type(args[0]) if len(args) == 1 else hint


def load_table(args: argparse.Namespace) -> ParticleTable:
    """Read ``args.input`` with the input options; a file of no particles is an :class:`InputError`."""
    table = read_particles(args.input, datadir=args.datadir, poses=args.poses, ctf=args.ctf, apix=args.apix,
                           tilt_series=getattr(args, "tilt_series", False), tomograms=getattr(args, "tomograms", None))
    if table.n == 0:
        raise InputError(args.input, "holds no particles")
    return table


def inputs_of(args: argparse.Namespace) -> list[Path]:
    """Every input file named on the command line."""
    names = [args.input, getattr(args, "poses", None), getattr(args, "ctf", None),
             getattr(args, "ind", None), getattr(args, "exclude", None), getattr(args, "tomograms", None)]
    return [Path(p) for p in names if p is not None]


def check_outputs(outputs: list[Path], inputs: list[Path], table: ParticleTable | None = None) -> None:
    """Refuse outputs that would overwrite an input (or a stack the input reads) or have no folder."""
    protected = {p.resolve() for p in inputs if p.exists()}
    if table is not None:
        for sid in np.unique(table.refs.stack_id):
            protected.add(table.refs.stack(int(sid)).path.resolve())
    for out in outputs:
        if not out.parent.resolve().is_dir():
            raise InputError(out, "output folder does not exist")
        if out.resolve() in protected:
            raise InputError(out, "output would overwrite an input; choose another name")


def stack_and_star(out: Path) -> tuple[Path, Path]:
    """``OUT.mrcs`` and ``OUT.star`` from ``-o OUT.mrcs`` (or ``-o OUT.star``)."""
    ext = out.suffix.lower()
    if ext == ".star":
        return out.with_suffix(".mrcs"), out
    if ext in (".mrcs", ".mrc"):
        return out, out.with_suffix(".star")
    raise InputError(out, "output must end in .mrcs (with a matching .star beside it) or .star")


def has_metadata(table: ParticleTable) -> bool:
    """Whether the table carries per-particle metadata worth a STAR file."""
    return table.record.kind != "none" or any(table.present().values())


LOG_PROGRESS_SECONDS = 60.0  # a line of progress this often when stderr is a file (a cluster job's log)


def progress_bar(total: int, description: str, unit: str = "img") -> tqdm | LogProgress:
    """Progress with ETA and throughput (``unit`` per second; images by default) on stderr.

    A bar redrawn in place on a terminal; where stderr is not one (a batch job's log file), a line
    every :data:`LOG_PROGRESS_SECONDS` instead, so that a long epoch shows in the log as it goes.
    """
    if not sys.stderr.isatty():
        return LogProgress(total, description, unit)
    return tqdm(total=total, desc=description, unit=unit, unit_scale=True, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


class LogProgress:
    """:func:`progress_bar` for a log: tqdm's meter as a line of its own, at most every ``interval`` seconds.

    Work shorter than ``interval`` writes nothing; longer work ends with a last line at its close.
    Offers what the commands use of a tqdm bar: ``n``, ``update``, ``close`` and ``with``.
    """

    def __init__(self, total: int, description: str, unit: str = "img", interval: float | None = None):
        self.total, self.description, self.unit = total, description, unit
        self.interval = LOG_PROGRESS_SECONDS if interval is None else interval
        self.n, self.started = 0, time.perf_counter()
        self.last = self.started
        self.lines = 0

    def update(self, count: int = 1) -> None:
        """``count`` more done; a line when ``interval`` seconds have passed since the last."""
        self.n += count
        if time.perf_counter() - self.last >= self.interval:
            self._line()

    def close(self) -> None:
        """A last line, if any was written or the work outlasted ``interval``."""
        if self.lines or time.perf_counter() - self.started >= self.interval:
            self._line()
        self.lines = -1  # closed: nothing more

    def _line(self) -> None:
        if self.lines < 0:
            return
        now = time.perf_counter()
        print(tqdm.format_meter(self.n, self.total or None, now - self.started, prefix=self.description,
                                unit=self.unit, unit_scale=True, ascii=True, ncols=100), file=sys.stderr, flush=True)
        self.last, self.lines = now, self.lines + 1

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``-o OUT.mrcs`` and ``--chunk-size`` for commands that write a new stack."""
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output .mrcs; a matching .star is written beside it when the input "
                             "has metadata")
    parser.add_argument("-b", "--chunk-size", type=int, default=512,
                        help="images read, processed and written at a time (default 512)")


def write_transformed_stack(args: argparse.Namespace, table: ParticleTable, label: str,
                            transform, box_size: int | None = None,
                            pixel_size_angstrom: np.ndarray | None = None) -> None:
    """Stream ``table`` through ``transform`` into ``args.output`` (+ .star), with a progress bar."""
    if table.n == 0:
        raise InputError(args.input, "holds no particles")
    if args.chunk_size < 1:
        raise InputError(None, f"--chunk-size must be positive, got {args.chunk_size}")
    stack, star = stack_and_star(args.output)
    star = star if has_metadata(table) else None
    check_outputs([stack] + ([star] if star else []), inputs_of(args), table)
    start = time.perf_counter()
    with progress_bar(table.n, label) as bar:
        new = export_stack(table, stack, star, transform=transform, box_size=box_size,
                           pixel_size_angstrom=pixel_size_angstrom, chunk_size=args.chunk_size,
                           progress=bar.update)
    elapsed = time.perf_counter() - start
    print(f"wrote {stack} ({new.n} images, {new.box_size} x {new.box_size} px, "
          f"{new.pixel_size_angstrom[0]:.4f} A/px)" + (f" and {star}" if star else "")
          + f" in {elapsed:.1f} s ({new.n / max(elapsed, 1e-9):.0f} images/s)")


def read_volume(path: Path, apix: float | None = None):
    """A map as ``(float32 [z, y, x] array, pixel size)``; ``apix`` overrides the header."""
    from cryofield.io import read_map

    volume, header = read_map(path)
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise InputError(path, f"map is {volume.shape}; a cube is needed")
    pixel = apix or header
    if not pixel:
        raise InputError(path, "no pixel size in the header; pass --apix")
    return volume, float(pixel)


def write_volume(args: argparse.Namespace, volume: np.ndarray, apix: float) -> None:
    """Write ``volume`` to ``args.output`` atomically, refusing to overwrite an input."""
    from cryofield.io import write_map
    from cryofield.io._atomic import atomic_outputs

    check_outputs([args.output], inputs_of(args))
    with atomic_outputs(args.output) as (temp,):
        write_map(temp, volume, apix)
