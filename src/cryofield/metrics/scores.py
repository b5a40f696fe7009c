"""Ground-truth scores for heterogeneous reconstruction (the seed's protocols)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from scipy import stats

from cryofield.metrics.fsc import fsc, resolution_at


def evaluation_images(coordinates: np.ndarray, n: int = 100, *, states: np.ndarray | None = None,
                      seed: int = 0) -> np.ndarray:
    """Images to score, as in the seed's section 4.4.7.

    Parameters
    ----------
    coordinates : ndarray, shape (N,) or (N, d)
        True coordinate of each particle (the first column is used).
    n : int
        How many images.
    states : ndarray, shape (N,), optional
        For discrete heterogeneity: draw ``n`` images spread over the states instead.
    seed : int

    Returns
    -------
    ndarray, shape (n,), int64
        Indices of images spaced evenly along the coordinate (or drawn per state).
    """
    if states is not None:
        rng = np.random.default_rng(seed)
        labels = np.unique(states)
        per = np.full(len(labels), n // len(labels))
        per[: n - per.sum()] += 1
        picks = [rng.choice(np.flatnonzero(states == s), size=min(k, (states == s).sum()), replace=False)
                 for s, k in zip(labels, per)]
        return np.sort(np.concatenate(picks)).astype(np.int64)
    coordinate = np.asarray(coordinates, float).reshape(len(coordinates), -1)[:, 0]
    order = np.argsort(coordinate, kind="stable")
    return order[np.linspace(0, len(order) - 1, n).round().astype(np.int64)]


def per_image_fsc(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Per-image FSC (no mask) of generated maps against their truth maps.

    Parameters
    ----------
    pairs : iterable of (Tensor, Tensor), each (D, D, D)
        ``(map generated for an image, that image's true map)``.

    Returns
    -------
    dict
        ``resolution_px_mean`` and ``resolution_px_std``: FSC = 0.5 resolution in pixels
        (2 is Nyquist); ``auc_mean``: mean area under the FSC curve over ``0 .. 0.5``
        cycles per pixel, normalised to 1.
    """
    resolutions, aucs = [], []
    for predicted, truth in pairs:
        freqs, curve = fsc(predicted, truth)
        resolutions.append(1 / max(resolution_at(freqs, curve, 0.5), 1e-9))
        aucs.append(float(np.trapezoid(curve, freqs) / freqs[-1]))
    return {"resolution_px_mean": float(np.mean(resolutions)), "resolution_px_std": float(np.std(resolutions)),
            "auc_mean": float(np.mean(aucs)), "n": len(resolutions)}


def latent_pc_spearman(latents: np.ndarray, coordinates: np.ndarray, n_pcs: int | None = None) -> np.ndarray:
    """|Spearman correlation| between latent principal components and true coordinates.

    Parameters
    ----------
    latents : ndarray, shape (N, z)
    coordinates : ndarray, shape (N,) or (N, d)
    n_pcs : int, optional
        Principal components to use (default ``min(z, d)``).

    Returns
    -------
    ndarray, shape (n_pcs, d)
        Entry ``(i, j)``: |rho| of PC ``i`` with coordinate ``j``.
    """
    z = np.asarray(latents, float)
    coords = np.asarray(coordinates, float).reshape(len(z), -1)
    centred = z - z.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    k = n_pcs or min(z.shape[1], coords.shape[1])
    pcs = centred @ vt[:k].T
    out = np.empty((k, coords.shape[1]))
    for i in range(k):
        for j in range(coords.shape[1]):
            out[i, j] = abs(stats.spearmanr(pcs[:, i], coords[:, j]).statistic)
    return out


def adjusted_rand_index(labels: np.ndarray, states: np.ndarray) -> float:
    """Adjusted Rand index of predicted labels against true states (1: identical partitions)."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(np.asarray(states), np.asarray(labels)))


def pose_error(rotations: np.ndarray, true_rotations: np.ndarray, shifts_px: np.ndarray | None = None,
               true_shifts_px: np.ndarray | None = None, *, align: bool = True) -> dict[str, float]:
    """Rotation (and shift) error of estimated poses against the truth, after one global rotation.

    A reconstruction is defined up to a rotation of its frame, ``R_est ~ R_true Q``; ``Q``
    is the least-squares rotation (the projection of ``mean(R_true^T R_est)`` onto SO(3)),
    or the identity when ``align`` is false (poses refined in the truth's frame).

    Parameters
    ----------
    rotations, true_rotations : ndarray, shape (N, 3, 3)
    shifts_px, true_shifts_px : ndarray, shape (N, 2), optional
        In pixels, RELION's sign.
    align : bool

    Returns
    -------
    dict
        ``rotation_deg_median``, ``rotation_deg_mean`` (geodesic angle, degrees) and, with
        shifts, ``shift_px_median`` and ``shift_px_mean`` (Euclidean, pixels).
    """
    est, true = np.asarray(rotations, float), np.asarray(true_rotations, float)
    q = np.eye(3)
    if align:
        u, _, vt = np.linalg.svd((true.transpose(0, 2, 1) @ est).mean(0))
        q = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
    relative = (true @ q).transpose(0, 2, 1) @ est
    cos = np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1, 1)
    angles = np.degrees(np.arccos(cos))
    out = {"rotation_deg_median": float(np.median(angles)), "rotation_deg_mean": float(angles.mean())}
    if shifts_px is not None and true_shifts_px is not None:
        distance = np.linalg.norm(np.asarray(shifts_px, float) - np.asarray(true_shifts_px, float), axis=1)
        out |= {"shift_px_median": float(np.median(distance)), "shift_px_mean": float(distance.mean())}
    return out
