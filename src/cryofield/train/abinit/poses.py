"""Every particle's pose during ab initio, and the images centred by it."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from cryofield.data import CompactParticles, PreparedParticles, encoder_input
from cryofield.imaging import predict_images, shift_phase_at
from cryofield.train.config import TrainConfig
from cryofield.train.models import Models
from cryofield.train.objective import encode
from cryofield.train.tables import is_mapped, mapped_tensor


@dataclass
class Poses:
    """Rotations (N, 3, 3) and shifts (N, 2) in pixels (RELION's sign) of every particle.

    For tilt pairs ``tilt_shifts_px`` (N, 2) are the tilted images' own shifts (their
    rotations follow from the untilted ones and the stage tilt).
    """

    rotations: torch.Tensor
    shifts_px: torch.Tensor
    tilt_shifts_px: torch.Tensor | None = None

    def subset(self, where: torch.Tensor) -> Poses:
        """The poses of particles ``where`` (indices on the CPU)."""
        return Poses(self.rotations[where], self.shifts_px[where],
                     None if self.tilt_shifts_px is None else self.tilt_shifts_px[where])

    def copy(self, mapped: bool = False) -> Poses:
        """A copy, in memory or (``mapped``) in files mapped into memory (:func:`.tables.mapped_tensor`)."""
        copy = mapped_tensor if mapped else torch.clone
        return Poses(copy(self.rotations), copy(self.shifts_px),
                     None if self.tilt_shifts_px is None else copy(self.tilt_shifts_px))

    @property
    def mapped(self) -> bool:
        """Whether the rotations and shifts live in mapped files."""
        return is_mapped(self.rotations) and is_mapped(self.shifts_px)

    def state(self) -> dict:
        """Plain tensors, for checkpoints."""
        state = {"rotations": self.rotations, "shifts_px": self.shifts_px}
        return state | ({} if self.tilt_shifts_px is None else {"tilt_shifts_px": self.tilt_shifts_px})

    @classmethod
    def from_state(cls, state: dict) -> Poses:
        """Inverse of :meth:`state`, on the CPU."""
        tilt = state.get("tilt_shifts_px")
        return cls(state["rotations"].cpu(), state["shifts_px"].cpu(), None if tilt is None else tilt.cpu())


def centred(raw: PreparedParticles, poses: Poses, tilt: torch.Tensor | None = None) -> PreparedParticles:
    """The particles centred by their shifts, with their rotations (uncentred input, unchanged).

    Tilted partners, if any, are centred by ``poses.tilt_shifts_px`` and get the rotations
    ``tilt @ R`` (``tilt``, (3, 3), the stage tilt).
    """
    images = raw.images * shift_phase_at(raw.coords, poses.shifts_px.to(raw.coords), raw.box)
    rotations = poses.rotations.float().to(images.device)
    tilted = None
    if raw.tilted is not None:
        other = raw.tilted
        tilted = PreparedParticles(other.images * shift_phase_at(other.coords, poses.tilt_shifts_px.to(other.coords),
                                                                 other.box),
                                   other.coords, tilt.to(rotations) @ rotations, other.ctf, other.scale, other.box,
                                   other.pixel_size_angstrom)
    return PreparedParticles(images, raw.coords, rotations, raw.ctf, raw.scale, raw.box, raw.pixel_size_angstrom,
                             tilted)


class CentredSource:
    """Particles read on demand and centred by their current poses: ab initio's training data.

    A :class:`~cryofield.data.ParticleSource` (``len``, ``n_pixels``, ``load``) over uncentred
    :class:`~cryofield.data.LazyParticles` or :class:`~cryofield.data.CompactParticles`:
    :meth:`load` reads the particles and applies :func:`centred` with their poses, so no
    centred image is held between reads.

    Parameters
    ----------
    raw : LazyParticles or CompactParticles
        Uncentred, identity rotations (:func:`cryofield.train.inputs.prepare` with ``posed=False``).
    poses : Poses
        On the CPU, one per particle.
    tilt : Tensor, shape (3, 3), optional
        The stage tilt, for tilt pairs.
    """

    def __init__(self, raw, poses: Poses, tilt: torch.Tensor | None = None):
        self.raw, self.poses, self.tilt = raw, poses, tilt

    @property
    def random_access(self) -> bool:
        """Whether any particles are read at the cost of the batch alone (no buffers)."""
        return self.raw.random_access

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def n_pixels(self) -> int:
        """``P``, the half-lattice pixels per image."""
        return self.raw.n_pixels

    def load(self, indices: np.ndarray) -> PreparedParticles:
        """The particles ``indices`` (sorted for sequential reads), centred, where ``raw`` holds them."""
        indices = np.asarray(indices, dtype=np.int64)
        return centred(self.raw.load(indices), self.poses.subset(torch.from_numpy(indices)), self.tilt)

    def load_compact(self, indices: np.ndarray) -> CompactParticles:
        """The particles ``indices`` (sorted) read lazily and held compactly, centred when made ready."""
        indices = np.asarray(indices, dtype=np.int64)
        data, poses = self.raw.load_compact(indices), self.poses.subset(torch.from_numpy(indices))
        rotations = poses.rotations.float().to(data.device)
        tilted = None
        if data.tilted is not None:
            tilted = replace(data.tilted, rotations=self.tilt.to(rotations) @ rotations,
                             shifts_px=poses.tilt_shifts_px.float())
        return replace(data, rotations=rotations, shifts_px=poses.shifts_px.float(), tilted=tilted)


class SubsetSource:
    """Some particles of a source, read through it: ``load(i)`` reads ``particle_indices[i]``.

    Training on it (:func:`cryofield.train.engine.run_epoch`) steps the per-particle tables'
    rows of ``particle_indices``, not of the positions in the subset.

    Parameters
    ----------
    source : ParticleSource
    particle_indices : ndarray, shape (M,), int
        Sorted, so that lazy reads stay in order.
    """

    def __init__(self, source, particle_indices: np.ndarray):
        self.source, self.particle_indices = source, np.asarray(particle_indices, dtype=np.int64)

    @property
    def random_access(self) -> bool:
        """Whether any particles are read at the cost of the batch alone (no buffers)."""
        return self.source.random_access

    def __len__(self) -> int:
        return len(self.particle_indices)

    @property
    def n_pixels(self) -> int:
        """``P``, the half-lattice pixels per image."""
        return self.source.n_pixels

    def load(self, positions: np.ndarray) -> PreparedParticles:
        """The particles at ``positions`` of the subset (sorted), prepared."""
        return self.source.load(self.particle_indices[np.asarray(positions, dtype=np.int64)])

    def load_compact(self, positions: np.ndarray) -> CompactParticles:
        """The particles at ``positions`` of the subset (sorted), read lazily and held compactly."""
        return self.source.load_compact(self.particle_indices[np.asarray(positions, dtype=np.int64)])


class IndexedParticles:
    """Particles held ready that are some of a run's: item ``i`` is particle ``particle_indices[i]``.

    What an online search trains on right after searching a chunk: training on it
    (:func:`cryofield.train.engine.run_epoch`) steps the per-particle tables' rows of the
    chunk's particles, not of its positions.

    Parameters
    ----------
    particles : PreparedParticles
    particle_indices : ndarray, shape (M,), int
    """

    random_access = True

    def __init__(self, particles: PreparedParticles, particle_indices: np.ndarray):
        self.particles, self.particle_indices = particles, np.asarray(particle_indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.particles)

    @property
    def n_pixels(self) -> int:
        """``P``, the half-lattice pixels per image."""
        return self.particles.n_pixels

    def load(self, positions: np.ndarray) -> PreparedParticles:
        """The particles at ``positions`` (any order)."""
        return self.particles.subset(torch.as_tensor(np.asarray(positions, dtype=np.int64),
                                                     device=self.particles.images.device))


def high_frequency_gradient(models: Models, batch: PreparedParticles, config: TrainConfig,
                            indices: torch.Tensor | None = None) -> float:
    """Norm of the gradient of the high-frequency loss (``|k| > D/4``) for the decoder's last layer.

    Heterogeneous models are evaluated at each image's posterior mean (a latent table's
    rows: ``indices`` (B,), the batch's particles).
    """
    high = batch.coords.norm(dim=-1) > batch.box / 4
    last = models.decoder.mlp.last
    z = None
    if models.encoder is not None:
        with torch.no_grad():
            z = encode(models, batch, indices)[0]
    models.decoder.zero_grad(set_to_none=True)
    predicted = predict_images(models.decoder, batch.coords[high], batch.rotations, batch.box, z=z,
                               ctf=None if batch.ctf is None else batch.ctf[:, high])
    (predicted - batch.images[:, high]).abs().pow(2).mean().backward()
    norm = float(torch.cat([p.grad.flatten() for p in last.parameters()]).norm())
    models.decoder.zero_grad(set_to_none=True)
    return norm


@torch.no_grad()
def learned_poses(models: Models, start: Poses, raw: PreparedParticles, batch_size: int = 512) -> Poses:
    """The baselines' current poses: the starts corrected (gd), or the pose encoder's means (pose-vae)."""
    if models.poses is not None:
        d_rotation, d_shift = models.poses.all()
        return Poses(start.rotations @ d_rotation.cpu(), start.shifts_px + d_shift.cpu())
    rotations = []
    for part in torch.arange(len(raw)).split(batch_size):
        batch = raw.subset(part.to(raw.images.device))
        rotations.append(models.pose_encoder(encoder_input(batch.images, batch.ctf))[0].cpu())
    return Poses(torch.cat(rotations), start.shifts_px.clone())
