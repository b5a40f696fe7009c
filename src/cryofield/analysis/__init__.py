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
from cryofield.analysis.traversal import direct_path, graph_path, neighbour_graph

__all__ = ["LatentClusters", "LatentPCA", "analyze_latents", "direct_path", "evaluate_run", "gmm_clusters",
           "graph_path", "kmeans_clusters", "latent_pca", "nearest_particles", "neighbour_graph", "pc_traversal",
           "umap_embedding"]
