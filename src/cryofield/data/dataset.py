"""Particle images prepared once for training: windowed, transformed, centred, normalised.

Each image keeps only the Fourier coefficients that training uses: the half-lattice
pixels inside the circle ``|k| < D/2`` (:func:`cryofield.imaging.half_lattice_mask`); the
other half follows from Friedel symmetry. With known shifts the images are centred here,
once, rather than at every step.

Three sources hold them: :class:`PreparedParticles` (every image ready, in single
precision), :class:`CompactParticles` (a run's data in memory: float16 transforms and CTF
parameters, each batch made ready when read; 2.6 times fewer bytes) and
:class:`LazyParticles` (read from the stacks when needed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from cryofield.fourier import fft_center, lattice, soft_ball_mask
from cryofield.imaging import ctf_at_pixels, half_lattice_mask, shift_phase, shift_phase_at
from cryofield.io import ParticleTable


@dataclass
class PreparedParticles:
    """Training data in memory.

    Attributes
    ----------
    images : Tensor, shape (N, P), complex64
        Centred transforms at the ``P`` half-lattice pixels, divided by ``scale``.
    coords : Tensor, shape (P, 2)
        ``(kx, ky)`` of those pixels in cycles per box.
    rotations : Tensor, shape (N, 3, 3)
    ctf : Tensor, shape (N, P) or None
        CTF at those pixels.
    scale : float
        The normalisation divided out (standard deviation of the raw coefficients).
    box : int
    pixel_size_angstrom : float
    tilted : PreparedParticles or None
        The tilted partner of each particle (tilt-pair data), same order and scale.
    tilt_mask : Tensor, shape (B, T), bool, or None
        A batch of tilt series (:class:`cryofield.data.TiltSeriesParticles`): the images are
        ``B`` particles' ``T`` tilts each, particle by particle (``N = B T``), and the mask
        says which are images of the particle (False: padding, a copy of its first).
    """

    images: torch.Tensor
    coords: torch.Tensor
    rotations: torch.Tensor
    ctf: torch.Tensor | None
    scale: float
    box: int
    pixel_size_angstrom: float
    tilted: PreparedParticles | None = None
    tilt_mask: torch.Tensor | None = None

    random_access = True  # any particles are read at no cost (see CompactParticles)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_pixels(self) -> int:
        """``P``, the half-lattice pixels per image."""
        return len(self.coords)

    @property
    def device(self) -> torch.device:
        """Where the particles are held."""
        return self.images.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the per-particle tensors, tilted partners included."""
        held = sum(t.numel() * t.element_size() for t in (self.images, self.rotations, self.ctf) if t is not None)
        return held + (0 if self.tilted is None else self.tilted.nbytes)

    def subset(self, positions: torch.Tensor | np.ndarray) -> PreparedParticles:
        """The particles at ``positions`` (in that order), tilted partners included."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        return PreparedParticles(
            self.images[positions], self.coords, self.rotations[positions],
            None if self.ctf is None else self.ctf[positions], self.scale, self.box, self.pixel_size_angstrom,
            None if self.tilted is None else self.tilted.subset(positions))

    def to(self, device: torch.device) -> PreparedParticles:
        """The particles on ``device`` (``self`` when they are there), copied without waiting for the host."""
        if self.images.device == device:
            return self

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return PreparedParticles(move(self.images), move(self.coords), move(self.rotations), move(self.ctf),
                                 self.scale, self.box, self.pixel_size_angstrom,
                                 None if self.tilted is None else self.tilted.to(device), move(self.tilt_mask))

    def band_limited(self, radius_px: float | None) -> PreparedParticles:
        """The particles at the pixels with ``|k| < radius_px`` only (cycles per box; all with None).

        Tilted partners are limited alike; the encoder's input needs all pixels, so this is
        for fitting the decoder alone.
        """
        if radius_px is None:
            return self
        keep = self.coords.norm(dim=1) < radius_px
        return PreparedParticles(self.images[:, keep], self.coords[keep], self.rotations,
                                 None if self.ctf is None else self.ctf[:, keep], self.scale, self.box,
                                 self.pixel_size_angstrom,
                                 None if self.tilted is None else self.tilted.band_limited(radius_px), self.tilt_mask)

    def load(self, indices: np.ndarray) -> PreparedParticles:
        """The particles ``indices`` (a :class:`ParticleSource` method; in memory this is :meth:`subset`)."""
        if len(indices) == len(self) and np.array_equal(indices, np.arange(len(self))):
            return self
        return self.subset(indices)


CHUNK_PIXELS = 2**24  # image pixels transformed at a time: 1,024 images at 128 px, 256 at 256 px


def _transforms(table: ParticleTable, size: int, *, invert: bool, window_r: float, shifts_px: np.ndarray,
                chunk_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(indices, transforms)`` of ``table``'s images in chunks: windowed, centred, at the half-lattice pixels.

    The transforms are complex64, (B, P), with the contrast flipped when ``invert``; not normalised.
    A chunk is at most ``chunk_size`` images and :data:`CHUNK_PIXELS` pixels, so that its
    temporaries (real and Fourier images, shift phases) do not grow with the box size.
    """
    chunk_size = max(1, min(chunk_size, CHUNK_PIXELS // (size * size)))
    shifts = torch.from_numpy(shifts_px).float()
    half = half_lattice_mask(size)
    window = soft_ball_mask(size, window_r * size / 2, (1 - window_r) * size / 2) if window_r else None
    sign = -1.0 if invert else 1.0
    for indices, chunk in table.iter_chunks(chunk_size):
        x = torch.from_numpy(chunk)
        if window is not None:
            x = x * window
        ft = fft_center(x) * shift_phase(size, shifts[indices])
        yield indices, (sign * ft[:, half]).to(torch.complex64)


def _ctf_params(table: ParticleTable) -> torch.Tensor | None:
    """The table's CTF parameters, (N, 9) to (N, 12) float32 (:meth:`ParticleTable.ctf_array`), or None.

    Tilt images get up to three more columns, each only where it or a later one is needed
    (:func:`cryofield.imaging.ctf_at_pixels`): their accumulated exposure (e/A^2, 0 when
    unknown), whether they were multiplied by their CTF when extracted (1 or 0), and their
    amplitude scale (:attr:`cryofield.io.tilts.TiltSeries.amplitude`, 1 when none).
    """
    if table.ctf is None:
        return None
    params = table.ctf_array()
    tilts = table.tilts
    if tilts is None:
        return torch.from_numpy(params).float()
    extra = [np.zeros(table.n) if tilts.exposure is None else tilts.exposure,
             np.full(table.n, float(tilts.ctf_premultiplied)),
             np.ones(table.n) if tilts.amplitude is None else tilts.amplitude]
    needed = [tilts.exposure is not None, tilts.ctf_premultiplied, tilts.amplitude is not None]
    if any(needed):
        last = max(i for i, need in enumerate(needed) if need)
        params = np.column_stack([params, *extra[:last + 1]])
    return torch.from_numpy(params).float()


def prepare_particles(table: ParticleTable, *, invert: bool = True, window_r: float = 0.85,
                      scale: float | None = None, rotations: np.ndarray | None = None,
                      shifts_px: np.ndarray | None = None, check: bool = True, chunk_size: int = 1024,
                      progress: Callable[[int], None] | None = None) -> PreparedParticles:
    """Read, window, transform, centre and normalise every image of ``table``.

    Parameters
    ----------
    table : ParticleTable
        With rotations; shifts and CTF used where present.
    invert : bool
        Flip the data's contrast so that the density comes out positive (default).
    window_r : float
        Soft real-space circular window: 1 inside ``window_r`` of the box radius, falling to
        0 at the edge (0 to switch off).
    scale : float, optional
        Normalisation to divide by (a trained model's); default: the RMS of the first 2,000
        images' coefficients.
    rotations : ndarray, shape (N, 3, 3), optional
        Poses to use instead of the table's (e.g. those of tilted partners).
    shifts_px : ndarray, shape (N, 2), optional
        Shifts to centre by instead of the table's.
    check : bool
        Check every image reference first (skip when the table was checked already).
    chunk_size : int
    progress : callable, optional

    Returns
    -------
    PreparedParticles
    """
    size = table.check_images() if check else table.box_size
    rotations = torch.from_numpy(table.rotations if rotations is None else rotations).float()
    shifts_px = table.shifts_px if shifts_px is None else shifts_px
    half = half_lattice_mask(size)
    images = torch.empty((table.n, int(half.sum())), dtype=torch.complex64)
    for indices, ft in _transforms(table, size, invert=invert, window_r=window_r, shifts_px=shifts_px,
                                   chunk_size=chunk_size):
        images[indices] = ft
        if progress is not None:
            progress(len(indices))
    if scale is None:
        scale = rms_scale(images)
    images /= scale
    coords = lattice(size, 2, normalized=False)[half]
    params = _ctf_params(table)
    ctf = None if params is None else torch.cat([ctf_at_pixels(params[i:i + chunk_size], coords, size)
                                                 for i in range(0, table.n, chunk_size)])
    return PreparedParticles(images, coords, rotations, ctf, scale, size, float(table.pixel_size_angstrom.mean()))


FLOAT16_LARGEST = 60000.0  # normalised coefficients up to this are stored in float16 (its largest is 65504)


@dataclass
class CompactParticles:
    """A run's particles in memory in 2.6 times fewer bytes: float16 transforms, the CTF as parameters.

    What training holds when the data are not read lazily (:func:`store_particles`). Reading
    particles (:meth:`subset`, :meth:`load`) makes them ready in single precision:
    :class:`PreparedParticles`, with their CTF evaluated at the half-lattice pixels. Per
    particle that is ``4 P + 36`` bytes held instead of ``12 P``: at 128 px 33 KB instead of
    77 KB (100,000 particles: 3.3 instead of 7.7 GB).

    The transforms are normalised to unit RMS before they are rounded, so float16's relative
    error (at most 2^-11, 0.05 %) is far below the noise of any cryo-EM image. A dataset
    with a coefficient beyond float16's range is stored in float32.

    Attributes
    ----------
    stored : Tensor, shape (N, P, 2), float16 (or float32)
        Real and imaginary parts of the centred transforms at the ``P`` half-lattice pixels,
        divided by ``scale``.
    coords : Tensor, shape (P, 2)
        ``(kx, ky)`` of those pixels in cycles per box.
    rotations : Tensor, shape (N, 3, 3)
    ctf_params : Tensor, shape (N, 9) or (N, 10), or None
        Rows of :meth:`cryofield.io.ParticleTable.ctf_array`.
    scale : float
    box : int
    pixel_size_angstrom : float
    tilted : CompactParticles or None
        The tilted partner of each particle, same order and scale.
    shifts_px : Tensor, shape (N, 2), optional
        Shifts (px, RELION's sign) by which the particles are centred when made ready (ab
        initio's current poses on images read uncentred); None: stored centred.
    """

    stored: torch.Tensor
    coords: torch.Tensor
    rotations: torch.Tensor
    ctf_params: torch.Tensor | None
    scale: float
    box: int
    pixel_size_angstrom: float
    tilted: CompactParticles | None = None
    shifts_px: torch.Tensor | None = None

    random_access = True  # any particles are read at the cost of the batch alone: no buffers

    def __len__(self) -> int:
        return len(self.stored)

    @property
    def n_pixels(self) -> int:
        """``P``, the half-lattice pixels per image."""
        return len(self.coords)

    @property
    def device(self) -> torch.device:
        """Where the particles are held."""
        return self.stored.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the per-particle tensors, tilted partners included."""
        held = sum(t.numel() * t.element_size() for t in (self.stored, self.rotations, self.ctf_params)
                   if t is not None)
        return held + (0 if self.tilted is None else self.tilted.nbytes)

    def subset(self, positions: torch.Tensor | np.ndarray) -> PreparedParticles:
        """The particles at ``positions`` (in that order), ready: complex64 transforms and their CTF."""
        positions = torch.as_tensor(positions, dtype=torch.long, device=self.device)
        params = None if self.ctf_params is None else self.ctf_params[positions]
        images = torch.view_as_complex(self.stored[positions].float())
        if self.shifts_px is not None:
            images = images * shift_phase_at(self.coords, self.shifts_px[positions].to(self.coords), self.box)
        return PreparedParticles(
            images, self.coords, self.rotations[positions],
            None if params is None else ctf_at_pixels(params, self.coords, self.box), self.scale, self.box,
            self.pixel_size_angstrom, None if self.tilted is None else self.tilted.subset(positions))

    @property
    def ready_nbytes(self) -> int:
        """Bytes :meth:`ready` would hold (complex64 transforms and float32 CTF), tilted partners included."""
        per_particle = self.n_pixels * (8 + (0 if self.ctf_params is None else 4)) + 36
        return len(self) * per_particle + (0 if self.tilted is None else self.tilted.ready_nbytes)

    def ready(self, chunk_size: int = 4096) -> PreparedParticles:
        """Every particle made ready (as :meth:`subset` of all of them), a chunk at a time, where they are held."""
        chunks = [self.subset(torch.arange(i, min(i + chunk_size, len(self)))) for i in range(0, len(self), chunk_size)]
        first = chunks[0]
        tilted = None if self.tilted is None else self.tilted.ready(chunk_size)
        return PreparedParticles(torch.cat([c.images for c in chunks]), self.coords, self.rotations,
                                 None if first.ctf is None else torch.cat([c.ctf for c in chunks]), self.scale,
                                 self.box, self.pixel_size_angstrom, tilted)

    def band_limited(self, radius_px: float | None) -> CompactParticles:
        """The particles at the pixels with ``|k| < radius_px`` only (cycles per box; all with None).

        As :meth:`PreparedParticles.band_limited`; the CTF follows the pixels kept.
        """
        if radius_px is None:
            return self
        keep = self.coords.norm(dim=1) < radius_px
        return CompactParticles(self.stored[:, keep.to(self.device)], self.coords[keep], self.rotations,
                                self.ctf_params, self.scale, self.box, self.pixel_size_angstrom,
                                None if self.tilted is None else self.tilted.band_limited(radius_px), self.shifts_px)

    def load(self, indices: np.ndarray) -> PreparedParticles:
        """The particles ``indices`` (any order), ready (a :class:`ParticleSource` method: :meth:`subset`)."""
        return self.subset(np.asarray(indices, dtype=np.int64))

    def to(self, device: torch.device) -> CompactParticles:
        """The particles on ``device`` (``self`` when they are there)."""
        if self.device == device:
            return self

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return CompactParticles(move(self.stored), move(self.coords), move(self.rotations), move(self.ctf_params),
                                self.scale, self.box, self.pixel_size_angstrom,
                                None if self.tilted is None else self.tilted.to(device), move(self.shifts_px))


def store_particles(table: ParticleTable, *, invert: bool = True, window_r: float = 0.85,
                    scale: float | None = None, rotations: np.ndarray | None = None,
                    shifts_px: np.ndarray | None = None, check: bool = True, chunk_size: int = 1024,
                    progress: Callable[[int], None] | None = None) -> CompactParticles:
    """Read every image of ``table`` and hold it compactly: :func:`prepare_particles` in float16.

    Parameters are those of :func:`prepare_particles`. The default normalisation is computed
    as there, from the first 2,000 images, before any image is rounded.

    Returns
    -------
    CompactParticles
    """
    size = table.check_images() if check else table.box_size
    rotations = table.rotations if rotations is None else rotations
    shifts_px = table.shifts_px if shifts_px is None else shifts_px
    options = {"invert": invert, "window_r": window_r, "chunk_size": chunk_size}
    if scale is None:
        scale = first_images_scale(table, invert=invert, window_r=window_r, rotations=rotations, shifts_px=shifts_px)
    half = half_lattice_mask(size)
    stored = torch.empty((table.n, int(half.sum()), 2), dtype=torch.float16)
    for indices, ft in _transforms(table, size, shifts_px=shifts_px, **options):
        ft = torch.view_as_real(ft / scale)
        if stored.dtype == torch.float16 and float(ft.abs().max()) > FLOAT16_LARGEST:
            stored = stored.float()  # beyond float16: the whole dataset in float32
        stored[indices] = ft.to(stored.dtype)
        if progress is not None:
            progress(len(indices))
    coords = lattice(size, 2, normalized=False)[half]
    return CompactParticles(stored, coords, torch.from_numpy(rotations).float(), _ctf_params(table), scale, size,
                            float(table.pixel_size_angstrom.mean()))


def encoder_input(images: torch.Tensor, ctf: torch.Tensor | None) -> torch.Tensor:
    """The VAE encoder's view of a batch: phase-flipped half-lattice coefficients, real and imaginary.

    Parameters
    ----------
    images : Tensor, shape (B, P), complex
    ctf : Tensor, shape (B, P) or None

    Returns
    -------
    Tensor, shape (B, 2P), float32
    """
    x = images if ctf is None else images * torch.sign(ctf)
    return torch.cat([x.real, x.imag], -1).float()


def rms_scale(images: torch.Tensor, n: int = 2000) -> float:
    """The normalisation of a dataset: RMS of the first ``n`` images' coefficients, (N, P) -> float."""
    return float(images[: min(len(images), n)].abs().pow(2).mean().sqrt())


def first_images_scale(table: ParticleTable, *, invert: bool, window_r: float, rotations: np.ndarray,
                       shifts_px: np.ndarray, n: int = 2000) -> float:
    """The default normalisation of ``table``: the RMS of its first ``n`` images' prepared coefficients.

    What :func:`prepare_particles` divides by when not given a scale, computed before the rest
    is read (for :func:`store_particles` and :class:`LazyParticles`). ``rotations`` (N, 3, 3)
    and ``shifts_px`` (N, 2) are every particle's.
    """
    first = np.arange(min(table.n, n))
    return rms_scale(prepare_particles(table.subset(first), invert=invert, window_r=window_r, scale=1.0,
                                       rotations=rotations[first], shifts_px=shifts_px[first], check=False).images)


_malloc_trim = None  # glibc's malloc_trim, once looked up (False where there is none)


def release_freed_memory() -> bool:
    """Return the heap's free memory to the kernel (glibc's ``malloc_trim(0)``; a no-op elsewhere).

    :meth:`LazyParticles.load` calls it before each read. Buffers of tens to hundreds of MB come
    and go, and the heap they leave is fragmented by the small results kept from each (latents,
    losses), so freed memory piled up with the number of buffers read: measured on `train-vae
    --lazy` at 100,000 x 64 px, the latents pass grew from 842 to 1,374 MB over 25 chunks without
    it and stayed at 900-980 MB with it. Takes milliseconds.

    Returns
    -------
    bool
        Whether any memory was released.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
            _malloc_trim.argtypes, _malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError, TypeError):
            _malloc_trim = False
    return bool(_malloc_trim and _malloc_trim(0))


class LazyParticles:
    """Particles prepared on demand from their stacks, for datasets larger than memory.

    Holds only the per-particle metadata; :meth:`load` reads, windows, transforms and
    centres the requested images (sorted indices read nearly sequentially). Training
    reads it through :func:`epoch_plan` buffers (:meth:`load_compact`), so peak memory does
    not grow with ``N``.

    Parameters
    ----------
    table : ParticleTable
        With rotations; shifts and CTF used where present.
    invert, window_r
        As in :func:`prepare_particles`.
    scale : float, optional
        Normalisation (default: from the first 2,000 images).
    rotations, shifts_px : ndarray, optional
        Poses overriding the table's.
    tilted : LazyParticles, optional
        The tilted partners, same order.
    """

    random_access = False  # reads go through buffers of sorted indices (epoch_plan)

    def __init__(self, table: ParticleTable, *, invert: bool = True, window_r: float = 0.85,
                 scale: float | None = None, rotations: np.ndarray | None = None,
                 shifts_px: np.ndarray | None = None, tilted: LazyParticles | None = None):
        self.table = table
        self.box = table.check_images()
        self.invert, self.window_r = invert, window_r
        self.rotations = table.rotations if rotations is None else rotations
        self.shifts_px = table.shifts_px if shifts_px is None else shifts_px
        self.tilted = tilted
        self.coords = lattice(self.box, 2, normalized=False)[half_lattice_mask(self.box)]
        self.pixel_size_angstrom = float(table.pixel_size_angstrom.mean())
        if scale is None:
            scale = first_images_scale(table, invert=invert, window_r=window_r, rotations=self.rotations,
                                       shifts_px=self.shifts_px)
        self.scale = scale
        if tilted is not None:
            tilted.scale = scale

    def __len__(self) -> int:
        return self.table.n

    @property
    def n_pixels(self) -> int:
        """``P``, the half-lattice pixels per image."""
        return len(self.coords)

    def _prepare(self, indices: np.ndarray, scale: float) -> PreparedParticles:
        data = prepare_particles(self.table.subset(indices), invert=self.invert, window_r=self.window_r,
                                 scale=scale, rotations=self.rotations[indices], shifts_px=self.shifts_px[indices],
                                 check=False)
        if self.tilted is not None:
            data.tilted = self.tilted.load(indices)
        return data

    def load(self, indices: np.ndarray) -> PreparedParticles:
        """The particles ``indices`` (sorted for sequential reads), prepared, in that order.

        The heap's free memory goes back to the kernel first (:func:`release_freed_memory`), so
        that what earlier reads left behind does not pile up.
        """
        release_freed_memory()
        return self._prepare(np.asarray(indices, dtype=np.int64), self.scale)

    def load_compact(self, indices: np.ndarray) -> CompactParticles:
        """The particles ``indices`` (sorted), read and held compactly: a training buffer.

        As :meth:`load`, but in a third of the bytes (:class:`CompactParticles`, as a run in
        memory holds them): batches are made ready from it by ``subset``. At 256 px a buffer
        of 8,192 images takes 0.9 GB instead of 3.2 GB.
        """
        release_freed_memory()
        indices = np.asarray(indices, dtype=np.int64)
        data = store_particles(self.table.subset(indices), invert=self.invert, window_r=self.window_r,
                               scale=self.scale, rotations=self.rotations[indices],
                               shifts_px=self.shifts_px[indices], check=False)
        if self.tilted is not None:
            data.tilted = self.tilted.load_compact(indices)
        return data


def epoch_plan(n: int, batch_size: int, generator: torch.Generator, *, buffer_size: int | None = None,
               chunk_size: int = 1024, rank: int = 0, world_size: int = 1) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """The order in which one epoch visits the particles: buffers of particles, and batches within each.

    Without ``buffer_size`` one buffer holds everything and the batches follow a uniform
    random permutation. With it (lazy loading), contiguous chunks of ``chunk_size``
    particles (at most ``buffer_size``) are taken in random order, ``buffer_size / chunk_size``
    chunks at a time, and shuffled within that buffer: reads stay sequential and memory
    stays bounded.

    Every process computes the same plan from the same generator state; with
    ``world_size > 1`` each global batch is split between the processes (rank ``r`` takes
    items ``r, r + world_size, ...``), so together they take the same steps as one process
    (global batches smaller than ``world_size`` are skipped).

    Parameters
    ----------
    n, batch_size : int
        Particles, and global batch size.
    generator : torch.Generator
        Advanced by this call.
    buffer_size, chunk_size : int, optional
    rank, world_size : int

    Returns
    -------
    list of (ndarray, list of ndarray)
        Per buffer: the sorted indices this process loads, and its batches (particle indices).
    """
    if buffer_size is None:
        buffers = [torch.randperm(n, generator=generator).numpy()]
    else:
        chunk_size = min(chunk_size, buffer_size)  # a buffer smaller than a chunk is one shorter chunk
        starts = np.arange(0, n, chunk_size)
        chunk_order = starts[torch.randperm(len(starts), generator=generator).numpy()]
        per_buffer = max(1, buffer_size // chunk_size)
        buffers = []
        for i in range(0, len(chunk_order), per_buffer):
            members = np.concatenate([np.arange(s, min(s + chunk_size, n)) for s in chunk_order[i:i + per_buffer]])
            buffers.append(members[torch.randperm(len(members), generator=generator).numpy()])
    plan = []
    for order in buffers:
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        batches = [b[rank::world_size] for b in batches if len(b) >= world_size]
        if batches:
            plan.append((np.sort(np.concatenate(batches)), batches))
    return plan
