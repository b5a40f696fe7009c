"""The critical exposure of Grant and Grigorieff (2015) and the weights it gives tilt images."""

import math

import pytest
import torch

from cryofield.imaging import critical_exposure, exposure_weights
from cryofield.imaging.dose import OPTIMAL_EXPOSURE_RATIO


def test_critical_exposure_follows_the_published_curve():
    k = torch.tensor([0.1, 0.25, 1 / 3])
    expected = [0.24499 * f ** -1.6649 + 2.8141 for f in (0.1, 0.25, 1 / 3)]  # about 14.1, 3.9, 3.3 e/A^2
    torch.testing.assert_close(critical_exposure(k, 300), torch.tensor(expected))
    assert expected[0] == pytest.approx(14.14, abs=0.01)
    torch.testing.assert_close(critical_exposure(k, 200.0), 0.8 * torch.tensor(expected))
    with pytest.raises(ValueError, match="at 120 kV"):
        critical_exposure(k, 120)


def test_exposure_weights():
    k = torch.tensor([0.0, 0.1, 0.25])
    limit = critical_exposure(k[1:])
    exposure = torch.tensor([0.0, 2 * float(limit[0]), 30.0])
    weights = exposure_weights(k, exposure, cutoff=False)
    assert weights.shape == (3, 3) and (weights[0] == 1).all() and (weights[:, 0] == 1).all()  # none, or k = 0
    assert float(weights[1, 1]) == pytest.approx(math.exp(-1))  # 2 critical exposures: 1/e of the amplitude
    cut = exposure_weights(k, exposure)
    beyond = exposure[:, None] > OPTIMAL_EXPOSURE_RATIO * critical_exposure(k)[None]
    assert beyond[2, 2] and (cut[beyond] == 0).all() and torch.equal(cut[~beyond], weights[~beyond])
