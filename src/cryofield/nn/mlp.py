"""Multilayer perceptrons with residual connections."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualMLP(nn.Module):
    """``in -> hidden``, then ``layers`` residual blocks ``h + relu(W h)``, then ``hidden -> out``.

    ``layers`` counts the hidden-to-hidden layers, as cryoDRGN's ``--enc-layers`` and
    ``--dec-layers`` do, so ``256 x 3`` names the same network in both tools: three
    256 x 256 residual layers between the input and output layers. The blocks keep the
    identity path free of the nonlinearity (``h + relu(W h + b)``); cryoDRGN and the seed
    (section 5.6.3) apply the ReLU after the sum, ``relu(W h + b + h)``. The two have the
    same parameters and cost; checkpoints of one do not compute the other.

    Parameters
    ----------
    in_dim, hidden, out_dim : int
    layers : int
        Residual hidden-to-hidden layers (0 or more).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, out_dim: int):
        super().__init__()
        if layers < 0:
            raise ValueError(f"an MLP cannot have {layers} hidden layers")
        self.first = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.last = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Map (..., in_dim) to (..., out_dim).

        With ``extra`` (..., k), the input is ``concat(x, extra)`` and ``x`` has ``in_dim - k``
        features; ``extra``'s leading dimensions broadcast against ``x``'s. The first layer
        then applies its last ``k`` columns to ``extra`` alone, so that a latent shared by
        many points (a volume's ``z``) is multiplied once, not once per point, and the
        backward pass needs no gradient with respect to ``x``.
        """
        if extra is None:
            h = torch.relu(self.first(x))
        else:
            split = x.shape[-1]
            weight = self.first.weight
            h = torch.relu(F.linear(x, weight[:, :split], self.first.bias) + F.linear(extra, weight[:, split:]))
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return self.last(h)
