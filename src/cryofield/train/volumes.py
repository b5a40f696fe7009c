"""Maps of a trained run at given latents: one model load, positive density, pixel size in the header."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from cryofield.errors import InputError
from cryofield.imaging import half_lattice_mask, render_volumes
from cryofield.io import WorkDir, write_map
from cryofield.io._atomic import atomic_outputs
from cryofield.metrics import apply_bfactor, flip_hand
from cryofield.train.config import TrainConfig
from cryofield.train.models import load_models


class RunVolumes:
    """A trained run's maps at any latents, from one model load.

    Parameters
    ----------
    workdir : str or PathLike
        A trained run (``config.json``, ``checkpoints/last.pt``).
    box : int, optional
        Render at this smaller box by Fourier cropping (default: the training box).

    Attributes
    ----------
    config : TrainConfig
    box : int
        Box of the maps, pixels.
    apix : float
        Their pixel size, Angstrom (the training data's, scaled to ``box``).
    """

    def __init__(self, workdir: str | os.PathLike, box: int | None = None):
        run = WorkDir(workdir).require_trained()
        self.workdir = run.root
        self.config = TrainConfig.load(run)
        self.box = box or self.config.box
        if not 1 < self.box <= self.config.box or self.box % 2:
            raise InputError(workdir, f"box {self.box} must be even and at most the training box {self.config.box}")
        self.apix = self.config.data_pixel_size * self.config.box / self.box
        _, models = load_models(run, self.config.box, int(half_lattice_mask(self.config.box).sum()))
        self.decoder = models.decoder.eval()

    def check(self, latents: np.ndarray) -> np.ndarray:
        """``latents`` as float32 (M, zdim), or a clear error when they do not fit the model."""
        latents = np.asarray(latents, np.float32).reshape(len(latents), -1)
        if latents.shape[1] != self.config.zdim:
            raise InputError(self.workdir, f"latents have {latents.shape[1]} values; the model has zdim "
                                           f"{self.config.zdim}")
        return latents

    def __call__(self, latents: np.ndarray, *, amp: bool = False, batch: int = 1) -> np.ndarray:
        """Maps (M, D, D, D) float32 at latents (M, zdim), positive density, in the data's units.

        ``amp`` renders in bfloat16 autocast (about 2 % rms difference from fp32, FSC >= 0.997
        at every frequency on the benchmark runs; several times faster on CPUs with bf16 units).
        """
        latents = self.check(latents)
        out = np.empty((len(latents), self.box, self.box, self.box), np.float32)
        with torch.no_grad():
            for i in range(0, len(latents), batch):
                z = torch.from_numpy(latents[i:i + batch]) if self.config.zdim else None
                out[i:i + batch] = render_volumes(self.decoder, self.box, z, model_box=self.config.box,
                                                  amp=amp).numpy() * self.config.data_scale
        return out


def write_volumes(workdir: str | os.PathLike, latents: np.ndarray, paths: Sequence[str | os.PathLike], *,
                  box: int | None = None, apix: float | None = None, flip: bool = False,
                  lowpass: float | None = None, amp: bool | None = None,
                  progress: Callable[[], None] | None = None) -> tuple[int, float]:
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
    amp : bool, optional
        Evaluate the network in bf16 (default: as it was trained, ``config.amp``). On the
        benchmark runs bf16 maps agree with fp32 maps to FSC >= 0.997 at every frequency
        (about 2 % rms), several times faster on CPUs with bf16 units.
    progress : callable, optional
        Called once per map written.

    Returns
    -------
    (int, float)
        The box and pixel size written.
    """
    volumes = RunVolumes(workdir, box)
    latents = volumes.check(latents)
    if len(latents) != len(paths):
        raise ValueError(f"{len(latents)} latents for {len(paths)} paths")
    apix = apix or volumes.apix
    amp = volumes.config.amp if amp is None else amp
    with atomic_outputs(*paths) as temps:
        for start in range(0, len(latents), 4):
            maps = volumes(latents[start:start + 4], amp=amp)
            for temp, volume in zip(temps[start:start + 4], maps):
                volume = torch.from_numpy(volume)
                if lowpass:
                    volume = apply_bfactor(volume, apix, 0.0, lowpass)
                if flip:
                    volume = flip_hand(volume)
                write_map(temp, volume.numpy(), apix)
                if progress is not None:
                    progress()
    return volumes.box, apix
