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
        q = _nearest_rotation((true.transpose(0, 2, 1) @ est).mean(0))
    relative = (true @ q).transpose(0, 2, 1) @ est
    cos = np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1, 1)
    angles = np.degrees(np.arccos(cos))
    out = {"rotation_deg_median": float(np.median(angles)), "rotation_deg_mean": float(angles.mean())}
    if shifts_px is not None and true_shifts_px is not None:
        distance = np.linalg.norm(np.asarray(shifts_px, float) - np.asarray(true_shifts_px, float), axis=1)
        out |= {"shift_px_median": float(np.median(distance)), "shift_px_mean": float(distance.mean())}
    return out


#: The mirror that relates the poses of a map to those of its opposite hand: ``diag(1, 1, -1)``.
_FLIP_Z = np.diag([1.0, 1.0, -1.0])


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    """The rotation closest to ``m`` in the Frobenius norm (SVD, determinant forced to +1), (3, 3)."""
    u, _, vt = np.linalg.svd(m)
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0]) @ vt


def _refit_on_better_half(fit, residuals, n: int, iterations: int):
    """Fit on everything, then refit on the rows whose residual is at most the median until that set settles.

    ``fit(rows)`` returns a parameter from a boolean row mask (n,); ``residuals(param)`` the
    per-row errors (n,). Returns ``(param, errors)``: robust to a minority of outliers.
    """
    param = fit(np.ones(n, bool))
    errors = residuals(param)
    keep = None
    for _ in range(iterations):
        new = errors <= np.median(errors)
        if keep is not None and np.array_equal(new, keep):
            break
        keep = new
        param = fit(keep)
        errors = residuals(param)
    return param, errors


