"""Cryofold on the run engine: the coarse-grained model, its start, the warm-up, the fit and its outputs."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import torch

from cryofield.data import ParticleSource, PreparedParticles
from cryofield.errors import InputError
from cryofield.imaging import central_slices, half_lattice_mask, render_volume
from cryofield.io import ParticleTable, WorkDir, read_atomic_model, write_map
from cryofield.io.atoms import CoarseModel, coarse_grain, electrons, write_coarse_pdb
from cryofield.nn import GaussianResidues, ImageEncoder
from cryofield.train.checkpoint import load_checkpoint
from cryofield.train.cryofold.config import INITS, CryofoldConfig
from cryofield.train.engine import Callbacks, Method, Trainer
from cryofield.train.inference import posterior_means
from cryofield.train.inputs import Progress, prepare
from cryofield.train.models import Models, checkpoint_networks
from cryofield.train.objective import Restraint


def reference_model(config: CryofoldConfig) -> tuple[CoarseModel, np.ndarray]:
    """The coarse-grained reference (without side chains if ablated) and the frame centre (3,), A."""
    model = read_atomic_model(config.pdb)
    coarse = coarse_grain(model)
    if config.center_angstrom is not None:
        center = np.asarray(config.center_angstrom, float)
    else:
        weights = electrons(model)
        center = (weights[:, None] * model.coords_angstrom).sum(0) / weights.sum()
    if "side-chains" in config.ablate:
        coarse = coarse.without_side_chains()
    return coarse, center


def starting_centres(coarse: CoarseModel, center: np.ndarray, config: CryofoldConfig) -> np.ndarray:
    """The centres (M, 3), A, the fit starts from: the reference, or it with noise, or random.

    Noisy and random starts put each side-chain centre on its C-alpha (the seed's section 7.4.1).
    """
    if config.init == "reference":
        return coarse.centres_angstrom.copy()
    rng = np.random.default_rng(config.seed)
    r = coarse.n_residues
    if config.init == "noise":
        ca = coarse.centres_angstrom[:r] + rng.uniform(-config.init_noise_angstrom, config.init_noise_angstrom, (r, 3))
    elif config.init == "random":
        ca = center + rng.uniform(-0.5, 0.5, (r, 3)) * config.init_box_angstrom
    else:
        raise ValueError(f"unknown init {config.init!r}; one of {', '.join(INITS)}")
    return np.concatenate([ca, ca[coarse.side_pairs[:, 0]]])


def build_cryofold(config: CryofoldConfig, coarse: CoarseModel, center: np.ndarray, box: int, n_pixels: int,
                   pixel_size_angstrom: float) -> Models:
    """The atomic volume (at its starting centres) and, for ``zdim > 0``, the image encoder."""
    torch.manual_seed(config.seed)
    start = replace(coarse, centres_angstrom=starting_centres(coarse, center, config))
    decoder = GaussianResidues(start, box, pixel_size_angstrom, center, zdim=config.zdim, hidden=config.dec_dim,
                               layers=config.dec_layers, width_angstrom=config.width_angstrom,
                               a0=config.a0 if config.a0 is not None else 1.0, bond_strength=config.bond_strength,
                               bonds="bonds" not in config.ablate, residual=config.residual)
    encoder = (ImageEncoder(2 * n_pixels, config.enc_dim, config.enc_layers, config.zdim, residual=config.residual)
               if config.zdim else None)
    return Models(decoder, encoder)


@torch.no_grad()
def least_squares_amplitude(decoder: GaussianResidues, data: PreparedParticles, count: int = 256,
                            batch_size: int = 32) -> float:
    """The ``a0`` that best fits the first ``count`` images with the model's centres and width (``z = 0``)."""
    images = data.load(np.arange(min(count, len(data))))
    device = decoder.centres.device
    cross = power = 0.0
    for start in range(0, len(images), batch_size):
        batch = images.subset(torch.arange(start, min(start + batch_size, len(images)))).to(device)
        z = torch.zeros(len(batch), decoder.zdim, device=device) if decoder.zdim else None
        predicted = central_slices(decoder, batch.coords, batch.rotations, batch.box, z) / decoder.a0
        if batch.ctf is not None:
            predicted = predicted * batch.ctf
        cross += float((predicted.conj() * batch.images).real.sum())
        power += float(predicted.abs().square().sum())
    return cross / power


def resolve_start(config: CryofoldConfig, data) -> CryofoldConfig:
    """The config with the frame centre and the starting amplitude filled in (from the reference and the data)."""
    coarse, center = reference_model(config)
    config = replace(config, center_angstrom=[float(c) for c in center])
    if config.a0 is None:
        decoder = build_cryofold(config, coarse, center, data.box, data.n_pixels, data.pixel_size_angstrom).decoder
        a0 = least_squares_amplitude(decoder, data)
        if not a0 > 0:
            raise ValueError("the starting model anti-correlates with the images: check --center, the reference's "
                             "frame and the contrast (--uninvert-data)")
        config = replace(config, a0=a0)
    return config


class Cryofold(Method):
    """Cryofold on the run engine: the warm-up (a run of its own in ``OUTDIR/warmup/``), then the fit.

    Parameters
    ----------
    config : CryofoldConfig
        With the centre and amplitude resolved (:func:`resolve_start`).
    data : ParticleSource
        Particles with their poses.
    warmup : bool
        This is the warm-up: fit everything from the start, no warm-up of its own.
    """

    def __init__(self, config: CryofoldConfig, data: ParticleSource, *, warmup: bool = False):
        if config.center_angstrom is None or config.a0 is None:
            raise ValueError("resolve the centre and amplitude first (resolve_start)")
        super().__init__(config, data)
        self.coarse, self.center = reference_model(config)
        self.warmup = warmup
        self.globals: dict | None = None  # the warm-up's width and amplitude, once fitted

    def build_models(self, stage: int = 1) -> Models:
        """The atomic model at its start (with the warm-up's width and amplitude once fitted) and any encoder."""
        models = build_cryofold(self.config, self.coarse, self.center, self.data.box, self.data.n_pixels,
                                self.data.pixel_size_angstrom)
        if self.globals is not None:  # every coordinate back at its start
            with torch.no_grad():
                models.decoder.log_width.fill_(float(np.log(self.globals["width_angstrom"])))
                models.decoder.log_a0.fill_(float(np.log(self.globals["a0"])))
        return models

    @classmethod
    def resumable(cls, workdir: WorkDir) -> bool:
        """A run whose warm-up was stopped can continue too (from the warm-up's checkpoint, or its start)."""
        return workdir.config.is_file()

    @classmethod
    def resolve(cls, config: CryofoldConfig, data: ParticleSource) -> CryofoldConfig:
        """The frame centre and the starting amplitude (:func:`resolve_start`); an :class:`InputError` names the PDB."""
        try:
            return resolve_start(config, data)
        except ValueError as exc:
            raise InputError(config.pdb, str(exc)) from None

    def restraint(self, models: Models) -> Restraint:
        """The bond and side-chain energy of the atomic model."""
        return models.decoder.restraint

    def start(self, trainer: Trainer, resume: bool) -> bool:
        """The warm-up, unless the main fit had started (``resume`` continues an interrupted warm-up)."""
        workdir = WorkDir(self.config.outdir)
        if self.warmup or self.config.warmup_epochs <= 0 or (resume and workdir.last_checkpoint.is_file()):
            return resume
        warm_config = replace(self.config, outdir=str(workdir.warmup.root), epochs=self.config.warmup_epochs,
                              checkpoint=self.config.warmup_epochs)
        outer = trainer.callbacks
        callbacks = Callbacks(
            progress=None if outer.progress is None else (lambda done, total, epoch, _: outer.progress(
                done, total, epoch, "warm-up")),
            epoch_end=None if outer.epoch_end is None
            else (lambda record: outer.epoch_end(record | {"warmup": True})))
        warm = Trainer(Cryofold(warm_config, self.data, warmup=True), runtime=trainer.runtime, callbacks=callbacks)
        decoder = warm.fit(resume and workdir.warmup.last_checkpoint.is_file()).decoder
        self.globals = {"width_angstrom": float(decoder.width_angstrom.detach()), "a0": float(decoder.a0.detach())}
        if trainer.runtime.is_main:
            workdir.warmup.write_warmup_globals(self.globals)
        return False

    @staticmethod
    def prepare(config: CryofoldConfig, table: ParticleTable, scale: float | None,
                progress: Progress | None = None) -> ParticleSource:
        """The particles with their poses."""
        table.rotations  # noqa: B018  (a clear error when there are no poses)
        return prepare(config, table.without_source_rows(), scale=scale, progress=progress)

    def write_outputs(self, trainer: Trainer, table: ParticleTable) -> list[tuple[str, str]]:
        """``structure.pdb`` and ``volume.mrc`` (at the median latent of a heterogeneous fit), and ``z.npy``."""
        config, workdir, data = self.config, WorkDir(self.config.outdir), self.data
        written = []
        z = None
        if config.zdim:
            latents = posterior_means(trainer.averaged, data, amp=config.amp)
            workdir.write_latents(latents)
            written.append((str(workdir.latents), f"posterior means, {len(data)} x {config.zdim}"))
            z = torch.from_numpy(np.median(latents, axis=0)).float()[None]
        decoder = trainer.averaged.decoder.cpu()
        with torch.no_grad():
            positions = decoder.positions_angstrom(z, self.center).reshape(-1, 3).numpy()
            volume = render_volume(decoder, data.box, z) * data.scale
        write_coarse_pdb(workdir.structure, self.coarse, positions)
        write_map(workdir.volume, volume.numpy(), data.pixel_size_angstrom)
        what = "at the median latent" if config.zdim else "fitted"
        width = float(decoder.width_angstrom.detach())
        return [(str(workdir.structure), f"the structure {what}"),
                (str(workdir.volume), f"its map; Gaussian width {width:.2f} A")] + written


def load_cryofold(outdir: str | os.PathLike,
                  device: torch.device | str = "cpu") -> tuple[CryofoldConfig, CoarseModel, Models]:
    """A trained run's config, reference and networks (from ``OUTDIR/checkpoints/last.pt``)."""
    workdir = WorkDir(outdir)
    config = CryofoldConfig.load(workdir)
    coarse, center = reference_model(config)
    n_pixels = int(half_lattice_mask(config.box).sum())
    models = build_cryofold(config, coarse, center, config.box, n_pixels, config.data_pixel_size)
    models.load_parts_state(checkpoint_networks(load_checkpoint(workdir, device)))
    return config, coarse, models.to(torch.device(device))
