"""Figures people would rather look at than read."""

from __future__ import annotations

import os

import numpy as np

from cryofield.io import LatentAnalysis
from cryofield.io._atomic import whole


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
    with whole(path) as temp:
        fig.savefig(temp)
    plt.close(fig)


def plot_latent_figures(analysis_dir: str | os.PathLike, *, log: list[dict] | None = None,
                        labels: np.ndarray | None = None, labels_name: str = "labels") -> list[str]:
    """Figures of a folder written by :func:`cryofield.analysis.analyze_latents`.

    Writes into ``analysis_dir``, for each embedding present (``pca`` from ``z_pca.npy``,
    ``umap`` from ``z_umap.npy``): ``<emb>_scatter.png`` (coloured by the k-means clusters,
    on-data centres numbered), ``<emb>_density.png`` (hexbin density) and
    ``<emb>_<labels_name>.png`` (coloured by ``labels`` when given); also ``z_norm.png``
    (histogram of ``|z|``) and ``loss.png`` (training losses per epoch, from ``log``).

    Parameters
    ----------
    analysis_dir : str or PathLike
    log : list of dict, optional
        The run's epoch records (:meth:`cryofield.io.WorkDir.read_log`).
    labels : ndarray, shape (N,), optional
        Per-particle labels to colour by (published classes, simulated truth ...).
    labels_name : str
        Their name, for the file and the legend.

    Returns
    -------
    list of str
        The file names written.
    """
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(analysis_dir)
    analysis = LatentAnalysis.load(folder)
    figures = Figures(folder, plt)
    for emb in ("pca", "umap"):
        xy = analysis.z_pca[:, :2] if emb == "pca" else analysis.z_umap  # the first two PCs (or UMAP's axes)
        if xy is not None:
            _embedding(figures, analysis, emb, xy, labels, labels_name)
    fig, ax = figures.new(figsize=(6, 3.5))
    ax.hist(analysis.z_norm, bins=100, color="slategray")
    ax.set(xlabel="|z|", ylabel="particles", title="latent norm (outliers far right)")
    figures.save(fig, "z_norm.png")
    if log:
        _losses(figures, log)
    return figures.written


class Figures:
    """Saves figures into a folder and remembers their names (what the figure sets share).

    Parameters
    ----------
    folder : Path
    plt : module
        ``matplotlib.pyplot``, with the Agg backend chosen.
    """

    def __init__(self, folder, plt):
        self.folder, self.plt, self.written = folder, plt, []

    def new(self, *shape: int, figsize: tuple[float, float]):
        """``plt.subplots(*shape)`` at 120 dpi."""
        return self.plt.subplots(*shape, figsize=figsize, dpi=120)

    def save(self, fig, name: str) -> None:
        """Save as ``folder/name``, close, and remember the name."""
        fig.tight_layout()
        with whole(self.folder / name) as temp:
            fig.savefig(temp)
        self.plt.close(fig)
        self.written.append(name)


def _embedding(figures: Figures, analysis: LatentAnalysis, emb: str, xy: np.ndarray, labels: np.ndarray | None,
               labels_name: str) -> None:
    """``<emb>_scatter.png`` (k-means, centres numbered), ``<emb>_<labels_name>.png`` and ``<emb>_density.png``."""
    kmeans = analysis.kmeans
    if xy.shape[1] == 1:
        xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
    if emb == "pca":
        names = [f"PC{i + 1} ({100 * v:.1f} %)" for i, v in enumerate(analysis.explained_variance_ratio[:2])]
        names += ["(zdim 1)"]
    else:
        names = ["UMAP1", "UMAP2"]
    shown = np.arange(len(xy))  # scatter plots draw a random 100,000 at most; the density plot all
    if len(xy) > 100_000:
        shown = np.sort(np.random.default_rng(0).choice(len(xy), 100_000, replace=False))
    size = max(0.5, min(8.0, 4000 / len(shown)))
    for colours, title, name in ((kmeans.labels, f"{kmeans.name}, on-data centres numbered", f"{emb}_scatter.png"),
                                 (labels, f"coloured by {labels_name}", f"{emb}_{labels_name}.png")):
        if colours is None:
            continue
        colours = np.asarray(colours)
        categorical = np.all(np.mod(colours, 1) == 0) and len(np.unique(colours)) <= 20
        fig, ax = figures.new(figsize=(6, 5))
        points = ax.scatter(xy[shown, 0], xy[shown, 1], c=colours[shown], s=size,
                            cmap="tab20" if categorical else "viridis", alpha=0.6, linewidths=0)
        if name.endswith("_scatter.png"):
            for j, row in enumerate(kmeans.centers_row):  # latent rows of the on-data centres
                ax.annotate(str(j), xy[row], fontsize=8, ha="center", va="center", weight="bold")
        else:
            fig.colorbar(points, ax=ax, label=labels_name)
        ax.set(xlabel=names[0], ylabel=names[1], title=f"latent {emb.upper()}: {title}")
        figures.save(fig, name)
    fig, ax = figures.new(figsize=(6, 5))
    hexes = ax.hexbin(xy[:, 0], xy[:, 1], gridsize=60, bins="log", cmap="viridis", mincnt=1)
    fig.colorbar(hexes, ax=ax, label="particles (log)")
    ax.set(xlabel=names[0], ylabel=names[1], title=f"latent {emb.upper()} density")
    figures.save(fig, f"{emb}_density.png")


