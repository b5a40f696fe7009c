import numpy as np
import pytest
import torch

from cryofield.fourier import (
    ball_mask,
    crop_center,
    fft_center,
    ht_center,
    ifft_center,
    iht_center,
    lattice,
    pad_center,
    radial_sum,
    shell_index,
    soft_ball_mask,
)


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("ndim", [2, 3])
def test_round_trips_and_hartley_agrees_with_fourier(size, ndim):
    x = torch.randn((2,) + (size,) * ndim, dtype=torch.float64)
    torch.testing.assert_close(ifft_center(fft_center(x, ndim), ndim).real, x)
    torch.testing.assert_close(iht_center(ht_center(x, ndim), ndim), x)
    f = fft_center(x, ndim)
    torch.testing.assert_close(ht_center(x, ndim), f.real - f.imag)


@pytest.mark.parametrize("size", [8, 9])
def test_origin_at_center(size):
    delta = torch.zeros(size, size, dtype=torch.float64)
    delta[size // 2, size // 2] = 1
    torch.testing.assert_close(fft_center(delta), torch.ones(size, size, dtype=torch.complex128))
    constant = torch.ones(size, size, dtype=torch.float64)
    spectrum = fft_center(constant)
    assert spectrum[size // 2, size // 2].real == pytest.approx(size * size)
    assert spectrum.abs().sum().item() == pytest.approx(size * size)


@pytest.mark.parametrize("big,small", [(16, 8), (16, 9), (15, 8), (15, 15)])
def test_crop_pad_inverse(big, small):
    x = torch.randn(3, small, small)
    padded = pad_center(x, big)
    assert padded.shape == (3, big, big)
    torch.testing.assert_close(crop_center(padded, small), x)
    assert padded[:, big // 2, big // 2].equal(x[:, small // 2, small // 2])  # origins coincide


def test_lattice_masks_and_shells():
    grid = lattice(6, 3)
    assert grid.shape == (6, 6, 6, 3)
    assert grid[3, 3, 3].abs().sum() == 0 and grid[0, 0, 0].tolist() == [-0.5, -0.5, -0.5]
    assert grid[1, 2, 4].tolist() == pytest.approx([1 / 6, -1 / 6, -2 / 6])  # (x, y, z) of [z, y, x]
    assert ball_mask(9, 4).sum() == (np.hypot(*np.meshgrid(np.arange(9) - 4, np.arange(9) - 4)) <= 4).sum()
    soft = soft_ball_mask(32, 8, 4, ndim=3)
    assert soft[16, 16, 16] == 1 and soft[16, 16, 16 + 12] == 0 and 0 < soft[16, 16, 16 + 10] < 1
    counts = radial_sum(torch.ones(10, 10, 10), shell_index(10, 3), 6)
    assert counts[0] == 1 and counts[1] == 18  # |k| in [0.5, 1.5): 6 faces (|k| = 1) and 12 edges (1.41)
