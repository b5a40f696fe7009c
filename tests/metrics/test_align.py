import math

import numpy as np
import pytest
import torch

from cryofield.metrics import (
    align_volumes,
    apply_alignment,
    flip_hand,
    map_correlation,
    pose_error_frobenius,
    rotate_volume,
)
from cryofield.so3 import geodesic_distance, random_rotations, rotvec_to_matrix

FLIP = np.diag([1.0, 1.0, -1.0])


def blobs(size: int) -> torch.Tensor:
    """An asymmetric map: five Gaussian blobs of different heights and widths, float32."""
    c = torch.arange(size, dtype=torch.float32) - size // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    s = size / 32
    out = torch.zeros(size, size, size)
    for (px, py, pz), height, width in [((6, 0, 0), 1.0, 1.8), ((0, 8, 2), 0.8, 1.8), ((-3, -4, 7), 0.6, 1.8),
                                        ((-5, 2, -5), 0.5, 2.5), ((1, -7, -3), 0.4, 1.8)]:
        r2 = (x - px * s) ** 2 + (y - py * s) ** 2 + (z - pz * s) ** 2
        out += height * torch.exp(-r2 / (2 * (width * s) ** 2))
    return out


# -- pose error ---------------------------------------------------------------------------------------------

def _poses(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return random_rotations(n, generator=g).numpy(), random_rotations(1, generator=g).numpy()[0], g


def test_hand_flip_relation_of_poses():
    """Projections of flip_hand(V) with F R F are those of V with R (the relation pose_error_frobenius uses)."""
    from cryofield.imaging.projection import project

    volume = blobs(24).double()
    rotations = torch.from_numpy(_poses(4)[0])
    flip = torch.from_numpy(FLIP)
    same = project(volume, rotations)
    mirrored = project(flip_hand(volume), flip @ rotations @ flip)
    assert (same - mirrored).abs().max() < 1e-4 * same.abs().max()  # the unpaired edge plane of an even box
    assert (same - project(flip_hand(volume), rotations)).abs().max() > 0.1 * same.abs().max()


@pytest.mark.parametrize("hand", ["same", "flipped"])
def test_pose_error_removes_frame_hand_and_translation(hand):
    truth, frame, g = _poses(500)
    noise = rotvec_to_matrix(0.01 * torch.randn(500, 3, generator=g, dtype=torch.float64)).numpy()
    reference = truth if hand == "same" else FLIP @ truth @ FLIP
    estimated = reference @ frame @ noise
    rng = np.random.default_rng(0)
    true_shifts = rng.normal(0, 3, (500, 2))
    b = np.array([1.5, -2.0, 0.7])  # the estimate's map is the truth's moved by -b (pixels)
    shifts = true_shifts - (truth @ b)[:, :2] + rng.normal(0, 0.01, (500, 2))
    error = pose_error_frobenius(estimated, truth, shifts, true_shifts)
    assert error["hand"] == hand and error["n"] == 500
    assert error["rot_median"] < 1e-3 and error["rot_mean"] < 1e-3  # 2 * 3 * 0.01^2 ~ 6e-4
    assert error["trans_median"] < 1e-3 and error["trans_mean"] < 1e-3
    np.testing.assert_allclose(error["translation_px"], -b, atol=0.01)
    np.testing.assert_allclose(error["frame_rotation"], frame, atol=0.01)
    unaligned = pose_error_frobenius(estimated, truth, hand="flipped" if hand == "same" else "same")
    assert unaligned["rot_median"] > 1


def test_random_poses_score_like_random_rotations():
    truth, _, g = _poses(4000, seed=1)
    other = random_rotations(4000, generator=g).numpy()
    # E |R - I|_F^2 = 6 - 2 E[trace R] = 6 for uniform R; the median is 4 - 4 cos(a) with (a - sin a) / pi = 1/2
    direct = np.sum((other - np.eye(3)) ** 2, axis=(1, 2))
    assert direct.mean() == pytest.approx(6, abs=0.08)
    angle = 2.3099  # solves a - sin(a) = pi / 2
    assert np.median(direct) == pytest.approx(4 - 4 * math.cos(angle), abs=0.15)
    error = pose_error_frobenius(other, truth)
    # the fitted frame (and hand) can only lower the error of unrelated poses, and not by much
    assert 5.6 < error["rot_mean"] < 6.05 and 6.2 < error["rot_median"] < 6.8


def test_outliers_do_not_spoil_the_median():
    truth, frame, g = _poses(1000, seed=2)
    noise = rotvec_to_matrix(0.01 * torch.randn(1000, 3, generator=g, dtype=torch.float64)).numpy()
    estimated = truth @ frame @ noise
    wrong = np.random.default_rng(2).random(1000) < 0.35
    estimated[wrong] = random_rotations(int(wrong.sum()), generator=g).numpy()
    shifts = np.zeros((1000, 2))
    shifts[wrong] = np.random.default_rng(3).normal(0, 20, (int(wrong.sum()), 2))
    error = pose_error_frobenius(estimated, truth, shifts, np.zeros((1000, 2)))
    assert error["hand"] == "same" and error["rot_median"] < 1e-3 and error["trans_median"] < 1e-9
    assert error["rot_mean"] == pytest.approx(wrong.mean() * 6, rel=0.15)
    assert np.all(error["rot_errors"][~wrong] < 5e-3)


def test_pose_error_checks_shapes():
    truth = _poses(5)[0]
    with pytest.raises(ValueError, match="must both be"):
        pose_error_frobenius(truth[:4], truth)
    with pytest.raises(ValueError, match="hand must be"):
        pose_error_frobenius(truth, truth, hand="left")
    with pytest.raises(ValueError, match="shifts"):
        pose_error_frobenius(truth, truth, np.zeros((5, 3)), np.zeros((5, 3)))


# -- map alignment ------------------------------------------------------------------------------------------

def test_rotate_volume_moves_content_to_r_p_plus_t():
    volume = torch.zeros(17, 17, 17, dtype=torch.float64)
    volume[8 + 3, 8, 8 + 5] = 1.0  # (x, y, z) = (5, 0, 3)
    rotation = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)  # 90 deg about z
    out = rotate_volume(volume, rotation, torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64))
    z, y, x = np.unravel_index(int(out.argmax()), out.shape)
    assert (x - 8, y - 8, z - 8) == (0 + 1, 5 + 2, 3 - 1) and float(out.max()) == pytest.approx(1.0)
    batch = rotate_volume(volume, torch.stack([rotation, torch.eye(3, dtype=torch.float64)]))
    assert batch.shape == (2, 17, 17, 17) and torch.equal(batch[1], volume)


