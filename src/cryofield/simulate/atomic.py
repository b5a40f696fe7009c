"""Maps from atomic models, and conformational heterogeneity built from them.

Rendering follows the usual molmap recipe: each atom is a 3D Gaussian of standard
deviation ``0.225 * resolution`` (``1 / (pi sqrt 2)`` of it), weighted by its atomic number
(or 1 per residue for C-alpha models), summed and sampled on the grid without aliasing
(the sum's exact Fourier transform at the grid's frequencies), or at the voxel centres as
molmap samples it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cryofield.io import AtomicModel
from cryofield.io.atoms import electrons
from cryofield.metrics import kabsch

#: Gaussian standard deviation per unit of resolution (molmap's sigma factor)
SIGMA_PER_RESOLUTION = 1 / (math.pi * math.sqrt(2))


def atom_weights(model: AtomicModel, ca_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (M, 3) and weights (M,) of the atoms to render (C-alpha only: weight 1)."""
    if ca_only:
        sel = model.atom_name == "CA"
        return model.coords_angstrom[sel], np.ones(int(sel.sum()))
    return model.coords_angstrom, electrons(model)


#: how atoms become a map (:func:`render`)
RENDERINGS = ("band-limited", "molmap")


def render(coords_angstrom: np.ndarray, weights: np.ndarray, box: int, pixel_size_angstrom: float,
           resolution_angstrom: float, center_angstrom: np.ndarray | None = None,
           rendering: str = "band-limited") -> np.ndarray:
    """Render atoms as Gaussians on a ``box^3`` grid.

    ``"band-limited"`` (the default) samples the continuous sum of Gaussians without
    aliasing: below Nyquist, the map's discrete Fourier transform is the sum's exact
    transform at the grid's frequencies (``w exp(-2 pi^2 sigma^2 |k|^2 - 2 pi i k.x)``). The
    map is periodic in the box (an atom outside it wraps around), and in an even box each
    axis's Nyquist term is the real part of that transform, the one term that still
    depends on where an atom sits within its voxel. ``"molmap"`` samples each Gaussian at
    the voxel centres, as Chimera's molmap does (cut here at 3 sigma, where molmap cuts at
    5); a narrow atom (``sigma = 0.45`` px at 3 A and 1.5 A/px) is then aliased, and its
    density, even its sum, depends on where it sits within its voxel, which no continuous
    model of the density reproduces. (cryofield rendered this way before 2026-11-26.)

    Parameters
    ----------
    coords_angstrom : ndarray, shape (M, 3)
        ``(x, y, z)`` positions.
    weights : ndarray, shape (M,)
    box : int
    pixel_size_angstrom : float
    resolution_angstrom : float
        Sets the Gaussian width, ``sigma = 0.225 * resolution``.
    center_angstrom : ndarray, shape (3,), optional
        The point put at the box centre ``D//2`` (default: the weighted centroid).
    rendering : {"band-limited", "molmap"}

    Returns
    -------
    ndarray, shape (box, box, box), float32
        ``[z, y, x]``, positive density. Band-limited: summing to the sum of the weights,
        with slight rings below zero around narrow atoms.
    """
    if rendering not in RENDERINGS:
        raise ValueError(f"unknown rendering {rendering!r}: one of {', '.join(RENDERINGS)}")
    coords = torch.as_tensor(coords_angstrom, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64)
    center = (w[:, None] * coords).sum(0) / w.sum() if center_angstrom is None \
        else torch.as_tensor(center_angstrom, dtype=torch.float64)
    sigma = SIGMA_PER_RESOLUTION * resolution_angstrom / pixel_size_angstrom  # pixels
    position = (coords - center) / pixel_size_angstrom + box // 2  # (M, 3) fractional index, (x, y, z)
    render_as = _band_limited if rendering == "band-limited" else _sampled
    return render_as(position, w, sigma, box).reshape(box, box, box).numpy().astype(np.float32)


