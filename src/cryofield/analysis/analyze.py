"""``analyze``: the standard views of a run's latent space, as a :class:`cryofield.io.LatentAnalysis`.

The result and its files (``z_pca.npy``, ``kmeans{K}/``, ``pc{i}/``, ``summary.json`` ...)
are defined in :mod:`cryofield.io.results`; this module computes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from cryofield.analysis.latent import (
    LatentClusters,
    gmm_clusters,
    kmeans_clusters,
    latent_pca,
    pc_traversal,
    umap_embedding,
)
from cryofield.io import ClusterSet, LatentAnalysis


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
        Also a 2-D UMAP embedding (for zdim > 1; fitted on at most 30,000 particles, the rest placed:
        :func:`cryofield.analysis.umap_embedding`).
    seed : int
        Makes clustering repeatable.
    progress : callable, optional
        Called once per map written.

    Returns
    -------
    LatentAnalysis
        As saved in ``outdir`` (its ``summary`` is ``summary.json``).
    """
    z = np.asarray(z, float)
    rows = np.arange(len(z)) if particle_indices is None else np.asarray(particle_indices, np.int64)
    if len(rows) != len(z):
        raise ValueError(f"{len(rows)} particle indices for {len(z)} latents")
    pca = latent_pca(z)
    result = LatentAnalysis(
        pca.projected, pca.components, pca.explained_variance_ratio, pca.mean, np.linalg.norm(z, axis=1),
        umap_embedding(z, seed=seed) if umap and z.shape[1] > 1 and len(z) > 15 else None,
        summary={"particles": len(z), "zdim": z.shape[1], "seed": seed,
                 "explained_variance_ratio": [round(float(v), 4) for v in pca.explained_variance_ratio]})

    def add(name: str, clusters: LatentClusters) -> None:
        result.clusters[name] = ClusterSet(name, clusters.labels, clusters.on_data)

    k = min(ksample, len(z))
    add(f"kmeans{k}", kmeans_clusters(z, k, seed=seed))
    if gmm:
        add(f"gmm{gmm}", gmm_clusters(z, gmm, seed=seed))
    for pc in range(1, min(pcs, z.shape[1]) + 1):
        result.paths[f"pc{pc}"] = pc_traversal(z, pc, pc_points, pca=pca)
        result.summary[f"pc{pc}"] = {"points": pc_points, "percentiles": [5, 95]}
    result.save(outdir, z, rows)
    if workdir is not None:
        from cryofield.train import write_volumes

        targets = result.map_targets(outdir, z)
        box, apix = write_volumes(workdir, np.concatenate([t[0] for t in targets]), [p for t in targets for p in t[1]],
                                  progress=progress)
        result.summary["maps"] = {"count": sum(len(t[1]) for t in targets), "box": box, "apix": apix}
        result.save_summary(outdir)
    return result
