"""Atomic models (PDB and mmCIF) read through gemmi into flat arrays, and their coarse-grained form.

The coarse-grained form is Cryofold's (the seed's section 7.3.1): two pseudo-atoms per
residue, the backbone one at the C-alpha and the side-chain one at the centre of mass of
the side chain's heavy atoms (none for glycine), each weighted by the electrons of its
fragment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io._atomic import save_text

#: electrons per element (atomic numbers; other elements count as carbon)
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "P": 15, "S": 16, "SE": 34, "MG": 12, "ZN": 30, "FE": 26,
                 "CA": 20, "NA": 11, "CL": 17, "K": 19, "MN": 25}
#: atoms of the backbone fragment of an amino acid
BACKBONE_ATOMS = frozenset({"N", "CA", "C", "O", "OXT"})


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
    structure.remove_alternative_conformations()  # the first conformer only: no atom counted twice
    if len(structure) == 0:
        raise InputError(path, "no models")
    try:  # gemmi reads what it can; names that are not text or residues without a number end here
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
    except (UnicodeDecodeError, TypeError) as exc:
        raise InputError(path, f"malformed atom records ({exc})") from None


def electrons(model: AtomicModel) -> np.ndarray:
    """Electrons (atomic number) of every atom, (N,) float64."""
    return np.array([ATOMIC_NUMBER.get(e.upper(), 6) for e in model.element], float)


@dataclass(frozen=True)
class CoarseModel:
    """Two pseudo-atoms per residue: ``M`` centres, backbone ones first in residue order.

    Attributes
    ----------
    centres_angstrom : ndarray, shape (M, 3)
        The ``R`` C-alphas, then the ``S`` side-chain centres of mass (``M = R + S``).
    electrons : ndarray, shape (M,)
        Electrons of each fragment (backbone N, CA, C, O; the rest of the residue).
    residue : ndarray, shape (M,), int
        The residue (0..R-1) each centre belongs to.
    residue_name, chain : ndarray, shape (R,), str
    residue_number : ndarray, shape (R,), int
    bonds : ndarray, shape (B, 2), int
        Consecutive backbone centres of the same chain that are bonded in the reference
        (C-alphas within 4.2 A: chain breaks get no bond).
    side_pairs : ndarray, shape (S, 2), int
        ``(backbone centre, side-chain centre)`` of each residue that has a side chain.
    side_reach_angstrom : float
        The longest C-alpha to side-chain distance in the reference.
    """

    centres_angstrom: np.ndarray
    electrons: np.ndarray
    residue: np.ndarray
    residue_name: np.ndarray
    residue_number: np.ndarray
    chain: np.ndarray
    bonds: np.ndarray
    side_pairs: np.ndarray
    side_reach_angstrom: float

    @property
    def n_residues(self) -> int:
        """``R``."""
        return len(self.residue_name)

    def without_side_chains(self) -> CoarseModel:
        """One centre per residue (the C-alpha), carrying the electrons of the whole residue."""
        weights = np.bincount(self.residue, weights=self.electrons, minlength=self.n_residues)
        r = self.n_residues
        return CoarseModel(self.centres_angstrom[:r], weights, self.residue[:r], self.residue_name,
                           self.residue_number, self.chain, self.bonds, np.zeros((0, 2), np.int64), 0.0)


#: a C-alpha to C-alpha distance above which consecutive residues are not bonded (a chain break), A
_BREAK_ANGSTROM = 4.2


def coarse_grain(model: AtomicModel) -> CoarseModel:
    """The coarse-grained model of the amino acids of ``model``.

    Residues count when their name is an amino acid in gemmi's table (modified ones such as
    MSE included) and they have a C-alpha; ligands, ions, nucleotides and waters are left out.
    Residues are told apart by chain and number (insertion codes are not read).

    Raises
    ------
    ValueError
        If the model has no amino acid with a C-alpha.
    """
    import gemmi

    names = np.unique(model.residue_name)
    amino = {str(n) for n in names if (info := gemmi.find_tabulated_residue(str(n))) is not None
             and info.is_amino_acid()}
    model = model.select(np.isin(model.residue_name, list(amino)))
    keys = np.char.add(np.char.add(model.chain.astype(str), ":"), model.residue_number.astype(str))
    # residues in file order: the first atom of each (chain, number)
    _, first = np.unique(keys, return_index=True)
    order = np.sort(first)
    residue_keys = keys[order]
    index_of = {key: i for i, key in enumerate(residue_keys)}
    owner = np.array([index_of[key] for key in keys])
    weight = electrons(model)
    is_ca = model.atom_name == "CA"
    backbone = np.isin(model.atom_name, list(BACKBONE_ATOMS))
    has_ca = np.zeros(len(residue_keys), bool)
    has_ca[owner[is_ca]] = True
    if not has_ca.any():
        raise ValueError("no amino acid with a C-alpha atom")
    keep = np.flatnonzero(has_ca)
    renumber = -np.ones(len(residue_keys), np.int64)
    renumber[keep] = np.arange(len(keep))
    r = len(keep)
    ca = np.zeros((r, 3))
    ca_rows = np.flatnonzero(is_ca)
    ca[renumber[owner[ca_rows]]] = model.coords_angstrom[ca_rows]  # the last CA if a residue has alt. locations
    backbone_e = np.bincount(renumber[owner[backbone & (renumber[owner] >= 0)]],
                             weights=weight[backbone & (renumber[owner] >= 0)], minlength=r)
    side = ~backbone & (renumber[owner] >= 0)
    side_res = renumber[owner[side]]
    side_e = np.bincount(side_res, weights=weight[side], minlength=r)
    side_moment = np.stack([np.bincount(side_res, weights=weight[side] * model.coords_angstrom[side, i], minlength=r)
                            for i in range(3)], -1)
    with_side = np.flatnonzero(side_e > 0)
    side_centres = side_moment[with_side] / side_e[with_side, None]
    centres = np.concatenate([ca, side_centres])
    residue = np.concatenate([np.arange(r), with_side])
    chain = model.chain[order[keep]]
    same_chain = chain[1:] == chain[:-1]
    close = np.linalg.norm(ca[1:] - ca[:-1], axis=-1) < _BREAK_ANGSTROM
    linked = np.flatnonzero(same_chain & close)
    bonds = np.stack([linked, linked + 1], -1).astype(np.int64)
    side_pairs = np.stack([with_side, r + np.arange(len(with_side))], -1).astype(np.int64)
    reach = float(np.linalg.norm(side_centres - ca[with_side], axis=-1).max()) if len(with_side) else 0.0
    return CoarseModel(centres, np.concatenate([backbone_e, side_e[with_side]]), residue,
                       model.residue_name[order[keep]], model.residue_number[order[keep]], chain, bonds,
                       side_pairs.reshape(-1, 2), reach)


def write_coarse_pdb(path: str | os.PathLike, coarse: CoarseModel, frames: np.ndarray) -> None:
    """Write coarse-grained structures as PDB models (one per frame) that ChimeraX and PyMOL open.

    Backbone centres are atoms ``CA`` (carbon) and side-chain centres ``CEN`` (pseudo-atoms
    written as carbon), with the reference's residue names, numbers and chains.

    Parameters
    ----------
    path : str or PathLike
    coarse : CoarseModel
    frames : ndarray, shape (F, M, 3) or (M, 3)
        Centres in Angstrom.
    """
    import gemmi

    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    structure = gemmi.Structure()
    for f, centres in enumerate(frames, start=1):
        model = gemmi.Model(str(f))
        chains: dict[str, gemmi.Chain] = {}
        for i in range(coarse.n_residues):
            name = str(coarse.chain[i])
            if name not in chains:
                chains[name] = gemmi.Chain(name)
            residue = gemmi.Residue()
            residue.name = str(coarse.residue_name[i])
            residue.seqid = gemmi.SeqId(int(coarse.residue_number[i]), " ")
            sides = coarse.side_pairs[coarse.side_pairs[:, 0] == i, 1]
            for j, atom_name in ((i, "CA"), *((int(k), "CEN") for k in sides)):
                atom = gemmi.Atom()
                atom.name = atom_name
                atom.element = gemmi.Element("C")
                atom.pos = gemmi.Position(*centres[j])
                atom.occ = 1.0
                residue.add_atom(atom)
            chains[name].add_residue(residue)
        for chain in chains.values():
            model.add_chain(chain)
        structure.add_model(model)
    options = gemmi.PdbWriteOptions(minimal=True)
    options.cryst1_record = False  # no unit cell: a model, not a crystal
    save_text(path, structure.make_pdb_string(options))
