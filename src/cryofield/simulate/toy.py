"""A small two-state toy dataset: projections of Gaussian-blob molecules with CTF and noise.

Used by ``make demo`` and by tests; it needs no input files. Each "molecule" is a sum of
isotropic 3D Gaussians, so its projections are exact sums of 2D Gaussians. State B moves
one arm of state A, which gives the dataset a discrete heterogeneity to select on.

Run ``python -m cryofield.simulate.toy OUTDIR`` to write one.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.spatial.transform import Rotation

from cryofield.conventions import CTF_COLUMNS
from cryofield.fourier import rfft_frequencies
from cryofield.imaging import compute_ctf
from cryofield.io import ImageRefs, MrcStackWriter, ParticleTable, SourceRecord, write_particles

#: Blob centres (Angstrom, x y z) and radii (Angstrom) of state A; state B moves the last two.
_BLOBS_A = np.array([[0, 0, 0], [18, 0, 0], [-18, 4, 0], [0, 16, 6], [0, -14, -8], [8, 24, 12]], float)
_RADII = np.array([9.0, 7.0, 7.0, 6.0, 6.0, 5.0])
_ARM_MOVE = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [10, -6, 8], [-18, 4, -10]], float)


def _project_blobs(centres: np.ndarray, radii: np.ndarray, rotations: np.ndarray, shifts_px: np.ndarray,
                   box: int, apix: float) -> np.ndarray:
    """Projections (N, box, box) of unit-mass 3D Gaussians rotated by ``R`` and shifted."""
    rotated = np.einsum("nij,bj->nbi", rotations, centres) / apix  # (N, blobs, 3) in pixels
    sigma = radii / apix / 2.0
    coords = np.arange(box) - box // 2
    cx = rotated[..., 0] - shifts_px[:, None, 0]  # centre sits at -shift from the box centre
    cy = rotated[..., 1] - shifts_px[:, None, 1]
    gx = np.exp(-(coords[None, None, :] - cx[..., None]) ** 2 / (2 * sigma[None, :, None] ** 2))
    gy = np.exp(-(coords[None, None, :] - cy[..., None]) ** 2 / (2 * sigma[None, :, None] ** 2))
    weight = (radii / radii.max()) ** 3  # mass grows with volume
    return np.einsum("nby,nbx,b->nyx", gy, gx, weight)


def make_toy_dataset(outdir: str | os.PathLike, n: int = 1000, box: int = 64, apix: float = 2.0,
                     snr: float = 0.5, seed: int = 0) -> dict[str, Path]:
    """Write a toy particle dataset.

    Parameters
    ----------
    outdir : str or PathLike
        Created if needed.
    n : int
        Number of particles; the first half (shuffled) is state A.
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
        ``stack``, ``star``, ``state_a`` (0-based indices of state-A particles, .txt) and
        ``truth`` (.npz with ``state``, ``rotations``, ``shifts_px``, ``ctf``).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    state = rng.permutation(np.arange(n) >= n // 2).astype(np.int64)
    rotations = Rotation.random(n, random_state=rng).as_matrix()
    shifts_px = rng.uniform(-3, 3, size=(n, 2))
    ctf = pd.DataFrame({
        "defocus_u_angstrom": (dfu := rng.uniform(10000, 25000, n)),
        "defocus_v_angstrom": dfu - rng.uniform(0, 600, n),
        "defocus_angle_deg": rng.uniform(-90, 90, n),
        "voltage_kv": np.full(n, 300.0), "cs_mm": np.full(n, 2.7),
        "amplitude_contrast": np.full(n, 0.1), "phase_shift_deg": np.zeros(n)})

    clean = np.empty((n, box, box), np.float32)
    for s, centres in enumerate([_BLOBS_A, _BLOBS_A + _ARM_MOVE]):
        sel = state == s
        clean[sel] = _project_blobs(centres, _RADII, rotations[sel], shifts_px[sel], box, apix)
    params = torch.tensor(ctf[list(CTF_COLUMNS[2:])].to_numpy())
    freqs = rfft_frequencies(box, box, dtype=torch.float64)[None] / apix
    transfer = compute_ctf(freqs, *params.unbind(-1))
    images = -torch.fft.irfft2(torch.fft.rfft2(torch.from_numpy(clean).double()) * transfer, s=(box, box))
    signal_var = images.var(dim=(-1, -2)).mean().item()
    images += torch.randn(images.shape, generator=torch.Generator().manual_seed(seed),
                          dtype=torch.float64) * np.sqrt(signal_var / snr)

    paths = {"stack": outdir / "particles.mrcs", "star": outdir / "particles.star",
             "state_a": outdir / "state_a.txt", "truth": outdir / "truth.npz"}
    with MrcStackWriter(paths["stack"], (n, box, box), apix) as writer:
        writer.write(images.numpy())
    refs = ImageRefs((paths["stack"].name,), np.zeros(n, np.int32), np.arange(n, dtype=np.int64),
                     paths["star"])
    table = ParticleTable(refs=refs, pixel_size_angstrom=np.full(n, apix), box_size_px=np.full(n, box),
                          ctf=ctf, rotations_or_none=rotations, shifts_angstrom=shifts_px * apix,
                          optics_group=np.ones(n, np.int64),
                          record=SourceRecord("none", paths["star"], np.arange(n)))
    write_particles(table, paths["star"])
    np.savetxt(paths["state_a"], np.flatnonzero(state == 0), fmt="%d")
    np.savez(paths["truth"], state=state, rotations=rotations, shifts_px=shifts_px,
             ctf=table.ctf_array())
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m cryofield.simulate.toy OUTDIR [--n N] [--box D]``."""
    parser = argparse.ArgumentParser(description="Write a two-state toy particle dataset.")
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
