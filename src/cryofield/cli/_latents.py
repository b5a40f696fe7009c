"""What the latent-space commands share: a run's latents and particle rows, and writing a path with its maps."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cryofield.cli._common import progress_bar
from cryofield.errors import InputError
from cryofield.io import LatentPath, WorkDir


def add_path_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, its latents, the output folder and ``--no-maps``."""
    parser.add_argument("workdir", type=Path, help="a train-vae run")
    parser.add_argument("--z", type=Path, help="latents (.npy, N x zdim; default WORKDIR/z.npy)")
    parser.add_argument("-o", "--outdir", type=Path, required=True)
    parser.add_argument("--no-maps", action="store_true", help="write the path only")


def load_run_latents(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """``(z, rows)``: the run's latents (N, zdim) and the input-file row of each (N,)."""
    from cryofield.train import TrainConfig
    from cryofield.train.results import input_rows

    workdir = WorkDir(args.workdir).require_config()
    config = TrainConfig.load(workdir)
    if not config.zdim:
        raise InputError(args.workdir, "a train-nn run has no latents")
    z = workdir.read_latents(config.zdim, args.z)
    z_file = args.z or workdir.latents
    rows = input_rows(config, len(z))
    if len(rows) != len(z):
        raise InputError(z_file, f"{len(z)} latents for the run's {len(rows)} particles")
    return z, rows


def latent_rows(anchors: list[int], rows: np.ndarray, source: Path) -> np.ndarray:
    """Latent rows of particles given as input-file indices (``rows`` sorted, from :func:`load_run_latents`)."""
    anchors = np.asarray(anchors, np.int64)
    at = np.searchsorted(rows, anchors)
    bad = (at >= len(rows)) | (rows[np.minimum(at, len(rows) - 1)] != anchors)
    if bad.any():
        raise InputError(source, f"particle {int(anchors[bad][0])} is not one the run was trained on")
    return at


def write_path(args: argparse.Namespace, zs: np.ndarray, what: str, particle_rows: np.ndarray | None = None) -> None:
    """``OUTDIR/z_path.txt`` (and ``path_ind.txt``), then one map per latent unless ``--no-maps``."""
    from cryofield.train import write_volumes

    path = LatentPath(zs, particle_rows)
    path.save(args.outdir)
    message = f"wrote {args.outdir}/z_path.txt ({what}, {len(zs)} points)"
    if not args.no_maps:
        paths = path.map_paths(args.outdir)
        with progress_bar(len(zs), "maps", unit="map") as bar:
            box, apix = write_volumes(args.workdir, zs, paths, progress=bar.update)
        message += f" and {len(paths)} maps ({box}^3, {apix:.4f} A/px)"
    print(message)
