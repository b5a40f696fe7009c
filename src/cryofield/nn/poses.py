"""Per-particle poses learned by gradient descent: corrections (pose refinement) and tables (ab initio)."""

from __future__ import annotations

import torch
from torch import nn

from cryofield.so3 import matrix_to_s2s2, s2s2_to_matrix


def skew(v: torch.Tensor) -> torch.Tensor:
    """The cross-product matrices ``[v]_x`` of vectors, (..., 3) -> (..., 3, 3)."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(*v.shape[:-1], 3, 3)


class PoseTable(nn.Module):
    """Every particle's rotation (continuous 6-D form) and a shift correction, trained with the volume.

    The second phase of cryoDRGN-AI's ab initio: after the pose searches, each particle's
    rotation becomes a row of a table, started at the search's result, and its shift a
    correction started at zero (pixels, RELION's sign: the particle's shift is the search's
    plus this). Embeddings with sparse gradients: a step touches only its batch's rows
    (``torch.optim.SparseAdam``). A row is the rotation's first two columns
    (:func:`cryofield.so3.s2s2_to_matrix`, Zhou et al. 2019): any six numbers make a rotation
    and the map is smooth, where Euler angles and quaternions have jumps or a double cover.

    Parameters
    ----------
    rotations : Tensor, shape (N, 3, 3)
        The starting rotations.
    """

    absolute = True  # forward() gives the rotation itself; the caller turns it into a correction

    def __init__(self, rotations: torch.Tensor):
        super().__init__()
        n = len(rotations)
        self.rotation = nn.Embedding(n, 6, sparse=True)
        self.shift = nn.Embedding(n, 2, sparse=True)
        with torch.no_grad():
            self.rotation.weight.copy_(matrix_to_s2s2(rotations))
        nn.init.zeros_(self.shift.weight)

    def forward(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotations (B, 3, 3) and shift corrections (B, 2) in pixels of particles ``indices`` (B,)."""
        return s2s2_to_matrix(self.rotation(indices)), self.shift(indices)

    @torch.no_grad()
    def all(self, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
        """Every particle's rotation (N, 3, 3) and shift correction (N, 2), in chunks of ``chunk`` rows."""
        weight = self.rotation.weight
        return torch.cat([s2s2_to_matrix(part) for part in weight.split(chunk)]), self.shift.weight.clone()


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

    absolute = False  # forward() gives corrections, applied after the batch's rotations

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
