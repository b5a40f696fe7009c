"""Validation metrics: FSC between maps, and the resolution it implies."""

from cryofield.metrics.fsc import fsc, resolution_at

__all__ = ["fsc", "resolution_at"]
