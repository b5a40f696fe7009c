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
