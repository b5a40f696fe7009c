import numpy as np
import pytest
import torch

from cryofield.fourier import fft_center, lattice
from cryofield.io import read_map
from cryofield.metrics import (
    adjusted_rand_index,
    apply_bfactor,
    auto_mask,
    evaluation_images,
    flip_hand,
    fsc,
    guinier_bfactor,
    latent_pc_spearman,
    normalized_mse,
    per_image_fsc,
)


@pytest.fixture
def hand(data):
    volume, apix = read_map(data / "maps/hand-vol.mrc")
    return volume, apix


def test_auto_mask_follows_the_recipe(hand):
    volume, apix = hand
    mask = auto_mask(volume, apix, dilate_angstrom=3, soft_edge_angstrom=4)
    core = volume >= 0.5 * np.percentile(volume, 99.99)
    assert mask.dtype == np.float32 and mask.min() >= 0 and mask.max() == 1
    assert np.all(mask[core] == 1)
    assert 0 < ((mask > 0) & (mask < 1)).sum()
    assert (mask > 0).sum() > (mask == 1).sum() > core.sum()
    with pytest.raises(ValueError):
        auto_mask(volume, apix, threshold=volume.max() + 1)


def test_guinier_bfactor_recovers_an_applied_blur(hand):
    volume, apix = hand
    v = torch.from_numpy(volume).double()
    b0 = guinier_bfactor(v, apix, low_angstrom=8)
    blurred = apply_bfactor(v, apix, 50.0)
    assert guinier_bfactor(blurred, apix, low_angstrom=8) - b0 == pytest.approx(50.0, rel=0.02)
    sharpened = apply_bfactor(blurred, apix, -50.0)
    torch.testing.assert_close(sharpened, v, atol=1e-8 * v.abs().max().item(), rtol=0)


@pytest.mark.parametrize("size", [16, 15])
def test_flip_hand_is_a_mirror_through_the_origin(size):
    v = torch.randn(size, size, size, dtype=torch.float64)
    f = flip_hand(v)
    c = size // 2
    assert f[c].equal(v[c]) and f[c + 2].equal(v[c - 2])
    assert torch.equal(flip_hand(f), v)
    assert np.array_equal(flip_hand(v.numpy()), f.numpy())
    # the transform of a mirrored map is the mirrored transform
    k = lattice(size, 3)
    assert k.shape[:3] == (size,) * 3
    torch.testing.assert_close(fft_center(f, 3), flip_hand(fft_center(v, 3)))


def test_flip_hand_changes_the_map_unless_it_is_symmetric(hand):
    volume, _ = hand
    freqs, curve = fsc(torch.from_numpy(flip_hand(volume)), torch.from_numpy(volume))
    assert curve[5:].mean() < 0.8  # the hand is chiral


def test_normalized_mse():
    t = torch.ones(4, 4, 4)
    assert normalized_mse(t, t) == 0
    assert normalized_mse(2 * t, t) == pytest.approx(1.0)


def test_evaluation_images_spacing_and_states():
    coords = np.random.default_rng(0).uniform(0, 1, 1000)
    picks = evaluation_images(coords, 100)
    assert len(picks) == 100 and np.all(np.diff(coords[picks]) >= 0)
    assert coords[picks[0]] == coords.min() and coords[picks[-1]] == coords.max()
    states = np.repeat(np.arange(3), [500, 300, 200])
    picks = evaluation_images(coords, 100, states=states)
    assert np.bincount(states[picks]).tolist() == [34, 33, 33]


def test_per_image_fsc_perfect_and_noisy(hand):
    volume = torch.from_numpy(hand[0])
    perfect = per_image_fsc([(volume, volume)] * 3)
    assert perfect["resolution_px_mean"] == pytest.approx(2.0) and perfect["auc_mean"] == pytest.approx(1.0, abs=0.02)
    noise = torch.randn(volume.shape, generator=torch.Generator().manual_seed(0)) * volume.std() * 3
    noisy = per_image_fsc([(volume + noise, volume)])
    assert noisy["resolution_px_mean"] > 2.5 and noisy["auc_mean"] < perfect["auc_mean"]


def test_latent_spearman_and_ari():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 1, 500)
    latents = np.column_stack([np.exp(3 * t), rng.normal(size=500) * 0.01, rng.normal(size=500) * 0.01])
    rho = latent_pc_spearman(latents, t)
    assert rho.shape == (1, 1) and rho[0, 0] > 0.99
    states = rng.integers(0, 3, 300)
    assert adjusted_rand_index((states + 1) % 3, states) == pytest.approx(1.0)
    assert abs(adjusted_rand_index(rng.integers(0, 3, 300), states)) < 0.05


def test_pose_error_aligns_the_frame():
    from cryofield.metrics import pose_error
    from cryofield.so3 import random_rotations, rotation_about_x

    truth = random_rotations(50, generator=torch.Generator().manual_seed(0)).numpy()
    frame = rotation_about_x(30).numpy()
    tilt = rotation_about_x(2).numpy()
    estimated = truth @ frame @ tilt  # one rotation of the whole frame (32 degrees): alignment removes it
    assert pose_error(estimated, truth)["rotation_deg_median"] < 1e-4
    assert pose_error(estimated, truth, align=False)["rotation_deg_median"] == pytest.approx(32, abs=1e-4)
    shifts = np.zeros((50, 2))
    error = pose_error(truth, truth, shifts + [0.3, 0.4], shifts)
    assert error["rotation_deg_mean"] < 1e-4 and error["shift_px_median"] == pytest.approx(0.5)
