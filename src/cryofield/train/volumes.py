"""Maps of a trained run at given latents: one model load, positive density, pixel size in the header."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from cryofield.errors import InputError
from cryofield.imaging import half_lattice_mask, render_volume
from cryofield.io import write_map
from cryofield.io._atomic import atomic_outputs
from cryofield.metrics import apply_bfactor, flip_hand
from cryofield.train.config import TrainConfig
from cryofield.train.loop import load_models


def write_volumes(workdir: str | os.PathLike, latents: np.ndarray, paths: Sequence[str | os.PathLike], *,
                  box: int | None = None, apix: float | None = None, flip: bool = False,
                  lowpass: float | None = None, progress: Callable[[], None] | None = None) -> tuple[int, float]:
    """Write the run's map at each latent.

    Parameters
    ----------
    workdir : str or PathLike
        A trained run (``config.json``, ``checkpoints/last.pt``).
    latents : ndarray, shape (M, zdim)
        One latent per map (``(1, 0)`` for a ``train-nn`` run).
    paths : sequence of M paths
        Where to write them (all written, or none if anything fails).
    box : int, optional
        Render at this smaller box by Fourier cropping (default: the training box).
    apix : float, optional
        Pixel size to write in Angstrom (default: the training data's, scaled to ``box``).
    flip : bool
        Invert the hand.
    lowpass : float, optional
        Low-pass filter at this resolution, Angstrom.
    progress : callable, optional
        Called once per map written.

    Returns
    -------
    (int, float)
        The box and pixel size written.
    """
    workdir = Path(workdir)
    if not (workdir / "config.json").is_file() or not (workdir / "checkpoints/last.pt").is_file():
        raise InputError(workdir, "not a trained work directory (config.json and checkpoints/last.pt)")
    config = TrainConfig.load(workdir / "config.json")
    latents = np.asarray(latents, np.float32).reshape(len(latents), -1)
    if latents.shape[1] != config.zdim:
        raise InputError(workdir, f"latents have {latents.shape[1]} values; the model has zdim {config.zdim}")
    if len(latents) != len(paths):
        raise ValueError(f"{len(latents)} latents for {len(paths)} paths")
    box = box or config.box
    if not 1 < box <= config.box:
        raise InputError(workdir, f"box {box} must be at most the training box {config.box}")
    apix = apix or config.data_pixel_size * config.box / box
    _, models = load_models(workdir, config.box, int(half_lattice_mask(config.box).sum()))
    with atomic_outputs(*paths) as temps, torch.no_grad():
        for temp, z in zip(temps, latents):
            volume = render_volume(models.decoder, box, torch.from_numpy(z) if config.zdim else None,
                                   model_box=config.box) * config.data_scale
            if lowpass:
                volume = apply_bfactor(volume, apix, 0.0, lowpass)
            if flip:
                volume = flip_hand(volume)
            write_map(temp, volume.numpy(), apix)
            if progress is not None:
                progress()
    return box, apix
