"""Neural fields and the atomic model of Cryofold.

Positional encodings, residual MLPs, Hermitian volume decoders, image, tilt-pair, tilt-series and pose encoders,
per-particle pose corrections and tables, latent tables, and Gaussian residues.
"""

from cryofield.nn.atomic import GaussianResidues
from cryofield.nn.decoders import VolumeDecoder, canonical_half
from cryofield.nn.encoders import (
    TILT_POOLINGS,
    ImageEncoder,
    LatentTable,
    PoseEncoder,
    TiltPairEncoder,
    TiltSeriesEncoder,
    kl_divergence,
    reparameterize,
    sample_rotation,
)
from cryofield.nn.encodings import GaussianFourierFeatures, SinusoidalEncoding, geometric_frequencies, make_encoding
from cryofield.nn.mlp import ResidualMLP
from cryofield.nn.poses import PoseCorrections, PoseTable, skew

__all__ = [
    "GaussianFourierFeatures", "GaussianResidues", "ImageEncoder", "LatentTable", "PoseCorrections", "PoseEncoder",
    "PoseTable", "ResidualMLP", "SinusoidalEncoding", "TILT_POOLINGS", "TiltPairEncoder", "TiltSeriesEncoder",
    "VolumeDecoder", "canonical_half", "geometric_frequencies", "kl_divergence", "make_encoding", "reparameterize",
    "sample_rotation", "skew",
]
