"""Tilt series as training reads them: one item per particle, its least damaged tilt images together.

A VAE over tilt series learns one latent per particle from several of its images
(cryoDRGN-ET, tomoDRGN). The images themselves are held as for single particles, one per
row of the table (:class:`~cryofield.data.CompactParticles` in memory,
:class:`~cryofield.data.LazyParticles` from the stacks); :class:`TiltSeriesParticles` puts
a particle-level index on top: particle ``i`` is the rows ``members[i]``, lowest exposure
first (:meth:`cryofield.io.TiltSeries.members`), and a batch of ``B`` particles is a
:class:`~cryofield.data.PreparedParticles` of their ``B x T`` images with a ``(B, T)`` mask.
Particles with fewer than ``T`` images are padded with copies of their first, masked out.
Everything that walks over a source (the epoch plan, shuffling buffers, distributed ranks,
inference in chunks) then walks over particles, with no change.
"""

from __future__ import annotations

import numpy as np
import torch

from cryofield.data.dataset import CompactParticles, LazyParticles, PreparedParticles


class TiltSeriesParticles:
    """Particles as tilt series: a :class:`ParticleSource` whose items are particles, each ``T`` images.

    Parameters
    ----------
    images : PreparedParticles, CompactParticles or LazyParticles
        Every tilt image, one per row of the table.
    members : ndarray, shape (P, T), int64
        Each particle's rows in ``images``, in the order the encoder reads them; ``-1``
        pads a particle with fewer than ``T`` (every particle has at least one).
    """

    def __init__(self, images: PreparedParticles | CompactParticles | LazyParticles, members: np.ndarray):
        members = np.asarray(members, dtype=np.int64)
        if members.ndim != 2 or not len(members) or members.shape[1] < 1:
            raise ValueError(f"members must be (particles, tilts) with at least one of each, not {members.shape}")
        if (members[:, 0] < 0).any():
            raise ValueError("every particle needs at least one image (members[:, 0] >= 0)")
        self.images = images
        self.members = members

    def __len__(self) -> int:
        return len(self.members)

    @property
    def ntilts(self) -> int:
        """``T``, the images per particle in a batch (padding included)."""
        return self.members.shape[1]

    @property
    def random_access(self) -> bool:
        """Whether any particles are read at the cost of the batch alone (not through buffers)."""
        return self.images.random_access

    @property
    def n_pixels(self) -> int:
        """``P``, the half-lattice pixels per image."""
        return self.images.n_pixels

    @property
    def coords(self) -> torch.Tensor:
        """``(kx, ky)`` (P, 2) of the half-lattice pixels, cycles per box."""
        return self.images.coords

    @property
    def box(self) -> int:
        """Image size ``D``, pixels."""
        return self.images.box

    @property
    def scale(self) -> float:
        """The normalisation divided out of the images."""
        return self.images.scale

    @property
    def pixel_size_angstrom(self) -> float:
        """Pixel size, A."""
        return self.images.pixel_size_angstrom

    @property
    def device(self) -> torch.device:
        """Where the images are held (sources in memory only)."""
        return self.images.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the images' tensors."""
        return self.images.nbytes

    @property
    def ready_nbytes(self) -> int:
        """Bytes the images would hold made ready (:meth:`CompactParticles.ready`)."""
        return self.images.ready_nbytes

    def ready(self) -> TiltSeriesParticles:
        """The same particles with every image made ready (compact images only)."""
        return TiltSeriesParticles(self.images.ready(), self.members)

    def to(self, device: torch.device) -> TiltSeriesParticles:
        """The particles with their images on ``device``."""
        moved = self.images.to(device)
        return self if moved is self.images else TiltSeriesParticles(moved, self.members)

    def rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The image rows (B T,) of particles ``positions`` (B,) and their mask (B, T); padding repeats the first."""
        chosen = self.members[np.asarray(positions, dtype=np.int64)]
        mask = chosen >= 0
        return np.where(mask, chosen, chosen[:, :1]).reshape(-1), mask

    def subset(self, positions: torch.Tensor | np.ndarray) -> PreparedParticles:
        """Particles ``positions`` (B,) ready: their ``B T`` images, particle by particle, with the mask."""
        positions = torch.as_tensor(positions).cpu().numpy()
        rows, mask = self.rows(positions)
        batch = self.images.subset(torch.from_numpy(rows)) if self.random_access else self.images.load(rows)
        batch.tilt_mask = torch.from_numpy(mask).to(batch.images.device)
        return batch

    def load(self, indices: np.ndarray) -> PreparedParticles:
        """Particles ``indices`` (B,), ready (a :class:`ParticleSource` method)."""
        return self.subset(np.asarray(indices, dtype=np.int64))

    def load_compact(self, indices: np.ndarray) -> TiltSeriesParticles:
        """Particles ``indices`` (sorted), their images read and held compactly: a training buffer.

        The buffer's particle ``k`` is particle ``indices[k]``; its images are read from the
        stacks once, in row order.
        """
        chosen = self.members[np.asarray(indices, dtype=np.int64)]
        needed = np.unique(chosen[chosen >= 0])
        local = np.where(chosen >= 0, np.searchsorted(needed, chosen), -1)
        return TiltSeriesParticles(self.images.load_compact(needed), local)
