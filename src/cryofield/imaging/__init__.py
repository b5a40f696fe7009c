"""The microscope's forward model: CTF, in-plane shifts, central slices and backprojection."""

from cryofield.imaging.ctf import compute_ctf, ctf_on_lattice, phase_flip
from cryofield.imaging.projection import (
                                         Backprojector,
                                         extract_slices,
                                         project,
                                         shift_phase,
                                         slice_coordinates,
                                         trilinear_apodization,
)

__all__ = ["Backprojector", "compute_ctf", "ctf_on_lattice", "extract_slices", "phase_flip", "project",
           "shift_phase", "slice_coordinates", "trilinear_apodization"]