def _robust_frame(est: np.ndarray, ref: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """``Q`` minimising ``|R_est - R_ref Q|_F^2``: least squares, then refits on the better half."""
    cross = ref.transpose(0, 2, 1) @ est  # R_ref^T R_est, (N, 3, 3)
    return _refit_on_better_half(lambda rows: _nearest_rotation(cross[rows].sum(0)),
                                 lambda q: np.sum((est - ref @ q) ** 2, axis=(1, 2)), len(est), iterations)


def _robust_translation(difference: np.ndarray, rotations: np.ndarray,
                        iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """``t`` minimising ``|d_i - (R_i t)_xy|^2``: least squares, then refits on the better half."""
    design = rotations[:, :2, :]  # (N, 2, 3): t -> (R_i t)_xy
    return _refit_on_better_half(
        lambda rows: np.linalg.lstsq(design[rows].reshape(-1, 3), difference[rows].reshape(-1), rcond=None)[0],
        lambda t: np.sum((difference - design @ t) ** 2, axis=1), len(difference), iterations)


def pose_error_frobenius(rotations: np.ndarray, true_rotations: np.ndarray, shifts_px: np.ndarray | None = None,
                         true_shifts_px: np.ndarray | None = None, *, hand: str = "auto",
                         iterations: int = 10) -> dict:
    """Squared Frobenius rotation error and squared shift error after the best global alignment.

    The scores of the seed's tables 5.2 to 5.4: the mean and median over images of
    ``|R_i - R^_i|_F^2`` and of ``|t_i - t^_i|^2`` (pixels^2), where ``R^_i, t^_i`` are the
    true poses carried into the frame of the estimate.

    A reconstruction fixes its map only up to a rigid motion and, without prior knowledge,
    a mirror. With ``R`` mapping the volume frame to the image frame (see
    :mod:`cryofield.conventions`), a map ``V_est(x) = V(A x + b)`` (``A`` orthogonal, ``b``
    a 3D translation in pixels) reproduces every image with the poses

    - same hand (``det A = +1``): ``R_est = R Q`` with ``Q = A``;
    - opposite hand (``det A = -1``): ``R_est = F R A = (F R F) Q`` with ``F = diag(1, 1, -1)``
      and ``Q = F A`` a rotation; ``F`` mirrors the projection axis, and
      ``integral V(R^T F r) dz = integral V(R^T r) dz``. For
      :func:`cryofield.metrics.flip_hand` (``A = F``, ``b = 0``) the poses are ``F R F``;
    - both: shifts (RELION's sign) ``s_est = s - (R b)_xy``, i.e. ``s_est - s = (R t)_xy``
      with the unknown ``t = -b``.

    ``Q`` is found per hand: the least-squares rotation (the SVD projection of
    ``sum_i H R_i^T H R_est,i`` onto SO(3), ``H`` = ``I`` or ``F``), then refitted on the images
    whose error is at most the median, until that set stops changing (at most
    ``iterations`` times), so that a fraction of wrong poses does not pull the frame. The
    hand with the lower median rotation error wins. ``t`` is fitted the same way: least
    squares over all images, then refits on the better half.

    Parameters
    ----------
    rotations, true_rotations : ndarray, shape (N, 3, 3)
        Estimated and true ``R`` per image, in the same image order.
    shifts_px, true_shifts_px : ndarray, shape (N, 2), optional
        Estimated and true ``(x, y)`` shifts in pixels, RELION's sign.
    hand : {"auto", "same", "flipped"}
        Fix the hand instead of choosing the better one.
    iterations : int
        Robust refits after the least-squares fit (0: plain least squares).

    Returns
    -------
    dict
        ``rot_mean``, ``rot_median`` (squared Frobenius norm, in ``[0, 8]``; 6 on average
        for unrelated uniform rotations), ``hand`` (``"same"`` or ``"flipped"``), ``n``,
        ``frame_rotation`` (``Q``, (3, 3) ndarray), ``rot_errors`` ((N,) ndarray); with shifts
        also ``trans_mean``, ``trans_median`` (pixels^2), ``translation_px`` (``t``, (3,)
        ndarray, ``(x, y, z)``) and ``trans_errors`` ((N,) ndarray).
    """
    est = np.asarray(rotations, np.float64)
    true = np.asarray(true_rotations, np.float64)
    if est.ndim != 3 or est.shape[1:] != (3, 3) or est.shape != true.shape:
        raise ValueError(f"rotations {est.shape} and true rotations {true.shape} must both be (N, 3, 3)")
    if len(est) == 0:
        raise ValueError("no poses to compare")
    if hand not in ("auto", "same", "flipped"):
        raise ValueError(f"hand must be 'auto', 'same' or 'flipped', got {hand!r}")
    best = None
    for name in ("same", "flipped") if hand == "auto" else (hand,):
        ref = true if name == "same" else _FLIP_Z @ true @ _FLIP_Z
        q, errors = _robust_frame(est, ref, iterations)
        if best is None or np.median(errors) < np.median(best[2]):
            best = (name, q, errors)
    name, q, errors = best
    out = {"rot_mean": float(errors.mean()), "rot_median": float(np.median(errors)), "hand": name, "n": len(est),
           "frame_rotation": q, "rot_errors": errors}
    if shifts_px is not None and true_shifts_px is not None:
        shifts, true_shifts = np.asarray(shifts_px, np.float64), np.asarray(true_shifts_px, np.float64)
        if shifts.shape != (len(est), 2) or true_shifts.shape != (len(est), 2):
            raise ValueError(f"shifts {shifts.shape} and true shifts {true_shifts.shape} must be ({len(est)}, 2)")
        t, trans = _robust_translation(shifts - true_shifts, true, iterations)
        out |= {"trans_mean": float(trans.mean()), "trans_median": float(np.median(trans)), "translation_px": t,
                "trans_errors": trans}
    return out


def junk_detection(junk_kind: np.ndarray, kept: np.ndarray, kinds: tuple[str, ...] = ()) -> dict:
    """How well a selection removes junk: precision and recall of the images it leaves out.

    Parameters
    ----------
    junk_kind : ndarray, shape (N,), int
        0 for a particle, ``k > 0`` for junk of kind ``kinds[k - 1]`` (the simulation's truth).
    kept : ndarray, shape (N,), bool
        The images the selection keeps.
    kinds : tuple of str, optional
        Names of the junk kinds, for ``recall_by_kind``.

    Returns
    -------
    dict
        ``removed`` and ``junk`` (counts), ``precision`` (junk among the removed), ``recall``
        (junk removed among all junk), ``junk_kept_fraction`` (junk among the kept), each
        None where its denominator is 0, and ``recall_by_kind``.
    """
    junk_kind, kept = np.asarray(junk_kind), np.asarray(kept, bool)
    if junk_kind.shape != kept.shape:
        raise ValueError(f"{len(kept)} selection flags for {len(junk_kind)} images")
    junk, removed = junk_kind > 0, ~kept

    def ratio(a: np.ndarray, b: np.ndarray) -> float | None:
        return float(a.sum() / b.sum()) if b.any() else None

    by_kind = {(kinds[k - 1] if k <= len(kinds) else str(k)): ratio(removed & (junk_kind == k), junk_kind == k)
               for k in np.unique(junk_kind[junk]).tolist()}
    return {"removed": int(removed.sum()), "junk": int(junk.sum()), "precision": ratio(removed & junk, removed),
            "recall": ratio(removed & junk, junk), "junk_kept_fraction": ratio(kept & junk, kept),
            "recall_by_kind": by_kind}
