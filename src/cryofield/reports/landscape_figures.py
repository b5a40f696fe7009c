"""Figures of a landscape analysis (``cryofield landscape``), from the :class:`cryofield.io.Landscape` it saved."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cryofield.io import Landscape
from cryofield.reports.figures import Figures


def plot_landscape_figures(landscape_dir: str | os.PathLike, *, labels: np.ndarray | None = None,
                           labels_name: str = "labels") -> list[str]:
    """Figures of a folder written by :func:`cryofield.analysis.landscape.landscape_analysis`.

    Writes into ``landscape_dir``: ``vol_pca_variance.png`` (explained variance per volume
    PC), ``sketch_pc.png`` (the sketched maps on volume PC1-PC2, coloured by state, sized by
    particles), ``sketch_mds.png`` and ``sketch_umap.png`` (the same colours), ``states.png``
    (maps and particles per state), ``sketch_check.png`` (distances between maps of members of
    a sketched cluster against distances between sketched maps) and, when phi was trained,
    ``landscape.png`` (density of every particle on volume PC1-PC2) and
    ``landscape_<labels_name>.png`` (coloured by ``labels`` (N,) when given).

    Returns
    -------
    list of str
        The file names written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(landscape_dir)
    landscape = Landscape.load(folder)
    figures = Figures(folder, plt)
    colours = plt.get_cmap("tab10" if landscape.states.count <= 10 else "tab20")
    _variance(figures, landscape.explained_variance_ratio)
    _sketch_views(figures, landscape, colours)
    _states(figures, landscape, colours)
    _sketch_check(figures, landscape.sketch_check)
    if landscape.z_vol_pc is not None and landscape.z_vol_pc.shape[1] >= 2:
        _landscape(figures, landscape, colours, labels, labels_name)
    return figures.written


def _variance(figures: Figures, variance: np.ndarray) -> None:
    fig, ax = figures.new(figsize=(5, 3.5))
    ax.bar(np.arange(1, len(variance) + 1), 100 * variance, color="steelblue")
    ax.plot(np.arange(1, len(variance) + 1), 100 * np.cumsum(variance), "o-", color="darkorange", label="cumulative")
    ax.set(xlabel="volume PC", ylabel="explained variance (%)", title="PCA of the masked sketch maps")
    ax.legend()
    figures.save(fig, "vol_pca_variance.png")


def _sketch_views(figures: Figures, landscape: Landscape, colours) -> None:
    """The sketched maps on volume PC1-PC2, MDS and UMAP, coloured by state, sized by particles."""
    states = landscape.states
    counts = landscape.sketch_counts
    sizes = 8 + 80 * counts / max(counts.max(), 1)
    views = [(landscape.sketch_pc, "sketch_pc.png", "volume PC"),
             (landscape.sketch_mds, "sketch_mds.png", "MDS"), (landscape.sketch_umap, "sketch_umap.png", "UMAP")]
    for xy, name, axis in views:
        if xy is None:
            continue
        if xy.shape[1] < 2:
            xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
        fig, ax = figures.new(figsize=(5.5, 4.5))
        for j in range(states.count):
            inside = states.of_sketch == j
            ax.scatter(xy[inside, 0], xy[inside, 1], s=sizes[inside], color=colours(j % colours.N), alpha=0.75,
                       edgecolors="none", label=f"state {j} ({states.particles[j]})")
        ax.set(xlabel=f"{axis} 1", ylabel=f"{axis} 2",
               title=f"sketch of {len(xy)} maps, coloured by state (size: particles)")
        ax.legend(fontsize=7, markerscale=0.6, loc="best")
        figures.save(fig, name)


def _states(figures: Figures, landscape: Landscape, colours) -> None:
    states = landscape.states
    fig, axes = figures.new(1, 2, figsize=(8, 3.2))
    palette = [colours(j % colours.N) for j in range(states.count)]
    for ax, key in zip(axes, ("volumes", "particles")):
        ax.bar(np.arange(states.count), getattr(states, key), color=palette)
        ax.set(xlabel="state", ylabel=key, title=f"{key} per state")
        ax.set_xticks(np.arange(states.count))
    figures.save(fig, "states.png")


def _sketch_check(figures: Figures, check: dict) -> None:
    """Distances between maps within sketched clusters against those between sketched maps."""
    fig, ax = figures.new(figsize=(5.5, 3.5))
    bins = np.histogram_bin_edges(np.concatenate([check["between_sketch"]] + [c["distances"]
                                                                              for c in check["clusters"]]), 40)
    ax.hist(check["between_sketch"], bins=bins, density=True, alpha=0.5, color="grey", label="between sketched maps")
    for c in check["clusters"]:
        ax.hist(c["distances"], bins=bins, density=True, histtype="step", lw=1.5,
                label=f"within sketch cluster {c['cluster']} ({c['particles']} maps)")
    ax.set(xlabel="L2 distance between maps", ylabel="density", title="Is the sketch representative?")
    ax.legend(fontsize=7)
    figures.save(fig, "sketch_check.png")


def _landscape(figures: Figures, landscape: Landscape, colours, labels: np.ndarray | None, labels_name: str) -> None:
    """Every particle on volume PC1-PC2 (through phi), states numbered; and coloured by ``labels``."""
    xy, variance, states = landscape.z_vol_pc, landscape.explained_variance_ratio, landscape.states
    fig, ax = figures.new(figsize=(5.5, 4.5))
    hexes = ax.hexbin(xy[:, 0], xy[:, 1], gridsize=60, bins="log", cmap="viridis", mincnt=1)
    fig.colorbar(hexes, ax=ax, label="particles (log)")
    for j in range(states.count):
        centre = landscape.sketch_pc[states.of_sketch == j, :2].mean(0)
        ax.text(centre[0], centre[1], str(j), color="white", fontsize=9, ha="center", va="center",
                fontweight="bold", bbox={"boxstyle": "circle,pad=0.2", "fc": colours(j % colours.N), "ec": "none"})
    ax.set(xlabel=f"volume PC1 ({100 * variance[0]:.0f} %)", ylabel=f"volume PC2 ({100 * variance[1]:.0f} %)",
           title=f"landscape of {len(xy)} particles (states numbered)")
    figures.save(fig, "landscape.png")
    if labels is not None:
        fig, ax = figures.new(figsize=(5.5, 4.5))
        points = ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(labels), s=2, cmap="viridis", alpha=0.6,
                            edgecolors="none")
        fig.colorbar(points, ax=ax, label=labels_name)
        ax.set(xlabel="volume PC1", ylabel="volume PC2", title=f"landscape coloured by {labels_name}")
        figures.save(fig, f"landscape_{labels_name}.png")
