"""Analysis of trained runs: the latent space (PCA, clusters, traversals) and scoring against simulated truth.

The names are imported when first used (the command line reads ``LandscapeSettings`` without torch).
"""

from cryofield._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "LatentClusters": ".latent", "LatentPCA": ".latent", "analyze_latents": ".analyze", "direct_path": ".traversal",
    "evaluate_run": ".evaluate", "gmm_clusters": ".latent", "graph_path": ".traversal", "kmeans_clusters": ".latent",
    "latent_pca": ".latent", "nearest_particles": ".latent", "neighbour_graph": ".traversal",
    "pc_traversal": ".latent", "umap_embedding": ".latent",
})
