"""The microscope's forward model: CTF, and the operations on images it implies."""

from cryofield.imaging.ctf import compute_ctf, phase_flip

__all__ = ["compute_ctf", "phase_flip"]