def _band_limited(position: torch.Tensor, w: torch.Tensor, sigma: float, box: int) -> torch.Tensor:
    k = torch.fft.fftfreq(box, dtype=torch.float64)  # cycles per pixel
    envelope = torch.exp(-2 * math.pi**2 * sigma**2 * k**2)
    volume = torch.zeros(box * box, box, dtype=torch.float64)
    for part in torch.split(torch.arange(len(w)), max(1, 2**24 // box**2)):  # bounded memory per chunk
        # per axis, the atom's band-limited profile along the grid: (atoms, box), summing to 1
        spectrum = envelope * torch.exp(-2j * math.pi * k * position[part, :, None])  # (m, 3, box)
        gx, gy, gz = torch.fft.ifft(spectrum, dim=-1).real.unbind(1)
        zy = ((w[part, None] * gz)[:, :, None] * gy[:, None, :]).reshape(len(part), box * box)
        volume += zy.T @ gx
    return volume


def _sampled(position: torch.Tensor, w: torch.Tensor, sigma: float, box: int) -> torch.Tensor:
    reach = int(math.ceil(3 * sigma))
    offsets = torch.arange(-reach, reach + 1)
    cells = position.round().long()[:, None, :] + offsets[None, :, None]  # (M, W, 3): candidate index per axis
    g = torch.exp(-((cells - position[:, None, :]) ** 2) / (2 * sigma**2))  # (M, W, 3)
    g = g * ((cells >= 0) & (cells < box)) / (math.sqrt(2 * math.pi) * sigma)  # each axis integrates to ~1
    values = w[:, None, None, None] * g[:, None, None, :, 0] * g[:, None, :, None, 1] * g[:, :, None, None, 2]
    cx, cy, cz = (cells[..., i].clamp(0, box - 1) for i in range(3))
    index = (cz[:, :, None, None] * box + cy[:, None, :, None]) * box + cx[:, None, None, :]
    volume = torch.zeros(box**3, dtype=torch.float64)
    volume.index_add_(0, index.reshape(-1), values.reshape(-1))
    return volume


def _atom_keys(model: AtomicModel) -> np.ndarray:
    return np.char.add(np.char.add(np.char.add(model.chain.astype(str), ":"),
                                   model.residue_number.astype(str)), np.char.add(":", model.atom_name))


def matched_atoms(a: AtomicModel, b: AtomicModel) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``a`` and ``b`` of the atoms both share (same chain, residue number, atom name)."""
    keys_a, keys_b = _atom_keys(a), _atom_keys(b)
    common, ia, ib = np.intersect1d(keys_a, keys_b, return_indices=True)
    if len(common) < 3:
        raise ValueError("the two models share fewer than 3 atoms (chain, residue number and atom name)")
    order = np.argsort(ia)
    return ia[order], ib[order]


def interpolation_trajectory(a: AtomicModel, b: AtomicModel, states: int) -> tuple[AtomicModel, np.ndarray]:
    """Coordinates interpolated from ``a`` to ``b`` (superposed on ``a`` by their C-alphas).

    Returns
    -------
    model : AtomicModel
        The shared atoms (in ``a``'s order) with ``a``'s coordinates.
    frames : ndarray, shape (states, M, 3)
        Coordinates at ``t = 0 .. 1`` in ``states`` steps.
    """
    ia, ib = matched_atoms(a, b)
    shared_a, shared_b = a.select(ia), b.select(ib)
    ca = shared_a.atom_name == "CA"
    if ca.sum() < 3:
        ca = np.ones(len(shared_a), bool)
    rot, trans = kabsch(shared_b.coords_angstrom[ca], shared_a.coords_angstrom[ca])
    fitted_b = shared_b.coords_angstrom @ rot.T + trans
    t = np.linspace(0, 1, states)[:, None, None]
    return shared_a, (1 - t) * shared_a.coords_angstrom + t * fitted_b


@dataclass(frozen=True)
class RigidMotion:
    """A rigid rotation of part of a model about an axis through two atoms (a bond).

    Attributes
    ----------
    moving : ndarray, shape (M,), bool
        Atoms that move.
    origin, direction : ndarray, shape (3,)
        A point on the axis (Angstrom) and its unit direction.
    """

    moving: np.ndarray
    origin: np.ndarray
    direction: np.ndarray

    def apply(self, coords: np.ndarray, angle_deg: float) -> np.ndarray:
        """Coordinates (M, 3) with the moving part turned by ``angle_deg`` about the axis."""
        t = math.radians(angle_deg)
        k = self.direction
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rot = np.eye(3) + math.sin(t) * kx + (1 - math.cos(t)) * (kx @ kx)
        out = coords.copy()
        out[self.moving] = (coords[self.moving] - self.origin) @ rot.T + self.origin
        return out


def parse_selection(model: AtomicModel, text: str) -> np.ndarray:
    """Atoms selected by ``"A"``, ``"A:120-160"``, ``"A:5"`` or comma-separated lists of those."""
    mask = np.zeros(len(model), bool)
    for part in text.split(","):
        part = part.strip()
        chain, _, residues = part.partition(":")
        sel = model.chain == chain
        if residues:
            low, _, high = residues.partition("-")
            sel &= (model.residue_number >= int(low)) & (model.residue_number <= int(high or low))
        if not sel.any():
            raise ValueError(f"selection {part!r} matches no atom")
        mask |= sel
    return mask


def parse_atom(model: AtomicModel, text: str) -> np.ndarray:
    """Position of the atom ``"CHAIN:RESNUM:NAME"`` (e.g. ``"A:122:CA"``), shape (3,)."""
    try:
        chain, number, name = text.split(":")
        sel = (model.chain == chain) & (model.residue_number == int(number)) & (model.atom_name == name)
    except ValueError:
        raise ValueError(f"atom {text!r} is not CHAIN:RESNUM:NAME") from None
    if sel.sum() != 1:
        raise ValueError(f"atom {text!r} matches {int(sel.sum())} atoms, not 1")
    return model.coords_angstrom[np.argmax(sel)]


def rigid_motion(model: AtomicModel, part: str, bond: str) -> RigidMotion:
    """A :class:`RigidMotion` of the atoms ``part`` about the bond ``"A:118:CA,A:121:CA"``."""
    atoms = bond.split(",")
    if len(atoms) != 2:
        raise ValueError(f"axis {bond!r} must name two atoms, CHAIN:RESNUM:NAME,CHAIN:RESNUM:NAME")
    p1, p2 = parse_atom(model, atoms[0]), parse_atom(model, atoms[1])
    direction = p2 - p1
    if np.linalg.norm(direction) < 1e-6:
        raise ValueError(f"axis {bond!r}: the two atoms coincide")
    return RigidMotion(parse_selection(model, part), p1, direction / np.linalg.norm(direction))


def population(states: int, n: int, rng: np.random.Generator, *, kind: str = "uniform",
               means: list[float] | None = None, widths: list[float] | None = None,
               counts: list[int] | None = None) -> np.ndarray:
    """State of each of ``n`` particles.

    Parameters
    ----------
    states : int
    n : int
    rng : numpy Generator
    kind : {"uniform", "gaussian", "counts"}
        Uniform over states; a Gaussian mixture along the coordinate ``0 .. states - 1``
        (``means`` and ``widths`` in state units, equal weights; draws binned to the nearest
        state and clipped to the ends); or explicit ``counts`` per state.

    Returns
    -------
    ndarray, shape (n,), int64
    """
    if kind == "counts":
        if counts is None or len(counts) != states:
            raise ValueError(f"counts: {states} numbers needed, one per state")
        return rng.permutation(np.repeat(np.arange(states), counts)).astype(np.int64)
    if kind == "gaussian":
        if not means or not widths or len(means) != len(widths):
            raise ValueError("gaussian population: give as many --means as --widths")
        component = rng.integers(0, len(means), n)
        draws = rng.normal(np.asarray(means)[component], np.asarray(widths)[component])
        return np.clip(np.round(draws), 0, states - 1).astype(np.int64)
    return rng.integers(0, states, n).astype(np.int64)
