"""Particle selections as boolean masks over a run's particles: clusters, outliers, regions, random splits.

Masks combine with ``&``, ``|`` and ``~``; :func:`mask_to_rows` turns one into the input-file
indices that ``cryofield select`` exports.
"""

from __future__ import annotations

import numpy as np


def cluster_mask(labels: np.ndarray, clusters: list[int] | np.ndarray) -> np.ndarray:
    """Particles (N,) whose label (N,) is one of ``clusters``."""
    return np.isin(np.asarray(labels), np.asarray(clusters))


def norm_outliers(z: np.ndarray, *, above: float | None = None, sigma: float | None = None) -> np.ndarray:
    """Particles (N,) whose ``|z|`` is above a value, or more than ``sigma`` robust SDs above the median.

    The robust SD is 1.4826 x the median absolute deviation of ``|z|``.
    """
    norm = np.linalg.norm(np.asarray(z, float), axis=1)
    if (above is None) == (sigma is None):
        raise ValueError("give one of above or sigma")
    if above is None:
        median = np.median(norm)
        above = median + sigma * 1.4826 * np.median(np.abs(norm - median))
    return norm > above


def range_mask(values: np.ndarray, low: float = -np.inf, high: float = np.inf) -> np.ndarray:
    """Particles (N,) with ``low <= value <= high`` (a threshold on a 1-D latent or one PC)."""
    values = np.asarray(values, float)
    return (values >= low) & (values <= high)


def polygon_mask(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Particles (N,) whose 2-D coordinates (N, 2) lie inside a polygon (V, 2) (closed automatically)."""
    from matplotlib.path import Path

    polygon = np.asarray(polygon, float)
    if polygon.ndim != 2 or polygon.shape[1] != 2 or len(polygon) < 3:
        raise ValueError("a polygon needs at least 3 (x, y) vertices")
    return Path(polygon).contains_points(np.asarray(points, float)[:, :2])


def random_mask(n: int, fraction: float, seed: int = 0) -> np.ndarray:
    """A random ``fraction`` of ``n`` particles (exactly ``round(fraction * n)``), repeatable by ``seed``."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction {fraction} not in [0, 1]")
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(seed).choice(n, int(round(fraction * n)), replace=False)] = True
    return mask


def mask_to_rows(mask: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Input-file indices (sorted) of the selected particles; ``rows`` (N,) maps latents to the input file."""
    chosen = np.flatnonzero(mask)
    return chosen if rows is None else np.asarray(rows)[chosen]


def match_clusters(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Match the cluster labels of two runs on the same particles, as in the seed's figure 4-14.

    Parameters
    ----------
    a, b : ndarray, shape (N,), int
        Labels from run A and run B.

    Returns
    -------
    mapping : ndarray, shape (Ka,), int
        The B cluster matched to each A cluster (Hungarian assignment maximising the
        particles they share; -1 where A has more clusters than B).
    agreement : float
        Fraction of particles whose A cluster is matched to their B cluster.
    confusion : ndarray, shape (Ka, Kb), int
        Particles in each (A cluster, B cluster) pair, B's columns in matched order first.
    """
    from scipy.optimize import linear_sum_assignment

    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if a.shape != b.shape:
        raise ValueError(f"{len(a)} and {len(b)} labels: the runs must cover the same particles")
    ka, kb = a.max() + 1, b.max() + 1
    confusion = np.zeros((ka, kb), np.int64)
    np.add.at(confusion, (a, b), 1)
    row, col = linear_sum_assignment(-confusion)
    mapping = np.full(ka, -1, np.int64)
    mapping[row] = col
    agreement = confusion[row, col].sum() / len(a)
    order = np.concatenate([col[np.argsort(row)], np.setdiff1d(np.arange(kb), col)])
    return mapping, float(agreement), confusion[:, order]
