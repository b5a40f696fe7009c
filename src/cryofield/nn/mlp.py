"""Multilayer perceptrons with residual connections."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

RESIDUAL_FORMS = ("post", "pre")


@functools.cache
def _onednn_bf16() -> bool:
    """Whether this CPU runs oneDNN's bf16 products (AVX-512 BF16 or AMX)."""
    try:
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fused_cpu_bf16(x: torch.Tensor) -> bool:
    """Whether :class:`ResidualMLP` runs ``x`` through oneDNN's fused bf16 layers (below)."""
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and _onednn_bf16())


class _FirstLayer(torch.autograd.Function):
    """``relu(x_i W^T + c_i)`` for items ``i``: x (I, P, F), c (I, H), W (H, F), all bf16.

    Each item is one oneDNN product with its bias in the product's epilogue. The ReLU is
    PyTorch's, in place: oneDNN's maps NaN to 0, which would hide a diverged run's weights.
    """

    @staticmethod
    def forward(ctx, x, bias, weight):
        out = torch.stack([torch.ops.mkldnn._linear_pointwise(item, weight, b, "none", [], "")
                           for item, b in zip(x, bias)]).relu_()
        ctx.save_for_backward(x, weight, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, out = ctx.saved_tensors
        masked = torch.ops.aten.threshold_backward(grad, out, 0)
        flat = masked.reshape(-1, masked.shape[-1])
        grad_x = masked @ weight if ctx.needs_input_grad[0] else None
        return grad_x, masked.sum(1), flat.T @ x.reshape(-1, x.shape[-1])


class _PostBlock(torch.autograd.Function):
    """``relu(h W^T + b + h)``: h (N, H), W (H, H), b (H,), all bf16.

    The residual add is in the product's epilogue, forward and backward (``g W + g``).
    """

    @staticmethod
    def forward(ctx, h, weight, bias):
        out = torch.ops.mkldnn._linear_pointwise.binary(h, h, weight, bias, "add").relu_()
        ctx.save_for_backward(h, weight, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        h, weight, out = ctx.saved_tensors
        masked = torch.ops.aten.threshold_backward(grad, out, 0)
        grad_h = torch.ops.mkldnn._linear_pointwise.binary(masked, masked, weight.T.contiguous(), None, "add")
        return grad_h, masked.T @ h, masked.sum(0)


class ResidualMLP(nn.Module):
    """``in -> hidden``, then ``layers`` residual blocks, then ``hidden -> out``, ReLU between.

    ``layers`` counts the hidden-to-hidden layers, as cryoDRGN's ``--enc-layers`` and
    ``--dec-layers`` do, so ``256 x 3`` names the same network in both tools: three
    256 x 256 residual layers between the input and output layers.

    A block is, by ``residual``:

    - ``"post"`` (the default): ``relu(W h + b + h)``, the ReLU after the sum, as in the
      seed (section 5.6.3, ``y = ReLU(fc(x) + x)``) and cryoDRGN;
    - ``"pre"``: ``h + relu(W h + b)``, the identity path free of the nonlinearity: what
      cryofield's networks computed before the ``residual`` setting existed, kept so that
      their checkpoints compute what they were trained to.

    The two have the same parameters and cost. Measured on simulated adenylate kinase, the
    seed's form gave the better maps (per-image FSC 2.13 against 2.15 px after 10 epochs of
    ``train-vae --zdim 8``; docs/benchmarks.md).

    Under CPU bf16 autocast, on a CPU with bf16 products, the ``"post"`` form runs as oneDNN
    products with the bias and residual add in their epilogues and a hand-written backward
    (:func:`fused_cpu_bf16`): the same function, rounded once per layer, about 15 % faster
    for the decoder at 128 px.

    Parameters
    ----------
    in_dim, hidden, out_dim : int
    layers : int
        Residual hidden-to-hidden layers (0 or more).
    residual : {"post", "pre"}
        Where a block's ReLU sits (above).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, out_dim: int, *, residual: str = "post"):
        super().__init__()
        if layers < 0:
            raise ValueError(f"an MLP cannot have {layers} hidden layers")
        if residual not in RESIDUAL_FORMS:
            raise ValueError(f"residual must be one of {RESIDUAL_FORMS}, not {residual!r}")
        self.residual = residual
        self.first = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.last = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Map (..., in_dim) to (..., out_dim).

        With ``extra`` (..., k), the input is ``concat(x, extra)`` and ``x`` has ``in_dim - k``
        features; ``extra``'s leading dimensions broadcast against ``x``'s. The first layer
        then applies its last ``k`` columns to ``extra`` alone, so that a latent shared by
        many points (a volume's ``z``) is multiplied once, not once per point, and the
        backward pass needs no gradient with respect to ``x``.
        """
        if self.residual == "post" and fused_cpu_bf16(x):
            fused = self._fused(x, extra)
            if fused is not None:
                return fused
        if extra is None:
            h = torch.relu(self.first(x))
        else:
            split = x.shape[-1]
            weight = self.first.weight
            h = torch.relu(F.linear(x, weight[:, :split], self.first.bias) + F.linear(extra, weight[:, split:]))
        if self.residual == "post":
            for block in self.blocks:
                h = torch.relu(block(h) + h)
        else:
            for block in self.blocks:
                h = h + torch.relu(block(h))
        return self.last(h)

    def _fused(self, x: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor | None:
        """:meth:`forward` in oneDNN's fused bf16 layers (under CPU bf16 autocast), or None.

        None where ``extra`` is not one row per item of points (then the unfused layers run).
        Same function, rounded once per layer instead of once per operation.
        """
        bf16, hidden = torch.bfloat16, self.first.out_features
        weight, bias = self.first.weight, self.first.bias
        if extra is None:
            lead = x.shape[:-1]
            x, per_item = x.reshape(1, -1, x.shape[-1]), bias[None]
        else:
            split = x.shape[-1]
            per_item = F.linear(extra, weight[:, split:], bias)  # (..., 1, H) under autocast
            if x.dim() < 2 or per_item.dim() < 2 or per_item.shape[-2] != 1:
                return None
            weight = weight[:, :split]
            items = torch.broadcast_shapes(x.shape[:-2], per_item.shape[:-2])
            lead = (*items, x.shape[-2])
            x = x.expand(*items, *x.shape[-2:]).reshape(-1, *x.shape[-2:])
            per_item = per_item.expand(*items, 1, hidden).reshape(-1, hidden)
        h = _FirstLayer.apply(x.to(bf16).contiguous(), per_item.to(bf16), weight.to(bf16)).reshape(-1, hidden)
        for block in self.blocks:
            h = _PostBlock.apply(h, block.weight.to(bf16), block.bias.to(bf16))
        return self.last(h).reshape(*lead, -1)
