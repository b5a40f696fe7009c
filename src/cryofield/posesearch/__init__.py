"""Pose search: hierarchical 5-D search over SO(3) x R^2 with frequency marching.

The model is rendered once on an oversampled Fourier lattice inside the band limit
(:func:`render_lattice`); every slice is interpolated from it, and all rotations of a batch
are scored against all translations with one matrix product per round (:class:`PoseSearch`).
"""

from cryofield.posesearch.bnb import BnbSettings, BranchAndBound
from cryofield.posesearch.hierarchical import PoseSearch, SearchResult, SearchSettings, TiltedViews
from cryofield.posesearch.lattice import ModelLattice, render_lattice

__all__ = ["BnbSettings", "BranchAndBound", "ModelLattice", "PoseSearch", "SearchResult", "SearchSettings",
           "TiltedViews", "render_lattice"]
