"""Cryofold: fitting a coarse-grained atomic model to particle images with known poses (the seed's chapter 7).

The volume is :class:`cryofield.nn.GaussianResidues`: two Gaussians per residue of a
reference structure, moved by gradient descent on the image loss plus bond and side-chain
restraints. Homogeneous runs fit every centre, the shared width and the amplitude;
heterogeneous runs (``zdim > 0``) train an image encoder and an MLP that maps ``z`` to an
offset of every centre, with the machinery of ``train-vae`` (checkpoints, resume, bf16
encoder, lazy loading, DDP).

The seed's warm-up: one epoch fits everything from the starting coordinates, then the
coordinates (and any networks) start again from their initial values, keeping the fitted
width and amplitude. :class:`Cryofold` is a method on the run engine: the warm-up is a run
of its own in ``OUTDIR/warmup/``, then the main fit.
"""

from cryofield._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ABLATIONS": ".config", "INITS": ".config", "CryofoldConfig": ".config", "Cryofold": ".method",
    "build_cryofold": ".method", "least_squares_amplitude": ".method", "load_cryofold": ".method",
    "reference_model": ".method", "resolve_start": ".method", "starting_centres": ".method",
})
