"""sample_trilinear: grid_sample's values and gradients, with one lattice's points split across threads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cryofield.fourier import sample_trilinear


def _reference(volumes: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    n, shape = grid.shape[0], grid.shape[1:-1]
    out = F.grid_sample(volumes, grid.reshape(n, 1, 1, -1, 3), mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    return out.reshape(n, volumes.shape[1], *shape)


@pytest.mark.parametrize("shape", [(5001,), (7, 13, 61), (3, 4)])  # split (two sizes, padded), and too small to split
def test_one_lattice_matches_grid_sample_exactly(shape):
    gen = torch.Generator().manual_seed(0)
    volumes = torch.randn(1, 2, 9, 9, 9, generator=gen)
    grid = (torch.rand(1, *shape, 3, generator=gen) * 2.4 - 1.2).requires_grad_()  # some points outside
    out = sample_trilinear(volumes, grid)
    expected = _reference(volumes, grid)
    assert out.shape == (1, 2, *shape)
    assert torch.equal(out, expected)
    weights = torch.randn(out.shape, generator=gen)
    (g_out,) = torch.autograd.grad((out * weights).sum(), grid)
    (g_ref,) = torch.autograd.grad((expected * weights).sum(), grid)
    assert torch.equal(g_out, g_ref)


def test_several_lattices_keep_their_own_points():
    gen = torch.Generator().manual_seed(1)
    volumes = torch.randn(3, 1, 6, 6, 6, generator=gen)
    grid = torch.rand(3, 40, 50, 3, generator=gen) * 2 - 1
    out = sample_trilinear(volumes, grid)
    assert torch.equal(out, _reference(volumes, grid))
    assert torch.equal(out[1], sample_trilinear(volumes[1:2], grid[1:2])[0])
