"""Simulated particle datasets with known ground truth."""

from cryofield.simulate.toy import make_toy_dataset

__all__ = ["make_toy_dataset"]
