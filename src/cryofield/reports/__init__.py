"""Figures and reports, made from saved results only."""

from cryofield.reports.figures import plot_confusion, plot_fsc, plot_latent_figures

__all__ = ["plot_confusion", "plot_fsc", "plot_latent_figures"]
