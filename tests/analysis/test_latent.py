import numpy as np
import pytest

from cryofield.analysis import gmm_clusters, kmeans_clusters, latent_pca, nearest_particles, pc_traversal


@pytest.fixture
def blobs():
    """Three separated clusters on a line in 4-D (sizes 100, 200, 300), x-spread much larger than the rest."""
    rng = np.random.default_rng(0)
    centres = np.array([[-10.0, 0, 0, 0], [0, 0, 0, 0], [10, 0, 0, 0]])
    states = np.repeat([0, 1, 2], [100, 200, 300])
    return centres[states] + rng.normal(0, 0.5, (600, 4)), states


def test_pca_finds_the_long_axis(blobs):
    z, _ = blobs
    pca = latent_pca(z)
    assert pca.projected.shape == (600, 4) and pca.components.shape == (4, 4)
    assert abs(pca.components[0, 0]) > 0.99 and pca.explained_variance_ratio[0] > 0.95
    np.testing.assert_allclose(pca.explained_variance_ratio, np.sort(pca.explained_variance_ratio)[::-1])


def test_kmeans_on_data_centres_and_order(blobs):
    z, states = blobs
    clusters = kmeans_clusters(z, 3, seed=1)
    assert sorted(clusters.counts) == [100, 200, 300]
    # one cluster per state, and every on-data centre is a particle of its own cluster
    assert all(len(np.unique(clusters.labels[states == s])) == 1 for s in range(3))
    assert np.array_equal(clusters.labels[clusters.on_data], np.arange(3))
    np.testing.assert_allclose(z[clusters.on_data], clusters.centers, atol=1.0)
    # with six clusters the dendrogram order keeps each state's clusters adjacent
    six = kmeans_clusters(z, 6, seed=0)
    for s in range(3):
        numbers = np.unique(six.labels[states == s])
        assert numbers.max() - numbers.min() == len(numbers) - 1
    again = kmeans_clusters(z, 6, seed=0)
    assert np.array_equal(six.labels, again.labels)  # repeatable
    with pytest.raises(ValueError, match="clusters for 600"):
        kmeans_clusters(z, 601)
    # centres fitted on a subsample (large N): every particle still labelled, by its nearest centre
    sub = kmeans_clusters(z, 3, seed=1, max_fit=60)
    assert sorted(sub.counts) == [100, 200, 300]
    assert all(len(np.unique(sub.labels[states == s])) == 1 for s in range(3))
    nearest = np.argmin(((z[:, None, :] - sub.centers[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(sub.labels, nearest)


def test_gmm_and_nearest(blobs):
    z, states = blobs
    gmm = gmm_clusters(z, 3, seed=0)
    assert sorted(np.bincount(gmm.labels)) == [100, 200, 300]
    assert np.array_equal(nearest_particles(z, z[[5, 250]]), [5, 250])


def test_pc_traversal_spans_the_percentiles(blobs):
    z, _ = blobs
    path = pc_traversal(z, pc=1, n=7)
    assert path.shape == (7, 4)
    pca = latent_pca(z)
    t = (path - pca.mean) @ pca.components[0]
    np.testing.assert_allclose(t[[0, -1]], np.percentile(pca.projected[:, 0], [5, 95]))
    np.testing.assert_allclose((path - pca.mean) @ pca.components[1], 0, atol=1e-9)
    with pytest.raises(ValueError, match="PC5"):
        pc_traversal(z, pc=5)
    with pytest.raises(ValueError, match="finite"):
        latent_pca(np.full((3, 2), np.nan))


def test_umap_separates_clusters_and_subsamples(blobs):
    from cryofield.analysis import umap_embedding

    z, states = blobs
    embedding = umap_embedding(z, seed=0, max_fit=300, fit_size=300)  # 300 fitted, 300 placed
    assert embedding.shape == (600, 2) and np.isfinite(embedding).all()
    centres = np.array([embedding[states == s].mean(0) for s in range(3)])
    spread = max(np.linalg.norm(embedding[states == s] - centres[s], axis=1).mean() for s in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a, b in ((0, 1), (1, 2), (0, 2))]
    assert min(gaps) > 2 * spread
    with pytest.raises(ValueError, match="n_neighbors"):
        umap_embedding(z[:10])


def test_neighbour_graph_rule_and_paths():
    from scipy.sparse.csgraph import connected_components

    from cryofield.analysis import direct_path, graph_path, neighbour_graph

    rng = np.random.default_rng(0)
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)  # a noisy circle: the graph path must follow it
    z = np.column_stack([np.cos(t), np.sin(t)]) * 10 + rng.normal(0, 0.05, (400, 2))
    graph = neighbour_graph(z)
    degree = np.diff(graph.indptr)
    assert 5 <= degree.mean() <= 10 and degree.max() <= 20  # 5 on average before symmetrising; <= 10 each way
    assert (graph != graph.T).nnz == 0 and graph.diagonal().sum() == 0
    assert connected_components(graph)[0] == 1
    path = graph_path(z, [0, 200, 399], graph=graph)
    assert path[0] == 0 and path[-1] == 399 and 200 in path and len(set(path)) == len(path)
    steps = np.linalg.norm(np.diff(z[path], axis=0), axis=1)
    assert steps.max() < 1.0  # along the circle, never across it
    # two separate blobs: no path between them
    blobs = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(100, 0.1, (50, 2))])
    with pytest.raises(ValueError, match="separate parts"):
        graph_path(blobs, [0, 99])
    # duplicated latents: no self loops, and the approximate graph matches the exact one on this easy cloud
    twice = np.concatenate([z[:100], z[:100]])
    assert neighbour_graph(twice).diagonal().sum() == 0
    exact = neighbour_graph(z, eps=0.0)
    assert abs(exact.nnz - graph.nnz) <= 0.05 * exact.nnz
    line = direct_path(np.array([[0.0, 0], [1, 0], [1, 1]]), n=4)
    assert line.shape == (9, 2) and np.allclose(line[[0, 4, 8]], [[0, 0], [1, 0], [1, 1]])
    ring = direct_path(np.array([[0.0], [1.0]]), n=2, loop=True)
    np.testing.assert_allclose(ring[:, 0], [0, 0.5, 1, 0.5])
