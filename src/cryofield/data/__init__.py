"""Training data: particle images prepared once (windowed, transformed, centred, normalised)."""

from cryofield.data.dataset import PreparedParticles, encoder_input, prepare_particles

__all__ = ["PreparedParticles", "encoder_input", "prepare_particles"]
