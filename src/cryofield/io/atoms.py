"""Atomic models (PDB and mmCIF) read through gemmi into flat arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryofield.errors import InputError


@dataclass(frozen=True)
class AtomicModel:
    """The atoms of the first model of a structure, one row per atom.

    Attributes
    ----------
    coords_angstrom : ndarray, shape (N, 3), float64
        ``(x, y, z)`` in Angstrom.
    element : ndarray, shape (N,), str
        Element symbol (``"C"``, ``"N"``, ...).
    atom_name : ndarray, shape (N,), str
        ``"CA"``, ``"CB"``, ...
    residue_name : ndarray, shape (N,), str
    residue_number : ndarray, shape (N,), int64
    chain : ndarray, shape (N,), str
    b_factor : ndarray, shape (N,), float64
    """

    coords_angstrom: np.ndarray
    element: np.ndarray
    atom_name: np.ndarray
    residue_name: np.ndarray
    residue_number: np.ndarray
    chain: np.ndarray
    b_factor: np.ndarray

    def __len__(self) -> int:
        return len(self.coords_angstrom)

    def select(self, mask: np.ndarray) -> AtomicModel:
        """The atoms where ``mask`` (N,) is true."""
        return AtomicModel(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def read_atomic_model(path: str | os.PathLike, *, remove_water: bool = True,
                      remove_hydrogens: bool = True) -> AtomicModel:
    """Read the first model of a PDB or mmCIF file.

    Parameters
    ----------
    path : str or PathLike
        ``.pdb``, ``.ent``, ``.cif`` or ``.mmcif`` (optionally gzipped).
    remove_water, remove_hydrogens : bool
        Drop waters and hydrogens (default: both).

    Returns
    -------
    AtomicModel

    Raises
    ------
    InputError
        Missing or unreadable file, or a structure without atoms.
    """
    import gemmi

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        structure = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError) as exc:
        raise InputError(path, f"not a readable PDB/mmCIF file ({exc})") from None
    if remove_water:
        structure.remove_waters()
    if remove_hydrogens:
        structure.remove_hydrogens()
    if len(structure) == 0:
        raise InputError(path, "no models")
    rows = [(atom.pos.x, atom.pos.y, atom.pos.z, atom.element.name, atom.name, residue.name,
             residue.seqid.num, chain.name, atom.b_iso)
            for chain in structure[0] for residue in chain for atom in residue]
    if not rows:
        raise InputError(path, "no atoms")
    columns = list(zip(*rows))
    return AtomicModel(
        coords_angstrom=np.array(columns[:3], dtype=np.float64).T,
        element=np.array(columns[3], dtype=str), atom_name=np.array(columns[4], dtype=str),
        residue_name=np.array(columns[5], dtype=str), residue_number=np.array(columns[6], dtype=np.int64),
        chain=np.array(columns[7], dtype=str), b_factor=np.array(columns[8], dtype=np.float64))
