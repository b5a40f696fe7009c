"""Validation metrics: FSC and resolution, masks, B-factors, ground-truth scores, atomic-model RMSD."""

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
    junk_detection,
    latent_pc_spearman,
    per_image_fsc,
    pose_error,
    pose_error_frobenius,
)
from cryofield.metrics.structure import StructureComparison, compare_ca, kabsch

__all__ = [
    "StructureComparison", "VolumeAlignment", "adjusted_rand_index", "align_volumes", "apply_alignment",
    "apply_bfactor", "auto_mask", "compare_ca", "evaluation_images", "flip_hand", "fsc", "guinier_bfactor",
    "junk_detection", "kabsch", "latent_pc_spearman", "map_correlation", "normalized_mse", "per_image_fsc",
    "pose_error", "pose_error_frobenius", "radial_amplitude", "resolution_at", "rotate_volume",
]
