"""Per-particle pose corrections, learned by gradient descent (pose refinement)."""

from __future__ import annotations

import torch
from torch import nn


def skew(v: torch.Tensor) -> torch.Tensor:
    """The cross-product matrices ``[v]_x`` of vectors, (..., 3) -> (..., 3, 3)."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(*v.shape[:-1], 3, 3)


class PoseCorrections(nn.Module):
    """A small rotation and in-plane shift per particle, starting at zero.

    A particle's refined pose is ``R0 @ exp([w]_x)`` (``w`` an axis-angle vector in
    radians, applied in the volume frame) and its shift ``t0 + dt`` (pixels, RELION's sign).
    Both are embeddings with sparse gradients, so a step touches only its batch's rows
    (use ``torch.optim.SparseAdam``).

    Parameters
    ----------
    n : int
        Particles.
    """

    def __init__(self, n: int):
        super().__init__()
        self.rotvec = nn.Embedding(n, 3, sparse=True)
        self.shift = nn.Embedding(n, 2, sparse=True)
        nn.init.zeros_(self.rotvec.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotation corrections (B, 3, 3) and shift corrections (B, 2) in pixels for particles ``indices`` (B,)."""
        return torch.linalg.matrix_exp(skew(self.rotvec(indices))), self.shift(indices)

    @torch.no_grad()
    def all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every particle's corrections: (N, 3, 3) and (N, 2)."""
        return torch.linalg.matrix_exp(skew(self.rotvec.weight)), self.shift.weight.clone()
