"""Atomic-model comparison: least-squares superposition and C-alpha RMSD."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryofield.io import AtomicModel


def kabsch(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation that superpose ``moving`` (N, 3) onto ``fixed`` (N, 3).

    Returns
    -------
    rotation : ndarray, shape (3, 3)
    translation : ndarray, shape (3,)
        ``moving @ rotation.T + translation`` is the least-squares fit to ``fixed``.
    """
    mc, fc = moving.mean(0), fixed.mean(0)
    u, _, vt = np.linalg.svd((moving - mc).T @ (fixed - fc))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1, 1, d]) @ u.T
    return rotation, fc - mc @ rotation.T


@dataclass(frozen=True)
class StructureComparison:
    """C-alpha agreement of two models after optimal superposition.

    Attributes
    ----------
    rmsd_angstrom : float
        Root-mean-square distance of the matched C-alphas, A.
    within_3a : float
        Fraction of matched C-alphas within 3 A.
    n_matched : int
        C-alphas present in both (same chain and residue number).
    """

    rmsd_angstrom: float
    within_3a: float
    n_matched: int


def ca_coordinates(model: AtomicModel) -> dict[tuple[str, int], np.ndarray]:
    """The C-alpha of every residue, keyed by ``(chain, residue number)``."""
    rows = np.flatnonzero(model.atom_name == "CA")
    return {(str(model.chain[i]), int(model.residue_number[i])): model.coords_angstrom[i] for i in rows}


def compare_ca(a: AtomicModel, b: AtomicModel, *, superpose: bool = True) -> StructureComparison:
    """C-alpha RMSD and the fraction within 3 A between two models, after superposing ``b`` on ``a``.

    Parameters
    ----------
    a, b : AtomicModel
        Matched by chain and residue number.
    superpose : bool
        Least-squares superposition first (default); without it the models' own frames.

    Raises
    ------
    ValueError
        If they share fewer than 3 C-alphas.
    """
    ca_a, ca_b = ca_coordinates(a), ca_coordinates(b)
    keys = [key for key in ca_a if key in ca_b]
    if len(keys) < 3:
        raise ValueError(f"the models share {len(keys)} C-alpha atoms (same chain and residue number); need 3")
    fixed = np.array([ca_a[k] for k in keys])
    moving = np.array([ca_b[k] for k in keys])
    if superpose:
        rotation, translation = kabsch(moving, fixed)
        moving = moving @ rotation.T + translation
    distance = np.linalg.norm(moving - fixed, axis=-1)
    return StructureComparison(float(np.sqrt(np.mean(distance**2))), float(np.mean(distance < 3.0)), len(keys))
