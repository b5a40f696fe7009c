"""Simulated particle datasets with known ground truth."""
