"""The latent space of a trained VAE: principal components, clusters with on-data centres, paths along PCs.

The seed's section 4.4 analyses latents this way: PCA for linear views and traversals,
k-means whose centres are replaced by the particle nearest each (an "on-data" centre, a
latent the decoder was trained on), ordered by hierarchical clustering so that similar
states sit next to each other, and Gaussian mixtures when clusters have unequal shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LatentPCA:
    """Principal components of the latents.

    Attributes
    ----------
    projected : ndarray, shape (N, k)
        Each particle's coordinates on the components.
    components : ndarray, shape (k, zdim)
        Unit directions in latent space, by decreasing variance.
    explained_variance_ratio : ndarray, shape (k,)
        Fraction of the latents' variance along each component.
    mean : ndarray, shape (zdim,)
    """

    projected: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    mean: np.ndarray


def latent_pca(z: np.ndarray, n_components: int | None = None) -> LatentPCA:
    """PCA of latents ``z`` (N, zdim); all ``min(N, zdim)`` components by default."""
    from sklearn.decomposition import PCA

    z = _check(z)
    pca = PCA(n_components=n_components or min(z.shape)).fit(z)
    return LatentPCA(pca.transform(z), pca.components_, pca.explained_variance_ratio_, pca.mean_)


@dataclass
class LatentClusters:
    """k-means clusters of the latents, ordered by hierarchical clustering of their centres.

    Attributes
    ----------
    labels : ndarray, shape (N,), int
        Each particle's cluster, 0 .. k-1 in the dendrogram's leaf order.
    centers : ndarray, shape (k, zdim)
        The k-means centres, in the same order.
    on_data : ndarray, shape (k,), int
        Index of the particle nearest each centre (its latent is ``z[on_data[j]]``).
    """

    labels: np.ndarray
    centers: np.ndarray
    on_data: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """Particles per cluster, (k,)."""
        return np.bincount(self.labels, minlength=len(self.centers))


def kmeans_clusters(z: np.ndarray, k: int = 20, *, seed: int = 0, reorder: bool = True,
                    n_init: int = 10, max_fit: int = 200_000) -> LatentClusters:
    """k-means of latents ``z`` (N, zdim) with on-data centres.

    Parameters
    ----------
    z : ndarray, shape (N, zdim)
    k : int
        Clusters (at most N).
    seed : int
        Makes the result repeatable.
    reorder : bool
        Number the clusters in the leaf order of an average-linkage dendrogram of their
        centres, so that neighbouring numbers are similar states.
    n_init : int
        k-means restarts (the best is kept).
    max_fit : int
        Above this many particles, the centres are fitted on a random ``max_fit`` of them and
        every particle takes its nearest centre (at 10^6 8-D latents: 2 s instead of 9 s for
        three restarts on all).

    Returns
    -------
    LatentClusters
    """
    from sklearn.cluster import KMeans

    z = _check(z)
    if not 1 <= k <= len(z):
        raise ValueError(f"k = {k} clusters for {len(z)} particles")
    fit = z if len(z) <= max_fit else z[np.random.default_rng(seed).choice(len(z), max_fit, replace=False)]
    kmeans = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(fit)
    labels, centers = kmeans.predict(z) if len(z) > max_fit else kmeans.labels_, kmeans.cluster_centers_
    if reorder and k > 2:
        from scipy.cluster.hierarchy import leaves_list, linkage

        order = leaves_list(linkage(centers, method="average"))
        rank = np.empty(k, np.int64)
        rank[order] = np.arange(k)
        labels, centers = rank[labels], centers[order]
    return LatentClusters(labels.astype(np.int64), centers, nearest_particles(z, centers))


def gmm_clusters(z: np.ndarray, k: int, *, seed: int = 0) -> LatentClusters:
    """A Gaussian mixture with full covariances; ``centers`` are its means, ``labels`` the likeliest component."""
    from sklearn.mixture import GaussianMixture

    z = _check(z)
    if not 1 <= k <= len(z):
        raise ValueError(f"k = {k} components for {len(z)} particles")
    gmm = GaussianMixture(n_components=k, covariance_type="full", random_state=seed).fit(z)
    return LatentClusters(gmm.predict(z).astype(np.int64), gmm.means_, nearest_particles(z, gmm.means_))


def nearest_particles(z: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index (M,) of the particle whose latent is nearest each of ``points`` (M, zdim), Euclidean."""
    from scipy.spatial import cKDTree

    _, index = cKDTree(_check(z)).query(np.asarray(points, float).reshape(-1, z.shape[1]))
    return np.asarray(index, np.int64)


