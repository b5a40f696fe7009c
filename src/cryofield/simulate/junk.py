"""What makes simulated data look like a real dataset: junk, pose errors and micrographs.

A real particle stack from a consensus refinement holds 10-40 % junk (empty ice,
aggregates, another protein, broken particles), its poses are a few degrees off, and its
particles come in micrographs that share a defocus. :class:`Realism` says how much of each
the simulation writes; the truth file keeps the true values apart. (scipy is imported
where it is used: the command line reads :data:`JUNK_KINDS` from here without it.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The kinds of junk image, in the order of their codes in the truth file (``junk_kind``; 0 = a particle).
JUNK_KINDS = ("ice", "aggregate", "other", "broken")


@dataclass(frozen=True)
class Realism:
    """How far a simulated dataset departs from clean, perfectly posed particles.

    Attributes
    ----------
    junk_fraction : float
        Fraction of the images that are junk, in [0, 1).
    junk_kinds : tuple of str
        Which kinds of junk (:data:`JUNK_KINDS`), in equal shares.
    other_volume : ndarray, shape (D, D, D), optional
        The map of the "other protein" junk (default: a random compact blob of the
        particle's mass).
    pose_error_deg : float
        RMS angle of the error rotation applied to the written poses (the truth keeps the
        true ones).
    shift_error_px : float
        Standard deviation of the error added to each written shift coordinate, pixels.
    micrographs : int
        Group the particles into this many micrographs (one stack each, one defocus each
        with a per-particle height spread); 0 writes one stack.
    defocus_spread_angstrom : float
        Standard deviation of a particle's defocus about its micrograph's (ice thickness).
    float16 : bool
        Write the stacks as float16 (MRC mode 12), as cryoSPARC and Warp often do.
    """

    junk_fraction: float = 0.0
    junk_kinds: tuple[str, ...] = JUNK_KINDS
    other_volume: np.ndarray | None = None
    pose_error_deg: float = 0.0
    shift_error_px: float = 0.0
    micrographs: int = 0
    defocus_spread_angstrom: float = 100.0
    float16: bool = False

    def check(self) -> None:
        """Raise ValueError for values out of range."""
        if not 0 <= self.junk_fraction < 1:
            raise ValueError(f"the junk fraction must be in [0, 1), got {self.junk_fraction}")
        unknown = sorted(set(self.junk_kinds) - set(JUNK_KINDS))
        if unknown or not self.junk_kinds:
            raise ValueError(f"junk kinds are {', '.join(JUNK_KINDS)}; got {', '.join(self.junk_kinds) or 'none'}")
        if self.pose_error_deg < 0 or self.shift_error_px < 0 or self.defocus_spread_angstrom < 0:
            raise ValueError("pose and shift errors and the defocus spread must be >= 0")
        if self.micrographs < 0:
            raise ValueError(f"the number of micrographs must be >= 0, got {self.micrographs}")


def junk_volumes(reference: np.ndarray, kinds: tuple[str, ...], rng: np.random.Generator, *,
                 other: np.ndarray | None = None, variants: int = 3) -> tuple[list[np.ndarray], np.ndarray]:
    """Maps whose projections are junk images, and the kind code of each.

    Parameters
    ----------
    reference : ndarray, shape (D, D, D)
        The particle's map (positive density), from which aggregates and fragments are made.
    kinds : tuple of str
        From :data:`JUNK_KINDS`.
    rng : Generator
    other : ndarray, shape (D, D, D), optional
        Another protein's map; default a random compact blob of the reference's mass.
    variants : int
        Distinct maps per kind (one for empty ice).

    Returns
    -------
    maps : list of ndarray, each (D, D, D), float32
    kind : ndarray, shape (len(maps),), int
        1-based index into :data:`JUNK_KINDS` of each map.
    """
    maps, codes = [], []
    for kind in kinds:
        code = JUNK_KINDS.index(kind) + 1
        if kind == "ice":
            made = [np.zeros_like(reference)]
        elif kind == "aggregate":
            made = [_aggregate(reference, rng) for _ in range(variants)]
        elif kind == "other":
            made = [other] if other is not None else [_blob_protein(reference, rng) for _ in range(variants)]
        else:
            made = [_fragment(reference, rng) for _ in range(variants)]
        maps += [np.asarray(m, np.float32) for m in made]
        codes += [code] * len(made)
    return maps, np.asarray(codes, np.int64)


def _moved(volume: np.ndarray, rotation: np.ndarray, offset_px: np.ndarray) -> np.ndarray:
    """``volume`` rotated about its centre and moved by ``offset_px`` (z, y, x), linear interpolation."""
    from scipy import ndimage

    centre = (np.asarray(volume.shape) - 1) / 2
    # output voxel x samples the input at R^T (x - centre - offset) + centre
    start = centre - rotation.T @ (centre + offset_px)
    return ndimage.affine_transform(volume, rotation.T, offset=start, order=1, mode="constant", cval=0.0)


def _aggregate(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """3 to 5 copies of the particle in random orientations, touching, in one box."""
    from scipy.spatial.transform import Rotation

    size = reference.shape[0]
    total = np.zeros_like(reference, dtype=np.float64)
    for k in range(int(rng.integers(3, 6))):
        direction = rng.normal(size=3)
        offset = np.zeros(3) if k == 0 else direction / np.linalg.norm(direction) * rng.uniform(0.2, 0.35) * size
        total += _moved(reference, Rotation.random(random_state=rng).as_matrix(), offset)
    return total


def _fragment(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A broken particle: what lies on one side of a random plane near the centre, with a soft edge."""
    from scipy import ndimage

    size = reference.shape[0]
    grid = np.stack(np.meshgrid(*[np.arange(size) - (size - 1) / 2] * 3, indexing="ij"), -1)
    normal = rng.normal(size=3)
    normal /= np.linalg.norm(normal)
    keep = (grid @ normal) < rng.uniform(-0.05, 0.15) * size
    return reference * ndimage.gaussian_filter(keep.astype(np.float64), 1.0)


def _blob_protein(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another protein: a random walk of Gaussian blobs with the reference's mass and similar extent."""
    from scipy import ndimage

    size = reference.shape[0]
    mass = float(reference.sum()) or 1.0
    points = np.cumsum(rng.normal(scale=0.05 * size, size=(40, 3)), axis=0)
    points -= points.mean(0)
    blobs = np.zeros_like(reference, dtype=np.float64)
    index = np.clip(np.round(points + (size - 1) / 2).astype(int), 0, size - 1)
    np.add.at(blobs, tuple(index.T), 1.0)
    blobs = ndimage.gaussian_filter(blobs, 0.06 * size)
    return blobs * (mass / blobs.sum())


def perturb_rotations(rotations: np.ndarray, rms_deg: float, rng: np.random.Generator) -> np.ndarray:
    """``R E`` with ``E`` a random rotation of RMS angle ``rms_deg`` (isotropic axis), per particle.

    Parameters
    ----------
    rotations : ndarray, shape (N, 3, 3)
    rms_deg : float
        RMS angle of the error rotations, degrees.
    rng : Generator

    Returns
    -------
    ndarray, shape (N, 3, 3)
    """
    from scipy.spatial.transform import Rotation

    if rms_deg == 0:
        return rotations.copy()
    vectors = rng.normal(scale=np.deg2rad(rms_deg) / np.sqrt(3), size=(len(rotations), 3))
    return rotations @ Rotation.from_rotvec(vectors).as_matrix()


def micrograph_of(n: int, micrographs: int) -> np.ndarray:
    """Micrograph index of each of ``n`` particles: ``micrographs`` contiguous blocks of (nearly) equal size."""
    return np.repeat(np.arange(micrographs), [len(b) for b in np.array_split(np.arange(n), micrographs)])


def micrograph_ctf(per_micrograph: np.ndarray, micrograph: np.ndarray, spread_angstrom: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Each particle's CTF row: its micrograph's, with the defocus moved by its height in the ice.

    Parameters
    ----------
    per_micrograph : ndarray, shape (M, 9)
        CTF rows (``ParticleTable.ctf_array`` layout) of the micrographs.
    micrograph : ndarray, shape (N,), int
    spread_angstrom : float
        Standard deviation of the particle's defocus about its micrograph's.
    rng : Generator

    Returns
    -------
    ndarray, shape (N, 9)
    """
    rows = per_micrograph[micrograph].copy()
    height = rng.normal(scale=spread_angstrom, size=len(rows))
    rows[:, 2:4] = np.maximum(rows[:, 2:4] + height[:, None], 0.0)
    return rows