@pytest.mark.parametrize("size, mirrored", [(32, False), (33, True)])
def test_align_volumes_recovers_a_rigid_motion(size, mirrored, one_thread):
    g = torch.Generator().manual_seed(size)
    reference = blobs(size)
    rotation = random_rotations(1, generator=g)[0]
    shift = (torch.rand(3, generator=g, dtype=torch.float64) * 6 - 3)
    # moving(u) = reference(R u + t), so that reference(x) = moving(R^T (x - t))
    moving = rotate_volume(reference, rotation.T.float(), -(rotation.T @ shift).float())
    if mirrored:
        moving = flip_hand(moving)
    moving = moving + 0.03 * torch.randn(moving.shape, generator=g)
    result = align_volumes(reference, moving, search_size=16, level=1)
    assert result.hand == ("flipped" if mirrored else "same")
    assert math.degrees(float(geodesic_distance(torch.from_numpy(result.rotation), rotation))) < 1.5
    assert np.linalg.norm(result.shift_px - shift.numpy()) < 0.3
    assert result.correlation_before < 0.6 < 0.95 < result.correlation_after  # noise limits it
    aligned = apply_alignment(moving, result)
    assert map_correlation(aligned, reference) == pytest.approx(result.correlation_after, abs=1e-6)
    assert result.euler_deg.shape == (3,) and 0 <= result.angle_deg <= 180


def test_align_volumes_checks_inputs():
    with pytest.raises(ValueError, match="same size"):
        align_volumes(torch.zeros(16, 16, 16), torch.zeros(18, 18, 18))
    with pytest.raises(ValueError, match="hand"):
        align_volumes(torch.zeros(16, 16, 16), torch.zeros(16, 16, 16), hand="mirror")
