"""The microscope's forward model: CTF, in-plane shifts, central slices, predicted images, backprojection."""

from cryofield.imaging.ctf import compute_ctf, ctf_at_pixels, ctf_on_lattice, phase_flip
from cryofield.imaging.dose import critical_exposure, exposure_weights
from cryofield.imaging.forward import ImageFormation, central_slices, predict_images, slice_frequencies
from cryofield.imaging.model import (
    VolumeModel,
    evaluate_model,
    half_lattice_mask,
    render_slices,
    render_volume,
    render_volumes,
)
from cryofield.imaging.projection import (
                                         Backprojector,
                                         extract_slices,
                                         project,
                                         shift_phase,
                                         shift_phase_at,
                                         slice_coordinates,
                                         trilinear_apodization,
)

__all__ = [
    "Backprojector", "ImageFormation", "VolumeModel", "central_slices", "compute_ctf", "critical_exposure",
    "ctf_at_pixels", "ctf_on_lattice", "evaluate_model", "exposure_weights", "extract_slices", "half_lattice_mask",
    "phase_flip", "predict_images", "project", "render_slices", "render_volume", "render_volumes", "shift_phase",
    "shift_phase_at", "slice_coordinates", "slice_frequencies", "trilinear_apodization",
]
