"""Radiation damage: how much signal a tilt image keeps at each frequency after its exposure.

Grant and Grigorieff (2015, eLife 4:e06980) measured the exposure at which each spatial
frequency ``k`` has lost ``1/e`` of its amplitude, the *critical exposure*
``N_e(k) = a k^b + c`` (e/A^2, ``k`` in 1/A), fitted at 300 kV with ``a = 0.24499``,
``b = -1.6649``, ``c = 2.8141``. An image taken after an accumulated exposure ``N`` keeps
the amplitude ``exp(-N / (2 N_e(k)))``; past ``N = 2.51284 N_e(k)`` (the exposure that
maximises the signal over the square root of the exposure) a frequency holds more noise than
signal and is best left out.

At 200 kV the curve is scaled by 0.8, as in cisTEM (written by the paper's first author);
other programs differ (cryoDRGN scales only the power term by 0.75, RELION and Warp not at
all), and no factor is known for other voltages, which are refused.
"""

from __future__ import annotations

import torch

#: ``a``, ``b``, ``c`` of the critical exposure ``a k^b + c`` (e/A^2, k in 1/A), at 300 kV.
CRITICAL_EXPOSURE = (0.24499, -1.6649, 2.8141)
#: The critical exposure's scale at each voltage (kV) it is known for.
VOLTAGE_SCALE = {300.0: 1.0, 200.0: 0.8}
#: The exposure beyond which a frequency is left out, in units of its critical exposure.
OPTIMAL_EXPOSURE_RATIO = 2.51284


def critical_exposure(k: torch.Tensor, voltage_kv: float | torch.Tensor = 300.0) -> torch.Tensor:
    """``N_e(k)``, the exposure (e/A^2) that leaves ``1/e`` of the amplitude at frequency ``k``.

    Parameters
    ----------
    k : Tensor, any shape
        Spatial frequency magnitude, 1/A (``inf`` at ``k = 0``: the mean is not damaged).
    voltage_kv : float or Tensor broadcastable to ``k``
        300 or 200.

    Returns
    -------
    Tensor, the shape of ``k`` (broadcast with ``voltage_kv``), e/A^2

    Raises
    ------
    ValueError
        For a voltage with no known scale.
    """
    voltage = torch.as_tensor(voltage_kv, dtype=k.dtype, device=k.device)
    scale = torch.full_like(voltage, float("nan"))
    for kv, factor in VOLTAGE_SCALE.items():
        scale = torch.where(voltage == kv, torch.full_like(scale, factor), scale)
    if torch.isnan(scale).any():
        bad = float(voltage.reshape(-1)[torch.isnan(scale).reshape(-1)][0])
        raise ValueError(f"no critical exposure is known at {bad:g} kV (only at 300 and 200 kV)")
    a, b, c = CRITICAL_EXPOSURE
    return scale * (a * k.abs().pow(b) + c)


def exposure_weights(k: torch.Tensor, exposure: torch.Tensor, voltage_kv: float | torch.Tensor = 300.0,
                     cutoff: bool = True, batched: bool = False) -> torch.Tensor:
    """The amplitude each frequency keeps in images after their accumulated exposures.

    Parameters
    ----------
    k : Tensor, shape (...), or (B, ...) when ``batched``
        Spatial frequency magnitudes, 1/A: one set for all images, or one per image.
    exposure : Tensor, shape (B,)
        Accumulated exposure of each image, e/A^2.
    voltage_kv : float or Tensor, shape (B,)
        300 or 200, for all images or each.
    cutoff : bool
        Zero where the exposure exceeds :data:`OPTIMAL_EXPOSURE_RATIO` critical exposures.
    batched : bool
        ``k`` has one set of frequencies per image (its first axis).

    Returns
    -------
    Tensor, shape (B, ...)
        ``exp(-N / (2 N_e(k)))`` in ``[0, 1]`` (1 at ``k = 0``).
    """
    k = k if batched else k[None]
    per_image = (-1,) + (1,) * (k.dim() - 1)
    voltage = torch.as_tensor(voltage_kv, dtype=k.dtype, device=k.device)
    limit = critical_exposure(k, voltage.reshape(per_image) if voltage.dim() else voltage)
    n = exposure.to(limit).reshape(per_image)
    weights = torch.exp(-n / (2 * limit))
    if cutoff:
        weights = torch.where(n > OPTIMAL_EXPOSURE_RATIO * limit, torch.zeros_like(weights), weights)
    return weights