def _losses(figures: Figures, log: list[dict]) -> None:
    """``loss.png``: the image loss per epoch, and the KL where there is one."""
    fig, ax = figures.new(figsize=(6, 3.5))
    epochs = [r["epoch"] + 1 for r in log]
    ax.plot(epochs, [r["mse"] for r in log], "o-", label="image loss (mse)")
    ax.set(xlabel="epoch", ylabel="mse", title="training loss")
    if any(r.get("kl") for r in log):
        twin = ax.twinx()
        twin.plot(epochs, [r["kl"] for r in log], "s--", color="tab:orange", label="KL")
        twin.set_ylabel("KL")
    ax.grid(alpha=0.3)
    figures.save(fig, "loss.png")


def plot_confusion(path: str | os.PathLike, confusion: np.ndarray, title: str = "") -> None:
    """Save a confusion matrix (Ka, Kb) of particle counts as a heat map, rows normalised."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion, float)
    fractions = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the run A cluster")
    ax.set(xlabel="run B cluster (matched order)", ylabel="run A cluster", title=title)
    fig.tight_layout()
    with whole(path) as temp:
        fig.savefig(temp)
    plt.close(fig)


def plot_viewing_directions(path: str | os.PathLike, rotations: np.ndarray, title: str = "Viewing directions") -> None:
    """Save the particles' viewing directions on the sphere (Mollweide density) as PNG or PDF.

    Parameters
    ----------
    path : str or PathLike
    rotations : ndarray, shape (N, 3, 3)
        ``R`` per particle; the viewing direction in the volume's frame is ``R^T (0, 0, 1)``,
        the third row of ``R``, drawn as longitude ``atan2(y, x)`` and latitude ``asin(z)``.
    title : str
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    direction = np.asarray(rotations)[:, 2, :]
    lon = np.arctan2(direction[:, 1], direction[:, 0])
    lat = np.arcsin(np.clip(direction[:, 2], -1, 1))
    fig = plt.figure(figsize=(7, 4), dpi=120)
    ax = fig.add_subplot(projection="mollweide")
    cells = ax.hexbin(lon, lat, gridsize=36, mincnt=1, cmap="viridis")
    fig.colorbar(cells, ax=ax, shrink=0.7, label="particles")
    ax.set_title(f"{title} ({len(direction):,} particles)")
    ax.grid(alpha=0.3)
    ax.set_xticklabels([])
    fig.tight_layout()
    with whole(path) as temp:
        fig.savefig(temp)
    plt.close(fig)


def plot_abinit_convergence(path: str | os.PathLike, log: list[dict]) -> None:
    """Save ab initio's convergence per epoch (PNG or PDF): the loss, the searches' pose changes, the gradient.

    Three panels over the epochs of ``log`` (``log.jsonl``'s records): the image loss (mse)
    with the stages shaded and the model resets marked; at each search and each epoch of the
    pose table, the median angle the poses moved (degrees, log scale) and the fraction of
    particles that moved more than 5 degrees (``pose_moved_fraction``); the high-frequency
    gradient of the decoder's last layer.

    Parameters
    ----------
    path : str or PathLike
    log : list of dict
        Records with ``epoch``, ``stage``, ``mse``, ``grad_high``; search and pose-table epochs
        also with ``pose_change_deg_median`` and (since it was recorded) ``pose_moved_fraction``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.array([r["epoch"] + 1 for r in log])
    fig, axes = plt.subplots(3, 1, figsize=(7, 7.5), dpi=110, sharex=True)
    loss, moves, gradient = axes
    for ax in axes:
        for stage in sorted({r["stage"] for r in log}):
            members = epochs[[r["stage"] == stage for r in log]]
            if stage % 2 == 0:
                ax.axvspan(members.min() - 0.5, members.max() + 0.5, color="0.92", zorder=0)
        for r in log:
            if r.get("reset"):
                ax.axvline(r["epoch"] + 0.5, color="tab:red", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    loss.plot(epochs, [r["mse"] for r in log], "o-", ms=3)
    loss.set(ylabel="image loss (mse)", title="ab initio: convergence (stages shaded alternately, resets dotted)")
    searched = [r for r in log if "pose_change_deg_median" in r]
    if searched:
        at = [r["epoch"] + 1 for r in searched]
        moves.semilogy(at, [max(r["pose_change_deg_median"], 1e-3) for r in searched], "s-")
        moves.set_ylabel("median pose change (deg), squares", color="tab:blue")
        fractions = [(r["epoch"] + 1, r["pose_moved_fraction"]) for r in searched if "pose_moved_fraction" in r]
        if fractions:
            twin = moves.twinx()
            twin.plot(*zip(*fractions), "^--", color="tab:orange")
            twin.set_ylim(0, 1.05)
            twin.set_ylabel("fraction moved > 5 deg, triangles", color="tab:orange")
    else:
        moves.text(0.5, 0.5, "no search yet", ha="center", va="center", transform=moves.transAxes)
    gradient.semilogy(epochs, [max(r["grad_high"], 1e-12) for r in log], "o-", ms=3, color="tab:green")
    gradient.set(xlabel="epoch", ylabel="high-frequency gradient")
    fig.tight_layout()
    with whole(path) as temp:
        fig.savefig(temp)
    plt.close(fig)
