"""Multilayer perceptrons with residual connections."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RESIDUAL_FORMS = ("post", "pre")


class ResidualMLP(nn.Module):
    """``in -> hidden``, then ``layers`` residual blocks, then ``hidden -> out``, ReLU between.

    ``layers`` counts the hidden-to-hidden layers, as cryoDRGN's ``--enc-layers`` and
    ``--dec-layers`` do, so ``256 x 3`` names the same network in both tools: three
    256 x 256 residual layers between the input and output layers.

    A block is, by ``residual``:

    - ``"post"`` (the default): ``relu(W h + b + h)``, the ReLU after the sum, as in the
      seed (section 5.6.3, ``y = ReLU(fc(x) + x)``) and cryoDRGN;
    - ``"pre"``: ``h + relu(W h + b)``, the identity path free of the nonlinearity: what
      cryofield's networks computed before the ``residual`` setting existed, kept so that
      their checkpoints compute what they were trained to.

    The two have the same parameters and cost. Measured on simulated adenylate kinase, the
    seed's form gave the better maps (per-image FSC 2.13 against 2.15 px after 10 epochs of
    ``train-vae --zdim 8``; docs/benchmarks.md).

    Parameters
    ----------
    in_dim, hidden, out_dim : int
    layers : int
        Residual hidden-to-hidden layers (0 or more).
    residual : {"post", "pre"}
        Where a block's ReLU sits (above).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, out_dim: int, *, residual: str = "post"):
        super().__init__()
        if layers < 0:
            raise ValueError(f"an MLP cannot have {layers} hidden layers")
        if residual not in RESIDUAL_FORMS:
            raise ValueError(f"residual must be one of {RESIDUAL_FORMS}, not {residual!r}")
        self.residual = residual
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
        if self.residual == "post":
            for block in self.blocks:
                h = torch.relu(block(h) + h)
        else:
            for block in self.blocks:
                h = h + torch.relu(block(h))
        return self.last(h)
