"""Validation metrics: FSC and resolution, masks, B-factors, and ground-truth scores."""

from cryofield.metrics.align import VolumeAlignment, align_volumes, apply_alignment, map_correlation, rotate_volume
from cryofield.metrics.fsc import fsc, resolution_at
from cryofield.metrics.maps import (
    apply_bfactor,
    auto_mask,
    flip_hand,
    guinier_bfactor,
    normalized_mse,
    radial_amplitude,
)
from cryofield.metrics.scores import (
    adjusted_rand_index,
    evaluation_images,
    latent_pc_spearman,
    per_image_fsc,
    pose_error,
    pose_error_frobenius,
)

__all__ = [
    "VolumeAlignment", "adjusted_rand_index", "align_volumes", "apply_alignment", "apply_bfactor", "auto_mask",
    "evaluation_images", "flip_hand", "fsc", "guinier_bfactor", "latent_pc_spearman", "map_correlation",
    "normalized_mse", "per_image_fsc", "pose_error", "pose_error_frobenius", "radial_amplitude", "resolution_at",
    "rotate_volume",
]
