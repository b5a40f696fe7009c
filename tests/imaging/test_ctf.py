import math

import numpy as np
import pytest
import torch

from cryofield.fourier import rfft_frequencies
from cryofield.imaging import compute_ctf, phase_flip


def _ctf_reference(kx, ky, dfu, dfv, angle_deg, kv, cs_mm, w, phase_deg):
    """Written out from the formula in DESIGN.md, one particle, numpy float64."""
    volts = kv * 1e3
    lam = 12.2642598 / math.sqrt(volts + 0.97848e-6 * volts**2)  # Angstrom (0.0197 at 300 kV)
    k2 = kx**2 + ky**2
    df = 0.5 * (dfu + dfv + (dfu - dfv) * np.cos(2 * (np.arctan2(ky, kx) - np.radians(angle_deg))))
    gamma = 2 * np.pi * (-0.5 * df * lam * k2 + 0.25 * cs_mm * 1e7 * lam**3 * k2**2) - np.radians(phase_deg)
    return -w * np.cos(gamma) + np.sqrt(1 - w**2) * np.sin(gamma)


def test_pure_phase_shift():
    ctf = compute_ctf(torch.tensor([[[0.1, 0.0]]], dtype=torch.float64), *[torch.tensor([v], dtype=torch.float64)
                      for v in (0.0, 0.0, 0.0, 300.0, 0.0, 0.0, -90.0)])
    # with df = Cs = w = 0 and phase -90 deg: gamma = pi/2, CTF = sin(pi/2) = 1 at any k
    assert ctf.item() == pytest.approx(1.0)


def test_matches_reference_for_a_batch(rng):
    params = np.stack([rng.uniform(8000, 30000, 4), rng.uniform(8000, 30000, 4), rng.uniform(-90, 90, 4),
                       np.array([300, 200, 300, 120.0]), np.array([2.7, 2.0, 0.01, 2.7]),
                       np.array([0.1, 0.07, 0.1, 0.2]), np.array([0, 0, 90.0, 30])], 1)
    apix = np.array([1.0, 1.3, 2.0, 0.8])
    lattice = rfft_frequencies(32, 32, dtype=torch.float64)
    freqs = lattice[None] / torch.from_numpy(apix).reshape(-1, 1, 1, 1)
    ctf = compute_ctf(freqs, *torch.from_numpy(params).unbind(-1)).numpy()
    for i in range(4):
        kx, ky = (freqs[i, ..., 0].numpy(), freqs[i, ..., 1].numpy())
        np.testing.assert_allclose(ctf[i], _ctf_reference(kx, ky, *params[i]), atol=1e-10)
    np.testing.assert_allclose(ctf[:, 0, 0], -params[:, 5] * np.cos(-np.radians(params[:, 6]))
                               + np.sqrt(1 - params[:, 5] ** 2) * np.sin(-np.radians(params[:, 6])))


def test_bfactor_envelope():
    freqs = torch.tensor([[[0.25, 0.0]]], dtype=torch.float64)
    args = [torch.tensor([v], dtype=torch.float64) for v in (1e4, 1e4, 0.0, 300.0, 2.7, 0.1, 0.0)]
    plain = compute_ctf(freqs, *args)
    damped = compute_ctf(freqs, *args, bfactor=torch.tensor([100.0], dtype=torch.float64))
    assert (damped / plain).item() == pytest.approx(math.exp(-100 * 0.0625 / 4))


@pytest.mark.parametrize("box,dfv,angle", [(49, 14000, 30), (48, 15000, 0)])
def test_phase_flip_gives_positive_transfer(rng, box, dfv, angle):
    """Flipping an image that went through the CTF leaves |CTF| times the original.

    (An even box with astigmatism is left out: its Nyquist column has no unique CTF.)
    """
    apix = 1.5
    params = torch.tensor([[box, apix, 15000, dfv, angle, 300, 2.7, 0.1, 0]], dtype=torch.float64)
    clean = torch.from_numpy(rng.normal(size=(1, box, box)))
    freqs = rfft_frequencies(box, box, dtype=torch.float64)[None] / apix
    ctf = compute_ctf(freqs, *params[:, 2:].unbind(-1))
    observed = torch.fft.irfft2(torch.fft.rfft2(clean) * ctf, s=(box, box))
    flipped = phase_flip(observed, params)
    expected = torch.fft.irfft2(torch.fft.rfft2(clean) * ctf.abs(), s=(box, box))
    torch.testing.assert_close(flipped, expected)
    assert phase_flip(observed.float(), params).dtype == torch.float32


def test_hand_computed_value():
    """300 kV (lambda 0.0196875 A), df 1 um, Cs 2.7 mm, w 0.1, at |k| = 0.1/A:
    gamma = 2 pi (-0.5 * 1e4 * 0.0196875 * 0.01 + 0.25 * 2.7e7 * 0.0196875^3 * 1e-4) = -6.15264 rad,
    CTF = -0.1 cos(gamma) + sqrt(0.99) sin(gamma) = 0.030373. With astigmatism 12000/8000 A at
    30 degrees, the direction 75 degrees has cos(2 (75 - 30)) = 0: the mean defocus, the same value."""
    p = [torch.tensor([v], dtype=torch.float64) for v in (1e4, 1e4, 0.0, 300.0, 2.7, 0.1, 0.0)]
    assert compute_ctf(torch.tensor([[[0.1, 0.0]]], dtype=torch.float64), *p).item() == pytest.approx(0.030373,
                                                                                                        abs=1e-6)
    p[0], p[1], p[2] = (torch.tensor([v], dtype=torch.float64) for v in (12000.0, 8000.0, 30.0))
    k = torch.tensor([[[0.1 * math.cos(math.radians(75)), 0.1 * math.sin(math.radians(75))]]], dtype=torch.float64)
    assert compute_ctf(k, *p).item() == pytest.approx(0.030373, abs=1e-6)
