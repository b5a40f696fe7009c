"""Score a trained run against the ground truth of ``cryofield simulate``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from cryofield.errors import InputError
from cryofield.imaging import half_lattice_mask, render_volume
from cryofield.io import WorkDir, numbered_map, read_array, read_arrays, read_indices, read_map
from cryofield.metrics import (
    adjusted_rand_index,
    evaluation_images,
    fsc,
    junk_detection,
    latent_pc_spearman,
    per_image_fsc,
    pose_error,
    resolution_at,
)
from cryofield.train import TrainConfig, load_models


def _fit_nmse(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """NMSE after the least-squares scale (the run's maps are in the data's units)."""
    p, t = predicted.double().ravel(), truth.double().ravel()
    a = (p @ t) / (p @ p).clamp_min(1e-300)
    return float(((a * p - t) ** 2).sum() / (t**2).sum())


def _indices(config: TrainConfig, n_truth: int) -> np.ndarray:
    if not config.ind:
        return np.arange(n_truth)
    path = Path(config.ind)
    return read_indices(path, n_truth)


def evaluate_run(workdir: str | os.PathLike, truth_dir: str | os.PathLike, *, n_images: int = 100,
                 seed: int = 0, latents: str | os.PathLike | None = None,
                 selection: str | os.PathLike | None = None) -> dict:
    """Ground-truth scores of a ``train-nn``/``train-vae`` run on simulated data.

    Parameters
    ----------
    workdir : str or PathLike
        The run (``config.json``, ``checkpoints/last.pt`` and, for a VAE, ``z.npy``).
    truth_dir : str or PathLike
        The simulation's folder (``truth.npz``, ``truth_vols/``).
    n_images : int
        Images for the per-image FSC (the seed's protocol: spaced along the true coordinate,
        or spread over the states when there are few).
    seed : int
    latents : str or PathLike, optional
        Score these latents (.npy, (N, zdim), the run's particle order; e.g. from
        ``eval-images --refine-z``) instead of ``WORKDIR/z.npy``.
    selection : str or PathLike, optional
        Indices (input-file rows) of the particles a selection keeps (``filter``'s output):
        scored against the truth's junk labels.

    Returns
    -------
    dict
        ``per_image_fsc`` (mean and std of the FSC = 0.5 resolution in pixels, mean AUC),
        ``nmse`` (mean over the same images, after a least-squares scale), and for a VAE
        ``spearman`` (|rho| of each latent PC with each true coordinate) and ``ari``
        (k-means on z with k = number of true states); with refined poses (``poses.npz``),
        ``pose_error`` against the true poses (:func:`cryofield.metrics.pose_error`, in the
        truth's frame). Junk images (the truth's ``junk_kind``) are left out of all of these;
        with ``selection``, ``junk`` (:func:`cryofield.metrics.junk_detection`) scores it.
    """
    run, truth_dir = WorkDir(workdir), Path(truth_dir)
    for need in (run.config, run.last_checkpoint, truth_dir / "truth.npz"):
        if not need.is_file():
            raise InputError(need, "not found")
    config = TrainConfig.load(run)
    truth = read_arrays(truth_dir / "truth.npz", ("state", "coordinates"), what="ground truth")
    rows = _indices(config, len(truth["state"]))
    junk_kind = truth.get("junk_kind", np.zeros(len(truth["state"]), np.int64))[rows]
    _, models = load_models(run, config.box, int(half_lattice_mask(config.box).sum()))
    z = _latents(run, config, latents, len(rows)) if config.zdim else None
    junk = None
    if selection is not None:
        kept = np.isin(rows, read_indices(selection, len(truth["state"])))
        junk = junk_detection(junk_kind, kept, tuple(str(k) for k in truth.get("junk_kinds", [])))
    clean = junk_kind == 0  # the particle metrics score particles, not junk
    rows, states, coordinates = rows[clean], truth["state"][rows][clean], truth["coordinates"][rows][clean]
    z = None if z is None else z[clean]
    if not len(rows):
        raise InputError(truth_dir / "truth.npz", "the run holds junk images only")
    n_states = len(np.unique(truth["state"][truth["state"] >= 0]))
    discrete = n_states <= 20 and np.array_equal(coordinates[:, 0], states.astype(float))
    picks = evaluation_images(coordinates, min(n_images, len(rows)), states=states if discrete else None, seed=seed)
    pairs, nmse = _map_pairs(models, config, z, states, picks, truth_dir)
    scores = {"workdir": str(run.root), "zdim": config.zdim, "images_scored": len(picks),
              "per_image_fsc": per_image_fsc(pairs), "nmse": float(np.mean(nmse))}
    if config.zdim == 0:
        freqs, curve = fsc(pairs[0][0], pairs[0][1])
        scores["fsc_0.5_px"] = 1 / resolution_at(freqs, curve, 0.5)
    else:
        scores["spearman"] = latent_pc_spearman(z, coordinates, min(config.zdim, 3)).round(4).tolist()
        if n_states > 1:
            from sklearn.cluster import KMeans

            labels = KMeans(n_clusters=n_states, n_init=10, random_state=seed).fit_predict(z)
            scores["ari"] = adjusted_rand_index(labels, states)
    refined = run.read_refined_poses()
    if refined is not None and "rotations" in truth:
        scores["pose_error"] = pose_error(refined[0][clean], truth["rotations"][rows], refined[1][clean],
                                          truth["shifts_px"][rows], align=False)
    if junk is not None:
        scores["junk"] = junk
    return scores


def _latents(run: WorkDir, config: TrainConfig, latents: str | os.PathLike | None, n: int) -> np.ndarray:
    """The latents scored: ``latents`` or the run's ``z.npy``, checked to be (n, zdim)."""
    z_file = Path(latents) if latents is not None else run.latents
    if not z_file.is_file():
        raise InputError(z_file, "not found" + ("" if latents is not None else ": the run did not finish"))
    return read_array(z_file, ndim=2, rows=n, columns=config.zdim, what="latents")


def _map_pairs(models, config: TrainConfig, z: np.ndarray | None, states: np.ndarray, picks: np.ndarray,
               truth_dir: Path) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[float]]:
    """``(predicted, true)`` map of each picked image (each map rendered once), and their scaled NMSE."""
    truth_maps: dict[int, torch.Tensor] = {}

    def truth_map(state: int) -> torch.Tensor:
        if state not in truth_maps:
            volume, _ = read_map(numbered_map(truth_dir / "truth_vols", state))
            if volume.shape[-1] != config.box:
                raise InputError(truth_dir, f"truth maps are {volume.shape[-1]} px, the run's box {config.box}")
            truth_maps[state] = torch.from_numpy(volume)
        return truth_maps[state]

    pairs, nmse = [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.amp):
        cache: dict[bytes, torch.Tensor] = {}
        for i in picks:
            key = b"" if z is None else z[i].tobytes()
            if key not in cache:
                cache[key] = render_volume(models.decoder, config.box,
                                           None if z is None else torch.from_numpy(z[i]).float()).float()
            predicted, target = cache[key], truth_map(int(states[i]))
            pairs.append((predicted, target))
            nmse.append(_fit_nmse(predicted, target))
    return pairs, nmse
