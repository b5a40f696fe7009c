"""Training data: particle images prepared (windowed, transformed, centred, normalised), in memory or lazily."""

from cryofield.data.dataset import (
    CompactParticles,
    LazyParticles,
    ParticleSource,
    PreparedParticles,
    encoder_input,
    epoch_plan,
    prepare_particles,
    release_freed_memory,
    rms_scale,
    store_particles,
)

__all__ = ["CompactParticles", "LazyParticles", "ParticleSource", "PreparedParticles", "encoder_input",
           "epoch_plan", "prepare_particles", "release_freed_memory", "rms_scale", "store_particles"]
