"""Figures and reports, made from saved results only."""

from cryofield.reports.figures import (
    plot_abinit_convergence,
    plot_confusion,
    plot_fsc,
    plot_latent_figures,
    plot_viewing_directions,
)
from cryofield.reports.landscape_figures import plot_landscape_figures

__all__ = ["plot_abinit_convergence", "plot_confusion", "plot_fsc", "plot_landscape_figures", "plot_latent_figures",
           "plot_viewing_directions"]
