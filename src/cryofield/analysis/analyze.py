"""``analyze``: the standard views of a run's latent space, written to one folder.

Layout of ``OUTDIR`` (particle indices are rows of the run's input file, so that
``cryofield select IN --ind FILE`` exports them):

- ``z_pca.npy`` (N, k) coordinates on the latent PCs; ``pca.json`` explained variance
- ``z_umap.npy`` (N, 2) UMAP of the latents (k = 15, min_dist 0.1; zdim > 1)
- ``z_norm.npy`` (N,) each particle's ``|z|`` (outliers sit far from the origin)
- ``kmeans{K}/``: ``labels.npy``, ``centers.txt`` (on-data latents), ``centers_ind.txt``,
  ``counts.txt``, ``cluster_XXX.ind.txt`` and, with a model, ``vol_XXX.mrc`` at the centres
- ``gmm{K}/``: the same for a Gaussian mixture (``--gmm K``)
- ``pc{i}/``: ``z_path.txt`` along PC i (5th to 95th percentile) and its maps
- ``summary.json``: what was written, with counts and settings
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cryofield.analysis.latent import (
    LatentClusters,
    gmm_clusters,
    kmeans_clusters,
    latent_pca,
    pc_traversal,
    umap_embedding,
)


def analyze_latents(z: np.ndarray, outdir: str | os.PathLike, *, workdir: str | os.PathLike | None = None,
                    particle_indices: np.ndarray | None = None, ksample: int = 20, pcs: int = 2,
                    pc_points: int = 10, gmm: int | None = None, umap: bool = True, seed: int = 0,
                    progress: Callable[[], None] | None = None) -> dict:
    """PCA, k-means with on-data centres, optional GMM and PC traversals of latents, saved to ``outdir``.

    Parameters
    ----------
    z : ndarray, shape (N, zdim)
        The latents (posterior means or refined), in the run's particle order.
    outdir : str or PathLike
        Created if needed.
    workdir : str or PathLike, optional
        The trained run: with it, maps are written at the cluster centres and along the PCs
        (one model load per call).
    particle_indices : ndarray, shape (N,), optional
        Row of each latent in the run's input file (the run's ``--ind``); default ``0 .. N-1``.
    ksample : int
        k-means clusters (the seed's 20; capped at N).
    pcs : int
        Traverse the first ``pcs`` components (capped at zdim).
    pc_points : int
        Maps per traversal.
    gmm : int, optional
        Also fit a Gaussian mixture with this many full-covariance components.
    umap : bool
        Also a 2-D UMAP embedding (for zdim > 1; fitted on at most 100,000 particles).
    seed : int
        Makes clustering repeatable.
    progress : callable, optional
        Called once per map written.

    Returns
    -------
    dict
        The summary also saved as ``summary.json``.
    """
    z = np.asarray(z, float)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows = np.arange(len(z)) if particle_indices is None else np.asarray(particle_indices, np.int64)
    if len(rows) != len(z):
        raise ValueError(f"{len(rows)} particle indices for {len(z)} latents")
    pca = latent_pca(z)
    np.save(outdir / "z_pca.npy", pca.projected)
    np.save(outdir / "z_norm.npy", np.linalg.norm(z, axis=1))
    if umap and z.shape[1] > 1 and len(z) > 15:
        np.save(outdir / "z_umap.npy", umap_embedding(z, seed=seed))
    (outdir / "pca.json").write_text(json.dumps({"explained_variance_ratio": pca.explained_variance_ratio.tolist(),
                                                 "components": pca.components.tolist(),
                                                 "mean": pca.mean.tolist()}, indent=2) + "\n")
    summary: dict = {"particles": len(z), "zdim": z.shape[1], "seed": seed,
                     "explained_variance_ratio": [round(float(v), 4) for v in pca.explained_variance_ratio]}
    maps: list[tuple[np.ndarray, list[Path]]] = []

    def save_clusters(name: str, clusters: LatentClusters) -> None:
        folder = outdir / name
        folder.mkdir(exist_ok=True)
        np.save(folder / "labels.npy", clusters.labels)
        np.savetxt(folder / "centers.txt", z[clusters.on_data])
        np.savetxt(folder / "centers_ind.txt", rows[clusters.on_data], fmt="%d")
        np.savetxt(folder / "counts.txt", clusters.counts, fmt="%d")
        for j in range(len(clusters.centers)):
            np.savetxt(folder / f"cluster_{j:03d}.ind.txt", rows[clusters.labels == j], fmt="%d")
        maps.append((z[clusters.on_data], [folder / f"vol_{j:03d}.mrc" for j in range(len(clusters.centers))]))
        summary[name] = {"counts": clusters.counts.tolist(), "centers_row": clusters.on_data.tolist(),
                         "centers_ind": rows[clusters.on_data].tolist()}

    k = min(ksample, len(z))
    restarts = 10 if len(z) <= 100_000 else 3  # k-means restarts: 9 s instead of 27 s at 10^6 latents
    save_clusters(f"kmeans{k}", kmeans_clusters(z, k, seed=seed, n_init=restarts))
    if gmm:
        save_clusters(f"gmm{gmm}", gmm_clusters(z, gmm, seed=seed))
    for pc in range(1, min(pcs, z.shape[1]) + 1):
        folder = outdir / f"pc{pc}"
        folder.mkdir(exist_ok=True)
        path = pc_traversal(z, pc, pc_points, pca=pca)
        np.savetxt(folder / "z_path.txt", path)
        maps.append((path, [folder / f"vol_{j:03d}.mrc" for j in range(len(path))]))
        summary[f"pc{pc}"] = {"points": pc_points, "percentiles": [5, 95]}
    if workdir is not None:
        from cryofield.train import write_volumes

        latents = np.concatenate([m[0] for m in maps])
        paths = [p for m in maps for p in m[1]]
        box, apix = write_volumes(workdir, latents, paths, progress=progress)
        summary["maps"] = {"count": len(paths), "box": box, "apix": apix}
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
