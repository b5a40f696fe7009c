"""Pose search against an analytic model: a few Gaussian blobs, whose transform is exact."""

from __future__ import annotations

import math

import pytest
import torch

from cryofield.fourier import lattice
from cryofield.imaging import half_lattice_mask
from cryofield.posesearch import PoseSearch, SearchSettings, render_lattice
from cryofield.so3 import geodesic_distance, random_rotations


class Blobs:
    """Gaussian blobs of width ``sigma`` px at ``centres`` (J, 3) px: ``F(k)`` exact, ``k`` in cycles per px."""

    def __init__(self, centres: torch.Tensor, sigma: float = 1.5):
        self.centres, self.sigma = centres, sigma

    def __call__(self, coords: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        envelope = torch.exp(-2 * math.pi**2 * self.sigma**2 * coords.square().sum(-1))
        phase = -2 * math.pi * coords @ self.centres.T  # (..., J)
        return envelope * torch.polar(torch.ones_like(phase), phase).sum(-1)


def _dataset(model, box, n, *, noise=0.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    rotations = random_rotations(n, generator=gen, dtype=torch.float32)
    shifts = (torch.rand(n, 2, generator=gen) - 0.5) * 6  # RELION shifts, px
    coords = lattice(box, 2, normalized=False)[half_lattice_mask(box)]
    k3 = torch.cat([coords, torch.zeros(len(coords), 1)], -1)
    slices = model(torch.einsum("pi,bij->bpj", k3, rotations) / box)
    images = slices * torch.polar(torch.ones(n, len(coords)), 2 * math.pi * (shifts @ coords.T) / box)
    if noise:
        images = images + noise * torch.complex(torch.randn(images.shape, generator=gen),
                                                torch.randn(images.shape, generator=gen))
    return coords, images, rotations, shifts


@pytest.fixture(scope="module")
def blobs():
    gen = torch.Generator().manual_seed(3)
    return Blobs((torch.rand(7, 3, generator=gen) - 0.5) * 14)


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize(("noise", "max_deg", "max_px"), [(0.0, 1.5, 0.15), (0.6, 4.0, 0.3)])
def test_search_recovers_poses(blobs, noise, max_deg, max_px, amp):
    """Noiseless: to the final grid's spacing (0.94 degrees); at a per-pixel SNR of about 0.8, close to it.

    The same with the base step in bf16 (``amp``).
    """
    box = 32
    coords, images, rotations, shifts = _dataset(blobs, box, 48, noise=noise)
    settings = SearchSettings(kmin=6, kmax=16, shift_extent_px=5)
    model_lattice = render_lattice(blobs, box, 16)
    result = PoseSearch(coords, box, settings, batch_size=16, amp=amp)(model_lattice, images)
    angles = torch.rad2deg(geodesic_distance(result.rotations.double(), rotations.double()))
    shift_error = (result.shifts_px - shifts).norm(dim=-1)
    assert angles.median() < max_deg, angles
    assert shift_error.median() < max_px, shift_error
    assert settings.final_resolution(box)[0] == pytest.approx(15 / 16)


def test_search_with_ctf_and_per_image_lattices(blobs):
    """The CTF enters the score, and one lattice per image (heterogeneous models) gives the same poses."""
    box = 32
    coords, images, rotations, _ = _dataset(blobs, box, 12)
    r = coords.norm(dim=-1)
    ctf = torch.cos(0.02 * r**2 + 0.3)[None].expand(len(images), -1).contiguous()
    images = images * ctf
    settings = SearchSettings(kmin=6, kmax=16, shift_extent_px=5, rounds=3)
    search = PoseSearch(coords, box, settings, batch_size=6)
    shared = search(render_lattice(blobs, box, 16), images, ctf)
    z = torch.zeros(len(images), 1)
    per_image = search(render_lattice(lambda k, z: blobs(k), box, 16, z=z), images, ctf)
    angles = torch.rad2deg(geodesic_distance(shared.rotations.double(), rotations.double()))
    assert angles.median() < 3.0
    assert torch.allclose(shared.rotations, per_image.rotations, atol=1e-5)
    assert torch.allclose(shared.shifts_px, per_image.shifts_px, atol=1e-5)


def test_lattice_slices_match_the_model(blobs):
    """Interpolated slices of an oversampled lattice agree with the model to a few per cent."""
    box = 32
    coords = lattice(box, 2, normalized=False)[half_lattice_mask(box)]
    coords = coords[coords.norm(dim=-1) < 12]
    rotations = random_rotations(5, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    k3 = torch.cat([coords, torch.zeros(len(coords), 1)], -1)
    exact = blobs(torch.einsum("pi,bij->bpj", k3, rotations) / box)
    model_lattice = render_lattice(blobs, box, 12, oversample=2)
    approx = model_lattice.slices(rotations, coords)
    relative = (approx - exact).abs().pow(2).sum() / exact.abs().pow(2).sum()
    assert relative < 0.02
    coarse = render_lattice(blobs, box, 12, oversample=1).slices(rotations, coords)
    assert (coarse - exact).abs().pow(2).sum() / exact.abs().pow(2).sum() > relative  # oversampling helps


def test_one_lattice_split_across_threads_gives_the_same_slices(blobs):
    """A single lattice's points go to ``grid_sample`` in pieces (padded to equal length): bit-identical values."""
    box = 32
    coords = lattice(box, 2, normalized=False)[half_lattice_mask(box)][:333]  # R * P not a multiple of the pieces
    rotations = random_rotations(17, generator=torch.Generator().manual_seed(2), dtype=torch.float32)
    shared = render_lattice(blobs, box, 16)
    whole = shared.slices(rotations, coords)  # one lattice, 17 x 333 points (over 4,096): split
    copies = type(shared)(shared.channels.expand(2, -1, -1, -1, -1), shared.oversample, shared.radius_px)
    separate = copies.slices(torch.stack([rotations, rotations]), coords)  # one lattice per row: not split
    assert torch.equal(whole, separate[0]) and torch.equal(whole, separate[1])


def test_branch_and_bound_finds_most_poses(blobs):
    """The legacy search: the same base step as the hierarchical one, then pruning by bounds.

    Noiseless images make its bounds tight and its pruning risky (the seed's caveat): it
    finds most poses at two subdivisions, fewer than the hierarchical search keeping 8.
    """
    from cryofield.posesearch import BnbSettings, BranchAndBound

    box = 32
    coords, images, rotations, shifts = _dataset(blobs, box, 12)
    settings = BnbSettings(kmin=6, subdivisions=2, shift_extent_px=5, max_candidates=64)
    assert settings.band_limits(box) == [6, 11, 16]
    result = BranchAndBound(coords, box, settings, batch_size=6)(render_lattice(blobs, box, 16), images)
    angles = torch.rad2deg(geodesic_distance(result.rotations.double(), rotations.double()))
    assert angles.median() < 10.0 and (angles < 20).sum() >= 7, angles
    found = angles < 20
    assert (result.shifts_px - shifts).norm(dim=-1)[found].median() < 1.0


def test_branch_and_bound_keeps_its_bound_at_a_full_band_level(blobs):
    """With every level at the full band the bound's own candidate survives rounding: each image gets its own pose."""
    from cryofield.posesearch import BnbSettings, BranchAndBound

    box = 32
    coords, images, rotations, _ = _dataset(blobs, box, 6)
    settings = BnbSettings(kmin=16, subdivisions=2, shift_extent_px=5, max_candidates=16)
    result = BranchAndBound(coords, box, settings, batch_size=6)(render_lattice(blobs, box, 16), images)
    assert torch.isfinite(result.errors).all()
    angles = torch.rad2deg(geodesic_distance(result.rotations.double(), rotations.double()))
    assert angles.median() < 20, angles


def test_tilt_pairs_score_both_images(blobs):
    """With a tilted partner each rotation is scored on both images, each at its own shift.

    At a noise level where single images lose many poses, the pairs find more of them, and
    the tilted images' shifts are found independently of the untilted ones.
    """
    from cryofield.posesearch import TiltedViews
    from cryofield.so3 import rotation_about_x

    box = 32
    coords, images, rotations, shifts = _dataset(blobs, box, 40, noise=2.0, seed=4)
    tilt = rotation_about_x(45.0).float()
    gen = torch.Generator().manual_seed(5)
    tilt_shifts = (torch.rand(len(images), 2, generator=gen) - 0.5) * 6
    k3 = torch.cat([coords, torch.zeros(len(coords), 1)], -1)
    tilted = blobs(torch.einsum("pi,bij->bpj", k3, tilt @ rotations) / box)
    tilted = tilted * torch.polar(torch.ones_like(tilted.real), 2 * math.pi * (tilt_shifts @ coords.T) / box)
    tilted = tilted + 2.0 * torch.complex(torch.randn(tilted.shape, generator=gen),
                                          torch.randn(tilted.shape, generator=gen))
    settings = SearchSettings(kmin=6, kmax=16, shift_extent_px=5, rounds=3)
    search = PoseSearch(coords, box, settings, batch_size=16)
    model_lattice = render_lattice(blobs, box, 16)
    single = search(model_lattice, images)
    pairs = search(model_lattice, images, tilted=TiltedViews(tilted, None, tilt))
    right_single = torch.rad2deg(geodesic_distance(single.rotations.double(), rotations.double())) < 5
    right_pairs = torch.rad2deg(geodesic_distance(pairs.rotations.double(), rotations.double())) < 5
    assert single.tilt_shifts_px is None
    assert right_pairs.sum() > right_single.sum() + 5, (right_single.sum(), right_pairs.sum())
    assert (pairs.tilt_shifts_px - tilt_shifts)[right_pairs].norm(dim=-1).median() < 0.5
    assert (pairs.shifts_px - shifts)[right_pairs].norm(dim=-1).median() < 0.5
