"""Training data: particle images prepared (windowed, transformed, centred, normalised) in memory or lazily."""

from cryofield.data.dataset import (
    LazyParticles,
    ParticleSource,
    PreparedParticles,
    encoder_input,
    epoch_plan,
    prepare_particles,
    release_freed_memory,
    rms_scale,
)

__all__ = ["LazyParticles", "ParticleSource", "PreparedParticles", "encoder_input", "epoch_plan",
           "prepare_particles", "release_freed_memory", "rms_scale"]