def pc_traversal(z: np.ndarray, pc: int = 1, n: int = 10, *, lim: tuple[float, float] = (5, 95),
                 pca: LatentPCA | None = None) -> np.ndarray:
    """Latents along one principal component, between two percentiles of the particles on it.

    Parameters
    ----------
    z : ndarray, shape (N, zdim)
    pc : int
        Which component, from 1.
    n : int
        Points, evenly spaced.
    lim : (float, float)
        Percentiles of the particles' coordinates on the component (the seed: 5th to 95th).
    pca : LatentPCA, optional
        A PCA of ``z`` already computed.

    Returns
    -------
    ndarray, shape (n, zdim)
        ``mean + t * component`` for the ``n`` values of ``t``; the other components are 0.
    """
    pca = pca or latent_pca(z)
    if not 1 <= pc <= len(pca.components):
        raise ValueError(f"PC{pc} of latents with {len(pca.components)} components")
    coordinate = pca.projected[:, pc - 1]
    t = np.linspace(*np.percentile(coordinate, lim), n)
    return pca.mean + t[:, None] * pca.components[pc - 1]


def _check(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, float)
    if z.ndim != 2 or len(z) == 0 or not np.isfinite(z).all():
        raise ValueError(f"latents must be a finite (N, zdim) array, got shape {z.shape}")
    return z


def umap_embedding(z: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.1, max_fit: int = 30_000,
                   fit_size: int = 20_000, seed: int = 0) -> np.ndarray:
    """2-D UMAP of latents (umap-learn), with the seed's settings.

    Up to ``max_fit`` particles, UMAP is fitted on all of them. Above, it is fitted on a
    random ``fit_size`` and every other particle is placed where UMAP's own ``transform``
    starts it: at the mean of the fitted embedding of its ``n_neighbors`` nearest fitted
    latents, weighted by UMAP's fuzzy memberships, without ``transform``'s further
    optimisation. Neighbours are exact (a k-d tree, handed to UMAP as precomputed), which
    also spares UMAP's approximate search and its compilation. On 2 cores 10^6 8-D latents
    take about 25 s, where fitting 50,000 and ``transform`` of the rest took about 130 s
    (docs/benchmarks.md).

    Parameters
    ----------
    z : ndarray, shape (N, zdim)
    n_neighbors, min_dist :
        UMAP's neighbourhood size and packing (the seed: 15 and 0.1).
    max_fit, fit_size : int
        Above ``max_fit`` particles, fit on a random ``fit_size`` and place the rest (above).
    seed : int
        Makes the embedding repeatable (UMAP then runs single-threaded).

    Returns
    -------
    ndarray, shape (N, 2)
    """
    import warnings

    import umap
    from scipy.spatial import cKDTree

    z = _check(z).astype(np.float32)
    if len(z) <= n_neighbors:
        raise ValueError(f"UMAP needs more than n_neighbors = {n_neighbors} particles, got {len(z)}")
    fit = np.ones(len(z), bool)
    if len(z) > max_fit:
        fit[:] = False
        fit[np.random.default_rng(seed).choice(len(z), min(fit_size, max_fit), replace=False)] = True
    tree = cKDTree(z[fit])
    distances, neighbours = tree.query(z[fit], k=n_neighbors, workers=-1)  # each point first, at distance 0
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed,
                        precomputed_knn=(neighbours, distances.astype(np.float32), None))
    out = np.empty((len(z), 2))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # random_state implies one thread
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")  # no search index: no transform wanted
        out[fit] = reducer.fit_transform(z[fit])
    if not fit.all():
        out[~fit] = _place(tree, out[fit], z[~fit], n_neighbors)
    return out


def _place(tree, fitted: np.ndarray, z: np.ndarray, n_neighbors: int, batch: int = 200_000) -> np.ndarray:
    """Positions (M, 2) of new latents ``z`` (M, zdim): membership-weighted means of their fitted neighbours.

    ``tree`` is a ``cKDTree`` of the fitted latents, ``fitted`` (F, 2) their embedding.
    """
    from umap.umap_ import smooth_knn_dist

    out = np.empty((len(z), 2))
    for start in range(0, len(z), batch):  # bounded memory: M x n_neighbors per batch
        distances, neighbours = tree.query(z[start:start + batch], k=n_neighbors, workers=-1)
        sigmas, rhos = smooth_knn_dist(distances, float(n_neighbors), local_connectivity=1.0)
        weights = np.exp(-np.maximum(distances - rhos[:, None], 0.0) / sigmas[:, None])
        out[start:start + batch] = np.einsum("mk,mkd->md", weights, fitted[neighbours]) / weights.sum(1, keepdims=True)
    return out
