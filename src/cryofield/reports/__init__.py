"""Figures and reports, made from saved results only."""

from cryofield.reports.figures import plot_fsc

__all__ = ["plot_fsc"]
