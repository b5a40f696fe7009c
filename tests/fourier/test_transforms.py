import numpy as np
import pytest
import torch

from cryofield.fourier import downsample_images, rfft_frequencies


def _band_limited(rng, n, big, small):
    """Real images whose spectrum lies strictly inside the new box's Nyquist band."""
    spectrum = np.zeros((n, big, big), complex)
    limit = (small - 1) // 2 - 1  # |k| <= limit on each axis
    ks = np.r_[0:limit + 1, -limit:0]
    for ky in ks:
        for kx in ks:
            spectrum[:, ky % big, kx % big] = rng.normal(size=n) + 1j * rng.normal(size=n)
    return np.fft.ifft2(spectrum).real  # real part keeps the band


@pytest.mark.parametrize("big,small", [(64, 32), (64, 31), (63, 32), (63, 21), (30, 30)])
def test_exact_on_band_limited_images(rng, big, small):
    images = _band_limited(rng, 3, big, small)
    out = downsample_images(torch.from_numpy(images), small).numpy()
    # the same continuous function sampled on the coarser grid, origin at D//2 on both
    x_small = (np.arange(small) - small // 2) * big / small
    spectrum = np.fft.fft2(images)
    freqs = np.fft.fftfreq(big) * big
    phase_y = np.exp(2j * np.pi * np.outer(x_small + big // 2, freqs) / big)
    reference = np.einsum("yk,nkl,xl->nyx", phase_y, spectrum, phase_y).real / big**2
    np.testing.assert_allclose(out, reference, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mean_preserved_and_shape(rng, dtype):
    images = torch.from_numpy(rng.normal(3.0, 1.0, (4, 50, 50))).to(dtype)
    out = downsample_images(images, 25)
    assert out.shape == (4, 25, 25) and out.dtype == dtype
    torch.testing.assert_close(out.mean(dim=(1, 2)), images.mean(dim=(1, 2)), rtol=1e-5, atol=1e-5)


def test_bad_sizes():
    with pytest.raises(ValueError):
        downsample_images(torch.zeros(2, 8, 8), 9)
    with pytest.raises(ValueError):
        downsample_images(torch.zeros(2, 8, 6), 4)


@pytest.mark.parametrize("ny,nx", [(8, 8), (7, 9)])
def test_rfft_frequencies_match_numpy(ny, nx):
    grid = rfft_frequencies(ny, nx, dtype=torch.float64).numpy()
    assert grid.shape == (ny, nx // 2 + 1, 2)
    np.testing.assert_allclose(grid[0, :, 0], np.fft.rfftfreq(nx))
    np.testing.assert_allclose(grid[:, 0, 1], np.fft.fftfreq(ny))
