"""Analysis of trained runs: the latent space (PCA, clusters, traversals) and scoring against simulated truth."""

from cryofield.analysis.analyze import analyze_latents
from cryofield.analysis.evaluate import evaluate_run
from cryofield.analysis.latent import (
    LatentClusters,
    LatentPCA,
    gmm_clusters,
    kmeans_clusters,
    latent_pca,
    nearest_particles,
    pc_traversal,
    umap_embedding,
)

__all__ = ["LatentClusters", "LatentPCA", "analyze_latents", "evaluate_run", "gmm_clusters", "kmeans_clusters",
           "latent_pca", "nearest_particles", "pc_traversal", "umap_embedding"]
