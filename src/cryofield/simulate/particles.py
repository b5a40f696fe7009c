"""Simulate particle images of one or more volumes with known poses, shifts, CTF and noise."""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryofield.fourier import fft_center, ifft_center, pad_center, radius
from cryofield.imaging import ctf_on_lattice, exposure_weights, extract_slices, shift_phase, trilinear_apodization
from cryofield.so3 import random_rotations


@dataclass(frozen=True)
class Imaging:
    """How particles are imaged.

    Attributes
    ----------
    pixel_size_angstrom : float
    snr : float
        Signal variance over noise variance (``inf``: no noise).
    snr_radius_px : float or None
        Measure the signal variance inside this radius only (default: whole image).
    shift_px : float
        Shifts drawn uniformly in ``[-shift_px, shift_px]`` on each axis.
    defocus_range_angstrom : tuple of float
        Defocus U drawn uniformly in this range; V is U minus up to 5% astigmatism.
    voltage_kv, cs_mm, amplitude_contrast, bfactor : float
    ctf : bool
        Apply a CTF (default) or not.
    """

    pixel_size_angstrom: float
    snr: float = float("inf")
    snr_radius_px: float | None = None
    shift_px: float = 0.0
    defocus_range_angstrom: tuple[float, float] = (10000.0, 25000.0)
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    bfactor: float = 0.0
    ctf: bool = True


def draw_ctf(n: int, imaging: Imaging, box: int, rng: np.random.Generator) -> np.ndarray:
    """CTF parameters (n, 9) as ``ParticleTable.ctf_array`` rows, defocus drawn from the range."""
    low, high = imaging.defocus_range_angstrom
    dfu = rng.uniform(low, high, n)
    params = np.empty((n, 9))
    params[:, 0], params[:, 1] = box, imaging.pixel_size_angstrom
    params[:, 2], params[:, 3] = dfu, dfu * (1 - rng.uniform(0, 0.05, n))
    params[:, 4] = rng.uniform(-90, 90, n)
    params[:, 5:9] = imaging.voltage_kv, imaging.cs_mm, imaging.amplitude_contrast, 0.0
    return params


