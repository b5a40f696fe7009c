import math

import numpy as np
import pytest
import torch

from cryofield.so3 import (
    euler_to_matrix,
    geodesic_distance,
    grid_resolution_deg,
    grid_size,
    healpix_pix2ang_nest,
    matrix_to_quaternion,
    random_rotations,
    shift_grid,
    so3_children,
    so3_grid,
)


def _unit_vectors(theta, phi):
    return np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)


def _quat_distance_deg(qa, qb):
    """All-pairs geodesic distance in degrees between unit quaternions (n, 4) and (m, 4)."""
    return torch.rad2deg(2 * torch.arccos((qa @ qb.T).abs().clamp(max=1)))


# ---------------------------------------------------------------- HEALPix


def test_base_faces_and_known_pixels():
    theta, phi = healpix_pix2ang_nest(1, np.arange(12))
    z = np.cos(theta)
    np.testing.assert_allclose(z, [2 / 3] * 4 + [0] * 4 + [-2 / 3] * 4, atol=1e-12)
    quarter = np.pi / 2
    np.testing.assert_allclose(phi, np.r_[np.arange(4) + 0.5, np.arange(4), np.arange(4) + 0.5] * quarter,
                               atol=1e-12)
    # the first 4 nested pixels at nside 2 (face 0): south corner, then east (x is the even bits and points
    # north-east), west (y, north-west), north
    t, p = healpix_pix2ang_nest(2, np.arange(4))
    np.testing.assert_allclose(np.cos(t), [1 / 3, 2 / 3, 2 / 3, 11 / 12], atol=1e-12)
    np.testing.assert_allclose(p, np.array([2, 3, 1, 2]) * np.pi / 8, atol=1e-12)
    # inside a face, the nested index runs from the south corner (0) to the north corner (nside^2 - 1)
    t, _ = healpix_pix2ang_nest(4, np.arange(16))
    assert t[0] == t.max() and t[15] == t.min()


@pytest.mark.parametrize("nside", [1, 2, 4, 8])
def test_rings_match_the_equal_area_formulas(nside):
    theta, phi = healpix_pix2ang_nest(nside, np.arange(12 * nside**2))
    assert theta.shape == phi.shape == (12 * nside**2,)
    assert ((theta > 0) & (theta < np.pi)).all() and ((phi >= 0) & (phi < 2 * np.pi)).all()
    z = np.cos(theta)
    for i in range(1, 4 * nside):
        if i < nside:
            z_ring, count, offset = 1 - i**2 / (3 * nside**2), 4 * i, 0.5
        elif i > 3 * nside:
            j = 4 * nside - i
            z_ring, count, offset = -(1 - j**2 / (3 * nside**2)), 4 * j, 0.5
        else:
            z_ring, count, offset = 4 / 3 - 2 * i / (3 * nside), 4 * nside, 0.5 if (i - nside) % 2 == 0 else 0.0
        in_ring = np.abs(z - z_ring) < 1e-9
        assert in_ring.sum() == count, (i, in_ring.sum(), count)
        # equally spaced along the ring: phi = (k + offset) * 2 pi / count
        np.testing.assert_allclose(np.sort(phi[in_ring]), (np.arange(count) + offset) * 2 * np.pi / count,
                                   atol=1e-12)
    v = _unit_vectors(theta, phi)
    np.testing.assert_allclose(v.mean(0), 0, atol=1e-12)
    closest = v @ v.T - 2 * np.eye(len(v))
    assert closest.max() < 1 - 1e-6  # all directions distinct


@pytest.mark.parametrize("nside", [1, 2, 4, 8])
def test_nested_children_are_the_four_nearest_pixels(nside):
    parent = _unit_vectors(*healpix_pix2ang_nest(nside, np.arange(12 * nside**2)))
    child = _unit_vectors(*healpix_pix2ang_nest(2 * nside, np.arange(48 * nside**2)))
    nearest = np.argsort(-(parent @ child.T), axis=1)[:, :4]
    expected = 4 * np.arange(len(parent))[:, None] + np.arange(4)
    np.testing.assert_array_equal(np.sort(nearest, axis=1), expected)


