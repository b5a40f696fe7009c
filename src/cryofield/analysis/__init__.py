"""Analysis of trained runs: scoring against simulated ground truth."""

from cryofield.analysis.evaluate import evaluate_run

__all__ = ["evaluate_run"]
