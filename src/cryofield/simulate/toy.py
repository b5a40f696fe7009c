"""A built-in two-state example: a small molecule of Gaussian blobs, one arm of which moves.

Used by ``make demo`` and by tests; it needs no input files. The two states are rendered
like atomic models (:func:`cryofield.simulate.atomic.render`) and imaged by the same
simulator as ``cryofield simulate``.

Run ``python -m cryofield.simulate.toy OUTDIR`` to write one.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from cryofield.io._atomic import save_table
from cryofield.simulate.atomic import render
from cryofield.simulate.dataset import write_dataset
from cryofield.simulate.particles import Imaging

#: Blob centres (Angstrom, x y z) and masses of state A; state B moves the last two blobs.
_BLOBS_A = np.array([[0, 0, 0], [18, 0, 0], [-18, 4, 0], [0, 16, 6], [0, -14, -8], [8, 24, 12]], float)
_MASSES = np.array([8.0, 4.0, 4.0, 3.0, 3.0, 2.0])
_ARM_MOVE = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [10, -6, 8], [-18, 4, -10]], float)


def toy_volumes(box: int, apix: float) -> list[np.ndarray]:
    """The two states' maps, (box, box, box) each, both centred on state A's centroid."""
    center = (_MASSES[:, None] * _BLOBS_A).sum(0) / _MASSES.sum()
    return [render(blobs, _MASSES, box, apix, resolution_angstrom=16.0, center_angstrom=center)
            for blobs in (_BLOBS_A, _BLOBS_A + _ARM_MOVE)]


def make_toy_dataset(outdir: str | os.PathLike, n: int = 1000, box: int = 64, apix: float = 2.0,
                     snr: float = 0.5, seed: int = 0) -> dict[str, Path]:
    """Write the toy dataset.

    Parameters
    ----------
    outdir : str or PathLike
        Created if needed.
    n : int
        Number of particles, half in each state (shuffled).
    box : int
        Box size, pixels.
    apix : float
        Pixel size, Angstrom.
    snr : float
        Signal variance over noise variance, over the whole image.
    seed : int

    Returns
    -------
    dict of str to Path
        ``stack``, ``star``, ``truth`` (as written by ``cryofield simulate``), ``volumes`` (the
        folder of the two true maps) and ``state_a`` (0-based indices of state-A particles).
    """
    outdir = Path(outdir)
    states = np.random.default_rng(seed).permutation(np.arange(n) >= n // 2).astype(np.int64)
    paths = write_dataset(outdir, toy_volumes(box, apix), states, Imaging(apix, snr=snr, shift_px=3.0), seed=seed)
    save_table(outdir / "state_a.txt", np.flatnonzero(states == 0), fmt="%d")
    return {"stack": paths.stack, "star": paths.star, "truth": paths.truth, "volumes": outdir / "truth_vols",
            "state_a": outdir / "state_a.txt"}


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m cryofield.simulate.toy OUTDIR [--n N] [--box D]``."""
    parser = argparse.ArgumentParser(description="Write the two-state toy particle dataset.")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--apix", type=float, default=2.0)
    parser.add_argument("--snr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = make_toy_dataset(args.outdir, args.n, args.box, args.apix, args.snr, args.seed)
    print(f"wrote {args.n} toy particles ({args.box} px, {args.apix} A/px) to {paths['star']}")


if __name__ == "__main__":
    main()