def test_healpix_input_checks():
    with pytest.raises(ValueError):
        healpix_pix2ang_nest(3, np.arange(4))
    with pytest.raises(ValueError):
        healpix_pix2ang_nest(2, np.array([48]))
    with pytest.raises(TypeError):
        healpix_pix2ang_nest(2, np.array([0.5]))
    theta, phi = healpix_pix2ang_nest(4, np.arange(24).reshape(2, 3, 4))
    assert theta.shape == phi.shape == (2, 3, 4)


def test_against_healpy():
    healpy = pytest.importorskip("healpy")
    for nside in (1, 2, 16):
        ipix = np.arange(12 * nside**2)
        ours = healpix_pix2ang_nest(nside, ipix)
        theirs = healpy.pix2ang(nside, ipix, nest=True)
        np.testing.assert_allclose(ours[0], theirs[0], atol=1e-12)
        np.testing.assert_allclose(ours[1], theirs[1], atol=1e-12)


# ---------------------------------------------------------------- SO(3) grid


def test_sizes_and_resolution():
    assert [grid_size(level) for level in range(4)] == [72, 576, 4608, 36864]
    assert [grid_resolution_deg(level) for level in range(3)] == [60.0, 30.0, 15.0]
    for level in range(3):
        assert so3_grid(level).shape == (grid_size(level), 3, 3)
    with pytest.raises(ValueError):
        grid_size(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotations_are_proper(dtype):
    rot = so3_grid(2, dtype=dtype)
    assert rot.dtype == dtype
    eye = torch.eye(3, dtype=dtype).expand_as(rot)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye, atol=tol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(len(rot), dtype=dtype), atol=tol, rtol=0)


def test_flat_index_layout_and_euler_angles():
    level, nside, n_psi = 1, 2, 12
    rot = so3_grid(level, dtype=torch.float64)
    theta, phi = healpix_pix2ang_nest(nside, np.arange(12 * nside**2))
    pixel, j = np.divmod(np.arange(len(rot)), n_psi)
    face = pixel // 4**level
    offset = np.where(face < 4, 1, np.where(face >= 8, -1, 0)) * np.rad2deg(phi[pixel])  # polar faces
    euler = np.stack([np.rad2deg(phi[pixel]), np.rad2deg(theta[pixel]), (j + 0.5) * 360 / n_psi - offset], -1)
    torch.testing.assert_close(rot, euler_to_matrix(torch.from_numpy(euler)), atol=1e-12, rtol=0)
    # the viewing direction R^T e_z is the pixel centre; the psi of one pixel are in-plane rotations
    torch.testing.assert_close(rot[:, 2, :], torch.from_numpy(_unit_vectors(theta, phi)[pixel]), atol=1e-12, rtol=0)
    in_plane = rot[1::n_psi] @ rot[0::n_psi].transpose(-1, -2)
    step = math.radians(360 / n_psi)
    expected = torch.tensor([[math.cos(step), math.sin(step), 0], [-math.sin(step), math.cos(step), 0], [0, 0, 1]],
                            dtype=torch.float64)
    torch.testing.assert_close(in_plane, expected.expand_as(in_plane), atol=1e-12, rtol=0)


def test_indices_select_any_shape():
    full = so3_grid(2)
    idx = torch.tensor([[0, 5, 4607], [100, 2000, 3]])
    torch.testing.assert_close(so3_grid(2, idx), full[idx])
    assert so3_grid(2, torch.tensor(7)).shape == (3, 3)
    with pytest.raises(IndexError):
        so3_grid(1, torch.tensor([576]))
    with pytest.raises(TypeError):
        so3_grid(1, torch.tensor([1.0]))


def test_level2_is_uniform_and_covers_so3():
    level = 2
    res = grid_resolution_deg(level)
    q = matrix_to_quaternion(so3_grid(level, dtype=torch.float64)).float()
    dist = _quat_distance_deg(q, q)
    dist.fill_diagonal_(float("inf"))
    nearest = dist.min(1).values
    assert nearest.max() < 2 * nearest.min()
    assert 0.8 * res < nearest.min() and nearest.max() < 1.1 * res
    assert abs(nearest.mean().item() - res) < 1.5
    random = matrix_to_quaternion(random_rotations(2000, generator=torch.Generator().manual_seed(0))).float()
    covering = _quat_distance_deg(random, q).min(1).values
    assert covering.max() < res
    # a cross-check of the quaternion distance with the matrix one
    rot = so3_grid(level, dtype=torch.float64)
    pair = torch.rad2deg(geodesic_distance(rot[:1], rot[dist[0].argmin()][None]))
    assert abs(pair.item() - nearest[0].item()) < 1e-3


