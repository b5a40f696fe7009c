"""The CPU bf16 fast path: oneDNN-fused MLP layers, bf16 encodings, and the allocator setting."""

import os
import subprocess
import sys

import pytest
import torch

import cryofield.nn.mlp as mlp_module
from cryofield.nn import ResidualMLP
from cryofield.nn.encodings import GaussianFourierFeatures, phases, sin_cos
from cryofield.train.host_memory import keep_freed_memory

needs_onednn_bf16 = pytest.mark.skipif(not mlp_module._onednn_bf16(), reason="this CPU has no oneDNN bf16 products")


def _forward_backward(mlp, x, extra, *, autocast, fused):
    mlp.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    extra = None if extra is None else extra.clone().requires_grad_(True)
    original = mlp_module.fused_cpu_bf16
    mlp_module.fused_cpu_bf16 = lambda tensor: fused and original(tensor)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = mlp(x, extra).float()
    finally:
        mlp_module.fused_cpu_bf16 = original
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    (out * weights).sum().backward()
    grads = [p.grad.clone() for p in mlp.parameters()] + [x.grad] + ([] if extra is None else [extra.grad])
    return out.detach(), grads


def _relative(a, b):
    return ((a - b).norm() / b.norm()).item()


@needs_onednn_bf16
@pytest.mark.parametrize("shapes", [((4, 300, 40), (4, 1, 8)),  # a latent per item of points
                                    ((300, 40), (4, 1, 8)),  # one set of points for every latent
                                    ((4, 300, 48), None), ((2, 3, 50, 48), None)])
def test_fused_layers_compute_the_mlp_as_closely_as_autocast(shapes):
    torch.manual_seed(0)
    mlp = ResidualMLP(48, 64, 3, 2)
    x, extra = (torch.randn(*shape) if shape else None for shape in shapes)
    assert mlp_module.fused_cpu_bf16(x) is False  # only under bf16 autocast
    exact, exact_grads = _forward_backward(mlp, x, extra, autocast=False, fused=False)
    plain, plain_grads = _forward_backward(mlp, x, extra, autocast=True, fused=False)
    fused, fused_grads = _forward_backward(mlp, x, extra, autocast=True, fused=True)
    assert fused.shape == exact.shape == plain.shape
    assert _relative(fused, exact) < 0.02 and _relative(fused, exact) < 1.5 * _relative(plain, exact)
    for got, reference, rounded in zip(fused_grads, exact_grads, plain_grads, strict=True):
        # bf16's own rounding (random weights: 5-10 %), and no further from float32 than autocast's layers
        assert _relative(got, reference) < 0.2
        assert _relative(got, reference) < 1.5 * _relative(rounded, reference) + 1e-3


@needs_onednn_bf16
def test_fused_layers_keep_a_diverged_weight_visible():
    mlp = ResidualMLP(48, 64, 2, 2)
    with torch.no_grad():
        mlp.first.weight.fill_(float("inf"))  # oneDNN's own ReLU would turn the NaNs into zeros
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert mlp_module.fused_cpu_bf16(torch.zeros(1))
        out = mlp(torch.randn(5, 40, 40), torch.randn(5, 1, 8))
    assert torch.isnan(out).all()


def test_features_under_autocast_are_the_float32_features_rounded_once():
    encoding = GaussianFourierFeatures(64, 30)
    coords = torch.rand(3, 100, 3) - 0.5
    reference = encoding(coords)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = encoding(coords)
        with_gradient = sin_cos(phases(coords.clone().requires_grad_(True), encoding.matrix))
    assert features.dtype == torch.bfloat16 and reference.dtype == torch.float32
    torch.testing.assert_close(features, reference.bfloat16(), rtol=0, atol=0)
    assert with_gradient.dtype == torch.float32 and with_gradient.requires_grad  # no out= where a gradient flows


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_allocator_setting_is_made_once_and_yields_to_the_users():
    assert keep_freed_memory() and keep_freed_memory()
    code = "from cryofield.train.host_memory import keep_freed_memory as k; print(k())"
    env = os.environ | {"MALLOC_MMAP_THRESHOLD_": "65536"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
