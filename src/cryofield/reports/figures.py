"""Figures people would rather look at than read."""

from __future__ import annotations

import os

import numpy as np


def plot_fsc(path: str | os.PathLike, freqs_per_angstrom: np.ndarray, curves: dict[str, np.ndarray],
             thresholds: tuple[float, ...] = (0.143, 0.5), title: str = "Fourier shell correlation") -> None:
    """Save an FSC plot (PNG or PDF by extension).

    Parameters
    ----------
    path : str or PathLike
    freqs_per_angstrom : ndarray, shape (S,)
        Shell frequencies in 1/Angstrom.
    curves : dict of str to ndarray, shape (S,)
        Label -> FSC values.
    thresholds : tuple of float
        Dashed horizontal lines.
    title : str
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, values in curves.items():
        ax.plot(freqs_per_angstrom, values, label=label)
    for t in thresholds:
        ax.axhline(t, ls="--", lw=0.8, color="grey")
        ax.text(freqs_per_angstrom[-1], t, f" {t}", va="center", fontsize=8, color="grey")
    ax.set(xlabel="spatial frequency (1/A)", ylabel="FSC", ylim=(-0.05, 1.05), title=title)
    ax.set_xlim(0, freqs_per_angstrom[-1])
    top = ax.twiny()  # the same axis labelled in Angstrom
    top.set_xlim(ax.get_xlim())
    ticks = [t for t in ax.get_xticks() if 0 < t <= freqs_per_angstrom[-1]]
    top.set_xticks(ticks, [f"{1 / t:.3g}" for t in ticks])
    top.set_xlabel("resolution (A)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_latent_figures(analysis_dir: str | os.PathLike, *, log_path: str | os.PathLike | None = None,
                        labels: np.ndarray | None = None, labels_name: str = "labels") -> list[str]:
    """Figures of a folder written by :func:`cryofield.analysis.analyze_latents`.

    Writes into ``analysis_dir``: ``pca_scatter.png`` (PC1-PC2 coloured by the k-means
    clusters, on-data centres numbered), ``pca_density.png`` (hexbin density),
    ``z_norm.png`` (histogram of ``|z|``), ``pca_<labels_name>.png`` (coloured by ``labels``
    when given) and ``loss.png`` (the training losses per epoch, from ``log_path``).

    Parameters
    ----------
    analysis_dir : str or PathLike
    log_path : str or PathLike, optional
        The run's ``log.jsonl``.
    labels : ndarray, shape (N,), optional
        Per-particle labels to colour by (published classes, simulated truth ...).
    labels_name : str
        Their name, for the file and the legend.

    Returns
    -------
    list of str
        The file names written.
    """
    import json
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(analysis_dir)
    summary = json.loads((folder / "summary.json").read_text())
    projected = np.load(folder / "z_pca.npy")
    xy = projected[:, :2] if projected.shape[1] > 1 else np.column_stack([projected[:, 0], np.zeros(len(projected))])
    variance = summary["explained_variance_ratio"]
    axis_names = [f"PC{i + 1} ({100 * v:.1f} %)" for i, v in enumerate(variance[:2])] + ["(zdim 1)"]
    kmeans = next(name for name in summary if name.startswith("kmeans"))
    cluster = np.load(folder / kmeans / "labels.npy")
    centers = np.asarray(summary[kmeans]["centers_row"])  # latent rows of the on-data centres
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name)
        plt.close(fig)
        written.append(name)

    def scatter(colours: np.ndarray, title: str, name: str, numbered: bool) -> None:
        fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
        size = max(0.5, min(8.0, 4000 / len(xy)))
        points = ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=size, cmap="tab20", alpha=0.6, linewidths=0)
        if numbered:
            for j, row in enumerate(centers):
                ax.annotate(str(j), xy[row], fontsize=8, ha="center", va="center", weight="bold")
        else:
            fig.colorbar(points, ax=ax, label=labels_name)
        ax.set(xlabel=axis_names[0], ylabel=axis_names[1], title=title)
        save(fig, name)

    scatter(cluster, f"{kmeans}: latent PCA, on-data centres numbered", "pca_scatter.png", True)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    hexes = ax.hexbin(xy[:, 0], xy[:, 1], gridsize=60, bins="log", cmap="viridis", mincnt=1)
    fig.colorbar(hexes, ax=ax, label="particles (log)")
    ax.set(xlabel=axis_names[0], ylabel=axis_names[1], title="latent PCA density")
    save(fig, "pca_density.png")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.hist(np.load(folder / "z_norm.npy"), bins=100, color="slategray")
    ax.set(xlabel="|z|", ylabel="particles", title="latent norm (outliers far right)")
    save(fig, "z_norm.png")
    if labels is not None:
        scatter(np.asarray(labels), f"latent PCA coloured by {labels_name}", f"pca_{labels_name}.png", False)
    if log_path is not None and Path(log_path).is_file():
        records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
        if records:
            fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
            epochs = [r["epoch"] + 1 for r in records]
            ax.plot(epochs, [r["mse"] for r in records], "o-", label="image loss (mse)")
            ax.set(xlabel="epoch", ylabel="mse", title="training loss")
            if any(r.get("kl") for r in records):
                twin = ax.twinx()
                twin.plot(epochs, [r["kl"] for r in records], "s--", color="tab:orange", label="KL")
                twin.set_ylabel("KL")
            ax.grid(alpha=0.3)
            save(fig, "loss.png")
    return written