# ---------------------------------------------------------------- children


@pytest.mark.parametrize("level", [0, 1, 2])
def test_children_enumerate_the_next_level_once(level):
    children = so3_children(torch.arange(grid_size(level)), level)
    assert children.shape == (grid_size(level), 8) and children.dtype == torch.int64
    torch.testing.assert_close(children.flatten().sort().values, torch.arange(grid_size(level + 1)))
    assert so3_children(torch.tensor([[0, 1], [2, 3]]), level).shape == (2, 2, 8)
    with pytest.raises(IndexError):
        so3_children(torch.tensor([grid_size(level)]), level)


def _parent_child_distances(level):
    parents = torch.arange(grid_size(level))
    children = so3_children(parents, level)
    rot_p = so3_grid(level, parents, dtype=torch.float64)
    rot_c = so3_grid(level + 1, children, dtype=torch.float64)
    rotation = torch.rad2deg(geodesic_distance(rot_p[:, None], rot_c))
    direction = torch.rad2deg(torch.arccos((rot_p[:, None, 2, :] * rot_c[..., 2, :]).sum(-1).clamp(-1, 1)))
    return rot_p, rotation, direction


@pytest.mark.parametrize("level", [0, 1, 2])
def test_children_are_near_their_parent(level):
    bound = 0.75 * grid_resolution_deg(level)
    rot_p, rotation, direction = _parent_child_distances(level)
    assert direction.max() < bound
    # away from the polar caps (|z| <= 2/3) the rotations themselves are close
    outside_caps = rot_p[:, 2, 2].abs() <= 2 / 3 + 1e-9
    assert outside_caps.any()
    assert rotation[outside_caps].max() < bound


@pytest.mark.parametrize("level", [0, 1, 2])
def test_children_are_near_their_parent_in_the_polar_caps(level):
    """The psi offset on the polar faces keeps children close where plain Euler angles would not."""
    _, rotation, _ = _parent_child_distances(level)
    assert rotation.max() < 0.75 * grid_resolution_deg(level)


# ---------------------------------------------------------------- shifts


def test_shift_grid_spacing_centring_and_order():
    grid = shift_grid(8.0, 4)
    assert grid.shape == (16, 2) and grid.dtype == torch.float32
    axis = torch.tensor([-6.0, -2.0, 2.0, 6.0])  # spacing 2 * 8 / 4 = 4
    torch.testing.assert_close(grid[:4, 0], axis)  # x fastest
    torch.testing.assert_close(grid[::4, 1], axis)
    torch.testing.assert_close(grid[:4, 1], torch.full((4,), -6.0))
    torch.testing.assert_close(grid.mean(0), torch.zeros(2))
    odd = shift_grid(3.0, 3, dtype=torch.float64)
    torch.testing.assert_close(odd[4], torch.zeros(2, dtype=torch.float64))  # odd n has the centre
    torch.testing.assert_close(odd[:3, 0], torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(shift_grid(5.0, 1), torch.zeros(1, 2))
    with pytest.raises(ValueError):
        shift_grid(1.0, 0)


def test_shift_grid_around_centres_and_next_level():
    centers = torch.tensor([[[1.0, -2.0], [0.5, 3.0]]], dtype=torch.float64)
    grid = shift_grid(4.0, 2, centers)
    assert grid.shape == (1, 2, 4, 2) and grid.dtype == torch.float64
    torch.testing.assert_close(grid - centers[..., None, :], shift_grid(4.0, 2, dtype=torch.float64).expand_as(grid))
    # next level: half the extent, half the spacing; with n = 2 the children tile the parent cell
    coarse, fine = shift_grid(4.0, 2), shift_grid(2.0, 2)
    torch.testing.assert_close(coarse[1, 0] - coarse[0, 0], 2 * (fine[1, 0] - fine[0, 0]))
    torch.testing.assert_close(fine.abs().max(), coarse.abs().max() / 2)
    children = shift_grid(2.0, 2, coarse).reshape(-1, 2)
    torch.testing.assert_close(children.sort(0).values, shift_grid(4.0, 4).sort(0).values)
