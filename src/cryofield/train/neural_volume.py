"""``train-nn`` and ``train-vae``: a neural volume, or a VAE over images, from particles with known poses."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from cryofield.data import ParticleSource, TiltSeriesParticles
from cryofield.imaging import render_volume
from cryofield.io import ParticleTable, WorkDir, write_map
from cryofield.train.config import TrainConfig
from cryofield.train.engine import Method, Trainer
from cryofield.train.inference import posterior_means
from cryofield.train.inputs import Progress, prepare, tilt_partners
from cryofield.train.models import Models, build_models


class NeuralVolume(Method):
    """One volume (``zdim = 0``) or a VAE over images; optionally tilt pairs, tilt series and pose refinement."""

    reads_tilt_series = True

    @classmethod
    def resolve(cls, config: TrainConfig, data: ParticleSource) -> TrainConfig:
        """A VAE over tilt series encodes as many tilts as its particles have, at most ``ntilts``."""
        return replace(config, ntilts=data.ntilts) if isinstance(data, TiltSeriesParticles) else config

    def build_models(self, stage: int = 1) -> Models:
        """The decoder, the encoder of a VAE and the pose corrections of pose refinement."""
        return build_models(self.config, self.data.box, self.data.n_pixels, len(self.data))

    @staticmethod
    def prepare(config: TrainConfig, table: ParticleTable, scale: float | None,
                progress: Progress | None = None) -> ParticleSource:
        """The particles with their poses (tilt pairs for a VAE with ``config.tilt``)."""
        table.rotations  # noqa: B018  (a clear error when there are no poses)
        table = table.without_source_rows()  # training never exports
        tilt = tilt_partners(config, table) if config.zdim and config.tilt is not None else None
        return prepare(config, table, scale=scale, tilt=tilt, progress=progress)

    def write_outputs(self, trainer: Trainer, table: ParticleTable) -> list[tuple[str, str]]:
        """``poses.npz`` (pose refinement), then ``z.npy`` (a VAE) or ``volume.mrc``; ``(path, what)`` of each.

        The latents and the map come from the running average of the weights (:attr:`Trainer.averaged`).
        """
        workdir, models, data = WorkDir(self.config.outdir), trainer.averaged, self.data
        written = []
        if models.poses is not None:
            d_rotation, d_shift = (t.cpu().double().numpy() for t in models.poses.all())
            workdir.write_refined_poses(table.rotations @ d_rotation, table.shifts_px + d_shift)
            angles = np.degrees(np.linalg.norm(models.poses.rotvec.weight.detach().cpu().numpy(), axis=1))
            written.append((workdir.refined_poses, f"refined rotations and shifts; median correction "
                                                   f"{np.median(angles):.2f} deg, "
                                                   f"{np.median(np.linalg.norm(d_shift, axis=1)):.2f} px"))
        if self.config.zdim:
            workdir.write_latents(posterior_means(models, data, amp=self.config.amp))
            written.append((workdir.latents, f"posterior means, {len(data)} x {self.config.zdim}"))
        else:
            with torch.no_grad():
                volume = render_volume(models.decoder.cpu(), data.box) * data.scale
            write_map(workdir.volume, volume.numpy(), data.pixel_size_angstrom)
            written.append((workdir.volume, f"{data.box}^3, {data.pixel_size_angstrom:.4f} A/px"))
        return [(str(path), what) for path, what in written]
