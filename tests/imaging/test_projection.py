import numpy as np
import pytest
import torch
from scipy.ndimage import affine_transform

from cryofield.fourier import fft_center, ifft_center
from cryofield.imaging import Backprojector, project, shift_phase
from cryofield.io import read_map
from cryofield.metrics import fsc, resolution_at
from cryofield.simulate.particles import Imaging, VolumeProjector, draw_ctf, draw_poses, simulate_chunks
from cryofield.so3 import euler_to_matrix, random_rotations


def _blobs(size, seed=0):
    """A smooth, compact test volume (sum of Gaussians) well inside the box."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(size) - size // 2,) * 3, indexing="ij")
    vol = np.zeros((size,) * 3)
    for cx, cy, cz in rng.uniform(-size / 5, size / 5, (6, 3)):
        vol += np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * (size / 14) ** 2))
    return torch.from_numpy(vol)


@pytest.mark.parametrize("size", [32, 33])
def test_fourier_slice_theorem_exact_for_axis_rotations(size):
    vol = _blobs(size)
    # R = identity: sum along z; R = 90 deg about y (tilt 90): the image is the sum along x
    rot = euler_to_matrix(torch.tensor([[0.0, 0.0, 0.0], [0.0, 90.0, 0.0]], dtype=torch.float64))
    images = project(vol, rot)
    torch.testing.assert_close(images[0], vol.sum(0), atol=1e-9, rtol=0)
    r = rot[1]
    # X(r) = sum_z V(R^T r): check against a direct real-space rotation of the volume
    c = np.full(3, size // 2)
    rotated = affine_transform(vol.numpy(), r.T.numpy()[::-1, ::-1], offset=c - r.T.numpy()[::-1, ::-1] @ c, order=1)
    np.testing.assert_allclose(images[1].numpy(), rotated.sum(0), atol=1e-6 * vol.sum().item())


def test_projection_of_general_rotation_matches_real_space():
    size = 48
    vol = _blobs(size, seed=2)
    r = euler_to_matrix(torch.tensor([[30.0, 50.0, -70.0]], dtype=torch.float64))
    image = -VolumeProjector([vol.numpy()])(np.zeros(1, int), r, torch.zeros(1, 2, dtype=torch.float64), None)[0]
    m = r[0].T.numpy()[::-1, ::-1]  # in [z, y, x] index order
    c = np.full(3, size // 2)
    expected = affine_transform(vol.numpy(), m, offset=c - m @ c, order=3).sum(0)
    # trilinear interpolation of the 2x-padded, apodization-corrected transform: within 2% of the peak
    assert np.abs(image.numpy() - expected).max() < 0.02 * np.abs(expected).max()


def test_shift_phase_moves_content():
    image = torch.zeros(1, 16, 16, dtype=torch.float64)
    image[0, 8, 8] = 1
    moved = ifft_center(fft_center(image) * shift_phase(16, torch.tensor([[3.0, -2.0]], dtype=torch.float64))).real
    assert moved[0, 6, 11] == pytest.approx(1.0)  # x + 3, y - 2


def test_backprojection_recovers_the_volume():
    size = 32
    vol = _blobs(size)
    rot = random_rotations(1500, generator=torch.Generator().manual_seed(1))
    images = -VolumeProjector([vol.numpy()])(np.zeros(len(rot), int), rot, torch.zeros(len(rot), 2), None)
    bp = Backprojector(size)
    bp.insert(fft_center(images), rot)
    freqs, curve = fsc(bp.reconstruct(1e-3), vol)
    assert curve[: size // 4 + 1].min() > 0.95  # up to half Nyquist (this smooth map has little power beyond)
    assert resolution_at(freqs, curve, 0.5) > 0.4


def test_hand_with_ctf_and_shifts_backprojects_to_the_map(data):
    """The issue's check: simulated hand-vol particles (CTF, shifts, no noise), FSC > 0.9 at half Nyquist."""
    vol, apix = read_map(data / "maps/hand-vol.mrc")
    n, rng = 2000, np.random.default_rng(0)
    imaging = Imaging(apix, shift_px=4)
    rot, shifts = draw_poses(n, imaging.shift_px, rng, seed=0)
    ctf = draw_ctf(n, imaging, 64, rng)
    images = np.concatenate(list(simulate_chunks(VolumeProjector([vol]), np.zeros(n, int), rot, shifts, ctf, imaging)))
    bp = Backprojector(64)
    x = -fft_center(torch.from_numpy(images).double()) * shift_phase(64, torch.from_numpy(shifts))
    from cryofield.imaging import ctf_on_lattice

    bp.insert(x, torch.from_numpy(rot), ctf_on_lattice(torch.from_numpy(ctf), 64))
    freqs, curve = fsc(bp.reconstruct(), torch.from_numpy(vol))
    assert curve[: 64 // 4 + 1].min() > 0.9


def test_fsc_and_resolution(data):
    vol = torch.from_numpy(read_map(data / "maps/hand-vol.mrc")[0])
    freqs, curve = fsc(vol, vol)
    np.testing.assert_allclose(curve[1:], 1, atol=1e-12)
    assert freqs[-1] == 0.5 and len(freqs) == 33
    noisy = vol + torch.randn(vol.shape, generator=torch.Generator().manual_seed(0)) * vol.std() * 2
    freqs, curve = fsc(vol, noisy)
    assert curve[1] > 0.9 and curve[-1] < 0.5
    assert 0 < resolution_at(freqs, curve, 0.5) < 0.5
    assert resolution_at(np.array([0, 0.1, 0.2]), np.array([1, 0.6, 0.4]), 0.5) == pytest.approx(0.15)


def test_projector_with_room_for_one_transform_gives_the_same_images(tmp_path):
    """Volumes whose transforms do not all fit are projected one volume at a time through a scratch file."""
    rng = np.random.default_rng(3)
    volumes = [np.asarray(rng.random((16, 16, 16)), np.float32) for _ in range(3)]
    n = 50
    states = rng.integers(0, 3, n)
    imaging = Imaging(2.0, snr=0.5, shift_px=2)
    rot, shifts = draw_poses(n, imaging.shift_px, rng, seed=0)
    ctf = draw_ctf(n, imaging, 16, rng)
    resident = VolumeProjector(volumes)
    tight = VolumeProjector(volumes, max_bytes=1)  # one transform at a time
    assert resident.resident and not tight.resident
    done = []
    expected = np.concatenate(list(simulate_chunks(resident, states, rot, shifts, ctf, imaging, chunk_size=16)))
    got = np.concatenate(list(simulate_chunks(tight, states, rot, shifts, ctf, imaging, chunk_size=16,
                                              progress=done.append, scratch=tmp_path)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    assert sum(done) == n and list(tmp_path.iterdir()) == []  # every image counted; the scratch file is gone
