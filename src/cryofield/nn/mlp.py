"""Multilayer perceptrons with residual connections."""

from __future__ import annotations

import torch
from torch import nn


class ResidualMLP(nn.Module):
    """``in -> hidden``, then ``layers - 1`` residual blocks ``h + relu(W h)``, then ``hidden -> out``.

    Parameters
    ----------
    in_dim, hidden, out_dim : int
    layers : int
        Hidden layers (at least 1).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, out_dim: int):
        super().__init__()
        if layers < 1:
            raise ValueError("an MLP needs at least one hidden layer")
        self.first = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.last = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (..., in_dim) to (..., out_dim)."""
        h = torch.relu(self.first(x))
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return self.last(h)
