"""Training data: particle images prepared (windowed, transformed, centred, normalised), in memory or lazily.

Tilt series are read as particles of several images (:class:`TiltSeriesParticles`).
"""

from cryofield.data.dataset import (
    CompactParticles,
    LazyParticles,
    PreparedParticles,
    encoder_input,
    epoch_plan,
    prepare_particles,
    release_freed_memory,
    rms_scale,
    store_particles,
)
from cryofield.data.tilt_series import TiltSeriesParticles

#: What training and inference read particles from: ``len``, ``n_pixels``, ``random_access``,
#: ``load(indices)``, and ``load_compact(indices)`` (a buffer with ``subset``) where not random access.
ParticleSource = PreparedParticles | CompactParticles | LazyParticles | TiltSeriesParticles

__all__ = ["CompactParticles", "LazyParticles", "ParticleSource", "PreparedParticles", "encoder_input",
           "epoch_plan", "prepare_particles", "release_freed_memory", "rms_scale", "store_particles",
           "TiltSeriesParticles"]
