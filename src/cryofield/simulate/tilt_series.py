"""Simulate cryo-ET tilt series: each particle imaged at every stage tilt, its damage growing with the exposure.

A particle of pose ``R`` at height ``z`` and distance ``x`` from the tilt axis, seen at stage
tilt ``theta`` (about y, RELION's ``_rlnTomoYTilt``), has the image pose ``Ry(theta) R``, the
defocus of its tilt series' image corrected by its depth ``(Ry(theta) (x, y, z))_z`` (RELION's
hand -1: deeper is closer to focus), amplitudes damped by the exposure accumulated before
the tilt (:func:`cryofield.imaging.exposure_weights`, Grant and Grigorieff's curve) and scaled
by ``cos theta`` (the ice is ``1 / cos theta`` times as thick; RELION and Warp's model, whose
``_rlnCtfScalefactor`` the file then gives). The noise
has one variance for all images (the same dose per tilt), set by ``imaging.snr`` over them all.

Rows are written particle by particle, each particle's tilts in the order they were acquired,
as Warp and cryoDRGN's converters write them, with ``_rlnTomoParticleName``,
``_rlnMicrographPreExposure``, ``_rlnTomoNominalStageTiltAngle`` and ``_rlnCtfScalefactor``
(``cos theta``): ``read_particles(star, tilt_series=True)`` groups them back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryofield.conventions import relion_tilt_matrix
from cryofield.fourier import fft_center, ifft_center, radius
from cryofield.imaging import ctf_on_lattice, exposure_weights
from cryofield.io import write_map, write_particles
from cryofield.io._atomic import atomic_outputs
from cryofield.io.star import read_star, write_star
from cryofield.simulate.dataset import SimulatedDataset, StackStream, stack_table
from cryofield.simulate.particles import Imaging, VolumeProjector, draw_ctf, draw_poses, simulate_chunks

SCHEMES = ("dose-symmetric", "bidirectional")


@dataclass(frozen=True)
class TiltScheme:
    """How each tilt series is acquired.

    Attributes
    ----------
    min_deg, max_deg, step_deg : float
        The stage tilts, degrees: ``min_deg`` to ``max_deg`` by ``step_deg`` (0 among them).
    scheme : {"dose-symmetric", "bidirectional"}
        The order of acquisition: from 0 alternating sides in pairs (Hagen, Wan and Briggs,
        2017: 0, +s, -s, -2s, +2s, +3s, ...), or from 0 to one end, then from ``-s`` to the other.
    dose_per_tilt : float
        Exposure of each tilt image, e/A^2.
    ice_angstrom : float
        Thickness of the ice: heights uniform in its ``+- ice / 2``.
    field_angstrom : float
        Width of the field of view: distances from the tilt axis uniform in ``+- field / 2``.
    """

    min_deg: float = -60.0
    max_deg: float = 60.0
    step_deg: float = 3.0
    scheme: str = "dose-symmetric"
    dose_per_tilt: float = 3.0
    ice_angstrom: float = 1000.0
    field_angstrom: float = 4000.0

    def check(self) -> None:
        """Raise ``ValueError`` for a scheme that cannot be acquired."""
        if self.scheme not in SCHEMES:
            raise ValueError(f"tilt scheme {self.scheme!r}: one of {', '.join(SCHEMES)}")
        if not (self.step_deg > 0 and self.min_deg <= 0 <= self.max_deg and self.max_deg - self.min_deg < 180):
            raise ValueError("tilts need a positive step and a range that holds 0 and spans less than 180 degrees")
        if self.dose_per_tilt < 0 or self.ice_angstrom < 0 or self.field_angstrom < 0:
            raise ValueError("the dose per tilt, the ice and the field cannot be negative")

    def angles(self) -> np.ndarray:
        """The stage tilts in the order of acquisition, degrees, shape (T,)."""
        self.check()
        plus = int(np.floor(self.max_deg / self.step_deg + 1e-9))
        minus = int(np.floor(-self.min_deg / self.step_deg + 1e-9))
        if self.scheme == "bidirectional":
            order = [0, *range(1, plus + 1), *range(-1, -minus - 1, -1)]
        else:
            order, k = [0], 1
            while k <= max(plus, minus):
                pair = (k, -k) if k % 2 else (-k, k)
                order += [j for j in pair if -minus <= j <= plus]
                k += 1
        return np.array(order, np.float64) * self.step_deg


def write_tilt_series(outdir: str | os.PathLike, volumes: list[np.ndarray], states: np.ndarray, imaging: Imaging,
                      scheme: TiltScheme, *, coordinates: np.ndarray | None = None,
                      ctf_from: np.ndarray | None = None, float16: bool = False, premultiply: bool = False,
                      seed: int = 0,
                      chunk_size: int = 1000, progress: Callable[[int], None] | None = None) -> SimulatedDataset:
    """Simulate a tilt series of each particle in ``states`` and write them with their ground truth.

    Parameters
    ----------
    outdir : str or PathLike
        Gets ``particles.mrcs`` (every tilt image), ``particles.star`` (one row per tilt
        image), ``truth.npz`` and ``truth_vols/vol_XXX.mrc``.
    volumes : list of ndarray, each (D, D, D)
        One positive-density map per state.
    states : ndarray, shape (P,), int
        Each particle's state.
    imaging : Imaging
        Pixel size, SNR, shifts (drawn per image), defocus range (per particle), CTF.
    scheme : TiltScheme
    coordinates : ndarray, shape (P, d), optional
        True conformational coordinates (default: the state).
    ctf_from : ndarray, shape (M, 9), optional
        CTF rows to draw each particle's from, instead of the defocus range.
    float16 : bool
        Write a float16 stack (MRC mode 12), as WarpTools does.
    premultiply : bool
        Multiply each noisy image's transform by its CTF, its exposure's amplitude weight
        (:func:`cryofield.imaging.exposure_weights`, without the cut) and ``cos theta``, as RELION 5 and WarpTools
        extract by default, and say so (``_rlnCtfDataAreCtfPremultiplied 1``).
    seed, chunk_size : int
    progress : callable, optional
        Called with the number of images done.

    Returns
    -------
    SimulatedDataset

    Notes
    -----
    ``truth.npz`` holds per particle ``state``, ``coordinates``, ``rotations`` (the pose at
    zero tilt) and ``position_angstrom`` (x from the tilt axis, y, height z); per image
    ``particle``, ``image_rotations``, ``shifts_px``, ``ctf``, ``tilt_deg``, ``exposure`` and ``amplitude``.
    """
    outdir = Path(outdir)
    (outdir / "truth_vols").mkdir(parents=True, exist_ok=True)
    angles = scheme.angles()
    p, t = len(states), len(angles)
    box, apix = volumes[0].shape[-1], imaging.pixel_size_angstrom
    rng = np.random.default_rng(seed)
    rotations, _ = draw_poses(p, 0.0, rng, seed)
    particle = np.repeat(np.arange(p), t)
    tilt = np.tile(angles, p)
    exposure = np.tile(np.arange(t) * scheme.dose_per_tilt, p)  # before each tilt: 0 for the first
    stage = relion_tilt_matrix(0 * angles, angles, 0 * angles)  # Ry(theta): RELION's YTilt
    image_rotations = (stage[None] @ rotations[:, None]).reshape(p * t, 3, 3)
    shifts = rng.uniform(-imaging.shift_px, imaging.shift_px, (p * t, 2)) if imaging.shift_px > 0 else np.zeros(
        (p * t, 2))
    position = np.column_stack([rng.uniform(-0.5, 0.5, (p, 2)) * scheme.field_angstrom,
                                rng.uniform(-0.5, 0.5, p) * scheme.ice_angstrom])
    ctf = None
    if imaging.ctf:
        if ctf_from is not None:
            ctf = ctf_from[rng.integers(0, len(ctf_from), p)].copy()
            ctf[:, 0], ctf[:, 1] = box, apix
        else:
            ctf = draw_ctf(p, imaging, box, rng)
        ctf = ctf[particle]
        depth = np.einsum("tj,pj->pt", stage[:, 2], position).reshape(-1)  # z of Ry(theta) (x, y, z)
        ctf[:, 2:4] -= depth[:, None]  # RELION's hand -1: U + hand x depth
    stack, star, truth = outdir / "particles.mrcs", outdir / "particles.star", outdir / "truth.npz"
    maps = [outdir / "truth_vols" / f"vol_{i:03d}.mrc" for i in range(len(volumes))]
    names = np.array([f"tomo/{i + 1}" for i in range(p)])[particle]
    amplitude = np.cos(np.radians(tilt))
    extra = {"rlnTomoParticleName": names, "rlnMicrographPreExposure": exposure,
             "rlnTomoNominalStageTiltAngle": tilt, "rlnCtfScalefactor": amplitude}
    states = np.asarray(states, np.int64)
    coordinates = states[:, None].astype(float) if coordinates is None else np.asarray(coordinates, float)
    if premultiply and ctf is None:
        raise ValueError("premultiplying needs a CTF")
    with atomic_outputs(stack, star, truth, *maps) as temps:
        writer = StackStream([temps[0]], [p * t], box, apix, np.float16 if float16 else np.float32)
        try:
            done = 0
            for images in simulate_chunks(VolumeProjector(volumes), states[particle], image_rotations, shifts, ctf,
                                          imaging, seed=seed, chunk_size=chunk_size, progress=progress,
                                          exposure=exposure, amplitude=amplitude):
                if premultiply:
                    rows = slice(done, done + len(images))
                    images = _premultiplied(images, ctf[rows], exposure[rows], amplitude[rows], imaging.voltage_kv)
                writer.write(images)
                done += len(images)
        finally:
            writer.close()
        table = stack_table([stack], [p * t], star, box, apix, ctf, image_rotations, shifts)
        write_particles(table, temps[1], extra_columns=extra)
        if premultiply:  # said in the optics table, as RELION 5 and WarpTools say it
            blocks = read_star(temps[1])
            blocks["optics"].table["rlnCtfDataAreCtfPremultiplied"] = 1
            write_star(temps[1], blocks)
        with open(temps[2], "wb") as fh:
            np.savez(fh, state=states, coordinates=coordinates, rotations=rotations, position_angstrom=position,
                     particle=particle, image_rotations=image_rotations, shifts_px=shifts,
                     ctf=np.zeros((p * t, 0)) if ctf is None else ctf, tilt_deg=tilt, exposure=exposure,
                     amplitude=amplitude)
        for path, volume in zip(temps[3:], volumes):
            write_map(path, volume, apix)
    return SimulatedDataset(stack, star, truth, maps)


def _premultiplied(images: np.ndarray, ctf: np.ndarray, exposure: np.ndarray, amplitude: np.ndarray,
                   voltage_kv: float) -> np.ndarray:
    """Images (B, D, D) with their transforms multiplied by their CTF (B, 9), exposure's weight and amplitude (B,)."""
    size = images.shape[-1]
    weights = ctf_on_lattice(torch.from_numpy(ctf), size) * torch.from_numpy(amplitude).reshape(-1, 1, 1)
    frequency = radius(size, 2, dtype=torch.float64) / (size * float(ctf[0, 1]))
    weights = weights * exposure_weights(frequency, torch.from_numpy(np.asarray(exposure, np.float64)), voltage_kv,
                                         cutoff=False)
    ft = fft_center(torch.from_numpy(np.asarray(images, np.float64))) * weights
    return ifft_center(ft).real.numpy().astype(np.float32)