class VolumeProjector:
    """Noise-free particle images of a set of volumes (states), with CTF and shifts.

    Volumes are zero-padded twice in real space and divided by the trilinear apodization
    before their transform is sliced (every other voxel, see :func:`extract_slices`), so
    interpolation stays accurate up to Nyquist. The CTF and shifts are applied on the
    ``D x D`` lattice, so the images are exactly ``-(CTF * slice)`` there, as
    reconstruction assumes.

    A padded transform takes ``8 (2D)^3`` bytes (134 MB at 128 px, 1.07 GB at 256 px), so
    the projector computes them when first needed and keeps at most ``max_bytes`` of them,
    the least recently used going first. :attr:`resident` says whether every volume's fits.

    Parameters
    ----------
    volumes : sequence of ndarray, each (D, D, D)
        Positive density, ``[z, y, x]``.
    max_bytes : int
        Memory for transforms (at least one is always kept).
    """

    def __init__(self, volumes: list[np.ndarray], max_bytes: int = 2**30):
        sizes = {v.shape for v in volumes}
        if len(sizes) != 1 or len(next(iter(sizes))) != 3 or len(set(next(iter(sizes)))) != 1:
            raise ValueError(f"volumes must be cubes of one size, got {sorted(sizes)}")
        self.size = volumes[0].shape[0]
        self._volumes = [np.asarray(v) for v in volumes]
        self._capacity = max(1, max_bytes // (8 * (2 * self.size) ** 3))
        self._ft: OrderedDict[int, torch.Tensor] = OrderedDict()

    @property
    def resident(self) -> bool:
        """Whether every volume's transform fits in ``max_bytes`` at once."""
        return len(self._volumes) <= self._capacity

    def _transform(self, state: int) -> torch.Tensor:
        """The padded, apodization-corrected transform of one volume, (2D, 2D, 2D) complex64."""
        if state in self._ft:
            self._ft.move_to_end(state)
            return self._ft[state]
        while len(self._ft) >= self._capacity:
            self._ft.popitem(last=False)
        # in single precision, the precision kept: the transient memory of the FFT is 4 x 8 (2D)^3 bytes
        padded = pad_center(torch.from_numpy(np.asarray(self._volumes[state], np.float32)), 2 * self.size, 3)
        padded /= trilinear_apodization(2 * self.size).float()
        self._ft[state] = fft_center(padded, 3).to(torch.complex64)
        return self._ft[state]

    def release(self) -> None:
        """Drop every transform kept (they are computed again when needed)."""
        self._ft.clear()

    def __call__(self, states: np.ndarray, rotations: torch.Tensor, shifts_px: torch.Tensor,
                 ctf_params: torch.Tensor | None, bfactor: float = 0.0,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``X = -(CTF * W * P)`` shifted so that each particle's centre sits at ``-shift``.

        Parameters
        ----------
        states : ndarray, shape (B,), int
        rotations : Tensor, shape (B, 3, 3)
        shifts_px : Tensor, shape (B, 2)
            RELION-sign shifts.
        ctf_params : Tensor, shape (B, 9), or None
        bfactor : float
        weights : Tensor, shape (B, D, D), optional
            ``W``, a real filter per image on the centred lattice (radiation damage).

        Returns
        -------
        Tensor, shape (B, D, D), float64
        """
        size = self.size
        slices = torch.empty((len(states), size, size), dtype=torch.complex64)
        for s in np.unique(states):
            sel = torch.from_numpy(states == s)
            slices[sel] = extract_slices(self._transform(int(s)), rotations[sel].to(slices.real.dtype), size)
        slices = slices.to(torch.complex128)
        if ctf_params is not None:
            b = torch.full((len(states),), float(bfactor), dtype=torch.float64) if bfactor else None
            slices = slices * ctf_on_lattice(ctf_params, size, bfactor=b)
        if weights is not None:
            slices = slices * weights
        slices = slices * shift_phase(size, -shifts_px)  # content moves to -shift
        return -ifft_center(slices).real


def noise_std(signal: torch.Tensor, snr: float, radius_px: float | None = None) -> float:
    """Noise standard deviation giving ``snr`` = var(signal) / var(noise) for these images."""
    if not np.isfinite(snr):
        return 0.0
    if snr <= 0:
        raise ValueError(f"SNR must be positive, got {snr}")
    if radius_px is not None:
        inside = radius(signal.shape[-1], 2, dtype=torch.float64) <= radius_px
        signal = signal[:, inside]
    return float(np.sqrt(signal.var().item() / snr))


def simulate_chunks(projector: VolumeProjector, states: np.ndarray, rotations: np.ndarray, shifts_px: np.ndarray,
                    ctf_params: np.ndarray | None, imaging: Imaging, *, seed: int = 0, chunk_size: int = 1000,
                    progress: Callable[[int], None] | None = None, signal: np.ndarray | None = None,
                    scratch: str | os.PathLike | None = None,
                    exposure: np.ndarray | None = None,
                    amplitude: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Yield float32 images chunk by chunk, noise at ``imaging.snr`` (std set by the first chunk).

    When the projector cannot hold every volume's transform (:attr:`VolumeProjector.resident`),
    the noise-free images are first made one volume at a time into a temporary float32 file
    in ``scratch`` (``4 N D^2`` bytes, removed at the end), so that each transform is computed
    once, and then read back in order; ``progress`` then counts that first pass.

    Parameters
    ----------
    projector : VolumeProjector
    states, rotations, shifts_px, ctf_params : ndarray
        (N,), (N, 3, 3), (N, 2), (N, 9) or None.
    imaging : Imaging
    seed : int
        Seed of the noise.
    chunk_size : int
    progress : callable, optional
    signal : ndarray, shape (N,), bool, optional
        The images whose signal sets the noise (the particles, not the junk; default all).
    scratch : str or PathLike, optional
        Folder of the temporary file (default: the system's, ``TMPDIR``).
    exposure : ndarray, shape (N,), optional
        Each image's accumulated exposure (e/A^2): its amplitudes are damped by
        :func:`cryofield.imaging.exposure_weights` (at ``imaging.voltage_kv``, without the cut).
    amplitude : ndarray, shape (N,), optional
        Each image's signal scale (tilt images: ``cos(tilt)``, the thicker ice seen at a tilt).

    Yields
    ------
    ndarray, shape (B, D, D), float32
    """
    frequency = radius(projector.size, 2, dtype=torch.float64) / (projector.size * imaging.pixel_size_angstrom)

    def project(rows: np.ndarray | slice) -> torch.Tensor:
        weights = None if exposure is None else exposure_weights(
            frequency, torch.from_numpy(np.asarray(exposure[rows], np.float64)), imaging.voltage_kv, cutoff=False)
        if amplitude is not None:
            scale = torch.from_numpy(np.asarray(amplitude[rows], np.float64)).reshape(-1, 1, 1)
            weights = scale.expand(len(scale), projector.size, projector.size) if weights is None else weights * scale
        return projector(states[rows], torch.from_numpy(rotations[rows]), torch.from_numpy(shifts_px[rows]),
                         None if ctf_params is None else torch.from_numpy(ctf_params[rows]), imaging.bfactor,
                         weights)

    if projector.resident:
        yield from _with_noise((project(slice(s, s + chunk_size)) for s in range(0, len(states), chunk_size)),
                               imaging, seed, chunk_size, progress, signal)
        return
    with tempfile.TemporaryDirectory(prefix=".cryofield-clean-", dir=scratch) as folder:
        path = Path(folder) / ".noise-free.part.f32"  # a temporary name: never an output
        image_bytes = 4 * projector.size**2
        with open(path, "wb") as fh:
            fh.truncate(image_bytes * len(states))
            for state in np.unique(states):  # each volume's transform computed once, one held at a time
                projector.release()
                rows = np.flatnonzero(states == state)
                for start in range(0, len(rows), chunk_size):
                    part = rows[start:start + chunk_size]
                    for row, image in zip(part, project(part).numpy().astype(np.float32)):
                        os.pwrite(fh.fileno(), image.tobytes(), int(row) * image_bytes)
                    if progress is not None:
                        progress(len(part))

        def read_back() -> Iterator[torch.Tensor]:
            with open(path, "rb") as fh:
                for start in range(0, len(states), chunk_size):
                    count = min(chunk_size, len(states) - start)
                    images = np.fromfile(fh, np.float32, count * projector.size**2)
                    yield torch.from_numpy(images.reshape(count, projector.size, projector.size).astype(np.float64))

        yield from _with_noise(read_back(), imaging, seed, chunk_size, None, signal)


def _with_noise(chunks: Iterator[torch.Tensor], imaging: Imaging, seed: int, chunk_size: int,
                progress: Callable[[int], None] | None, signal: np.ndarray | None) -> Iterator[np.ndarray]:
    """:func:`simulate_chunks`' second half: noise-free chunks in particle order, with noise, as float32."""
    generator = torch.Generator().manual_seed(seed)
    sigma = None
    for i, clean in enumerate(chunks):
        part = slice(i * chunk_size, (i + 1) * chunk_size)
        if sigma is None:
            measured = clean if signal is None or not signal[part].any() else clean[torch.from_numpy(signal[part])]
            sigma = noise_std(measured, imaging.snr, imaging.snr_radius_px)
        if sigma:
            clean += torch.randn(clean.shape, generator=generator, dtype=clean.dtype) * sigma
        if progress is not None:
            progress(len(clean))
        yield clean.numpy().astype(np.float32)


def draw_poses(n: int, shift_px: float, rng: np.random.Generator, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random rotations (n, 3, 3) and shifts (n, 2) uniform in ``[-shift_px, shift_px]``."""
    rotations = random_rotations(n, generator=torch.Generator().manual_seed(seed)).numpy()
    shifts = rng.uniform(-shift_px, shift_px, (n, 2)) if shift_px > 0 else np.zeros((n, 2))
    return rotations, shifts
