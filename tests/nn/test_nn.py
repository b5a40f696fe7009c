import math

import pytest
import torch

from cryofield.fourier import fft_center, ifft_center
from cryofield.imaging import render_slices, render_volume
from cryofield.nn import (
    GaussianFourierFeatures,
    ImageEncoder,
    ResidualMLP,
    TiltPairEncoder,
    VolumeDecoder,
    canonical_half,
    geometric_frequencies,
    kl_divergence,
    make_encoding,
    reparameterize,
)
from cryofield.so3 import random_rotations


def test_geometric_series_spans_box_to_nyquist():
    f = geometric_frequencies(64)
    assert len(f) == 32
    assert f[0].item() == pytest.approx(64 * math.pi) and f[-1].item() == pytest.approx(2 * math.pi)
    ratios = f[1:] / f[:-1]
    torch.testing.assert_close(ratios, ratios[0].expand_as(ratios))
    low = geometric_frequencies(64, low_frequency=True)
    assert len(low) == 32 - 4 and low.max() < f.max() and low.min() == f.min()


def test_encodings_shapes_and_determinism():
    coords = torch.rand(5, 7, 3) - 0.5
    for kind in ("gaussian", "geom_full", "geom_lowf"):
        enc = make_encoding(kind, 64)
        out = enc(coords)
        assert out.shape == (5, 7, enc.out_dim) and out.abs().max() <= 1
    a, b = GaussianFourierFeatures(64, 10, seed=3), GaussianFourierFeatures(64, 10, seed=3)
    assert torch.equal(a.matrix, b.matrix)
    assert a.matrix.std().item() == pytest.approx(0.5 * 32, rel=0.5)
    with pytest.raises(ValueError):
        make_encoding("nope", 64)


def test_canonical_half_picks_one_of_each_pair():
    k = torch.randint(-3, 4, (500, 3)).float()
    assert torch.all(canonical_half(k) ^ canonical_half(-k) | (k == 0).all(-1))
    assert canonical_half(torch.zeros(1, 3)).item()


@pytest.mark.parametrize("zdim", [0, 4])
def test_decoder_is_exactly_hermitian(zdim):
    torch.manual_seed(0)
    decoder = VolumeDecoder(make_encoding("gaussian", 32), zdim=zdim, hidden=32, layers=2)
    k = torch.rand(3, 50, 3) - 0.5
    z = torch.randn(3, zdim) if zdim else None
    k[:, 0] = 0  # the origin is its own mate: F(0) must be real
    f, g = decoder(k, z), decoder(-k, z)
    torch.testing.assert_close(g, f.conj(), atol=0, rtol=0)
    assert torch.all(f[:, 0].imag == 0)
    if zdim:
        assert not torch.allclose(decoder(k, z), decoder(k, z + 1))
        with pytest.raises(ValueError):
            decoder(k)


def test_rendered_volume_and_slices_agree():
    torch.manual_seed(0)
    size = 16
    decoder = VolumeDecoder(make_encoding("geom_lowf", size), hidden=32, layers=2)
    with torch.no_grad():
        volume = render_volume(decoder, size)
        spectrum = fft_center(volume.double(), 3)
        central = render_slices(decoder, torch.eye(3)[None], size)[0]
        slices = render_slices(decoder, random_rotations(4, generator=torch.Generator().manual_seed(1)).float(), size)
    # R = identity: the slice is the kz = 0 plane of the volume's transform, inside the circle |k| < D/2
    k = torch.stack(torch.meshgrid(*(torch.arange(size) - size // 2,) * 2, indexing="ij"), -1).float()
    circle = k.norm(dim=-1) < size / 2
    torch.testing.assert_close(central[circle].cdouble(), spectrum[size // 2][circle], atol=1e-4, rtol=1e-4)
    assert torch.all(central[~circle] == 0)
    # every rendered slice is Hermitian: its inverse transform is real
    assert slices.shape == (4, size, size)
    assert ifft_center(slices.cdouble()).imag.abs().max() < 1e-5 * ifft_center(slices.cdouble()).real.abs().max()


def test_encoders_and_vae_terms():
    torch.manual_seed(0)
    enc = ImageEncoder(100, 32, 2, zdim=3)
    mu, logvar = enc(torch.randn(5, 100))
    assert mu.shape == logvar.shape == (5, 3)
    tilt = TiltPairEncoder(100, 32, 2, zdim=3)
    mu2, logvar2 = tilt(torch.randn(5, 100), torch.randn(5, 100))
    assert mu2.shape == (5, 3)
    assert torch.allclose(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))
    assert kl_divergence(torch.ones(1, 2), torch.zeros(1, 2)).item() == pytest.approx(1.0)
    samples = reparameterize(torch.full((20000, 1), 2.0), torch.full((20000, 1), math.log(4.0)))
    assert samples.mean().item() == pytest.approx(2.0, abs=0.05) and samples.std().item() == pytest.approx(2, rel=0.05)
    mlp = ResidualMLP(4, 8, 3, 2)
    assert mlp(torch.randn(7, 4)).shape == (7, 2)
    assert len(mlp.blocks) == 3  # cryoDRGN's meaning of 8 x 3: three hidden-to-hidden layers
    assert ResidualMLP(4, 8, 0, 2)(torch.randn(7, 4)).shape == (7, 2)
    with pytest.raises(ValueError):
        ResidualMLP(4, 8, -1, 2)
    # a per-item extra input, broadcast over points: the network of the concatenation, and z's gradient
    x, z = torch.randn(3, 5, 3), torch.randn(3, 1, 1, requires_grad=True)
    split = mlp(x, extra=z)
    joint = mlp(torch.cat([x, z.expand(-1, 5, -1)], -1))
    torch.testing.assert_close(split, joint)
    (grad_split,) = torch.autograd.grad(split.square().sum(), z)
    (grad_joint,) = torch.autograd.grad(joint.square().sum(), z)
    torch.testing.assert_close(grad_split, grad_joint)
    shared = mlp(torch.cat([x[0].expand(3, -1, -1), z.expand(-1, 5, -1)], -1))
    torch.testing.assert_close(mlp(x[0], extra=z), shared)  # points shared by every item


def test_residual_blocks_in_either_form():
    torch.manual_seed(0)
    x = torch.randn(5, 4)
    post, pre = ResidualMLP(4, 8, 2, 3), ResidualMLP(4, 8, 2, 3, residual="pre")
    pre.load_state_dict(post.state_dict())  # the same parameters compute different functions

    def by_hand(block_form):
        h = torch.relu(post.first(x))
        for block in post.blocks:
            h = block_form(block, h)
        return post.last(h)

    torch.testing.assert_close(post(x), by_hand(lambda block, h: torch.relu(block(h) + h)))  # the seed's, cryoDRGN's
    torch.testing.assert_close(pre(x), by_hand(lambda block, h: h + torch.relu(block(h))))
    assert not torch.allclose(post(x), pre(x))
    with pytest.raises(ValueError, match="residual"):
        ResidualMLP(4, 8, 1, 2, residual="mid")
