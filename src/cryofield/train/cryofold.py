"""Cryofold: fitting a coarse-grained atomic model to particle images with known poses (the seed's chapter 7).

The volume is :class:`cryofield.nn.GaussianResidues`: two Gaussians per residue of a
reference structure, moved by gradient descent on the image loss plus bond and side-chain
restraints. Homogeneous runs fit every centre, the shared width and the amplitude;
heterogeneous runs (``zdim > 0``) train an image encoder and an MLP that maps ``z`` to an
offset of every centre, with the machinery of ``train-vae`` (checkpoints, resume, bf16
encoder, lazy loading, DDP).

The seed's warm-up: one epoch fits everything from the starting coordinates, then the
coordinates (and any networks) start again from their initial values, keeping the fitted
width and amplitude.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from cryofield.data import PreparedParticles
from cryofield.io import read_atomic_model
from cryofield.io.atoms import CoarseModel, coarse_grain, electrons
from cryofield.nn import GaussianResidues, ImageEncoder
from cryofield.train.config import TrainConfig
from cryofield.train.distributed import Runtime, resolve_device
from cryofield.train.loop import Models, _to, train

ABLATIONS = ("side-chains", "bonds", "images")
INITS = ("reference", "noise", "random")


@dataclass
class CryofoldConfig(TrainConfig):
    """A :class:`TrainConfig` plus the atomic model, its start and its restraints.

    Units: A for ``init_noise_angstrom`` (each coordinate of each C-alpha moved by a uniform
    draw in ``[-a, a]``), ``init_box_angstrom`` (random starts: uniform in a cube of this
    edge at the box centre), ``width_angstrom`` and ``center_angstrom`` (the point of the
    reference's frame at the box centre; default its electron-weighted centroid, as
    ``cryofield simulate`` places a model). ``a0`` is in the normalised units of the data;
    ``None`` starts it at the least-squares amplitude of the starting model.
    """

    pdb: str = ""
    init: str = "reference"
    init_noise_angstrom: float = 6.0
    init_box_angstrom: float = 64.0
    ablate: list[str] = field(default_factory=list)
    width_angstrom: float = 3.71
    a0: float | None = None
    bond_strength: float = 0.1
    warmup_epochs: int = 1
    center_angstrom: list[float] | None = None

    def objective(self, mse, kl, restraint, n_pixels: int):
        """As :meth:`TrainConfig.objective`, without the image term when the images are ablated."""
        return super().objective(mse * 0 if "images" in self.ablate else mse, kl, restraint, n_pixels)


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
        batch = _to(images.subset(torch.arange(start, min(start + batch_size, len(images)))), device)
        z = torch.zeros(len(batch), decoder.zdim, device=device) if decoder.zdim else None
        predicted = decoder.project(batch.coords, batch.rotations, z) / decoder.a0
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


def train_cryofold(config: CryofoldConfig, data, *, runtime: Runtime | None = None, resume: bool = False,
                   progress: Callable[[int, int, str], None] | None = None,
                   log: Callable[[dict], None] | None = None) -> Models:
    """Fit the atomic model: the warm-up (``OUTDIR/warmup/``), then ``config.epochs`` epochs.

    Parameters
    ----------
    config : CryofoldConfig
        With the centre and amplitude resolved (:func:`resolve_start`).
    data : PreparedParticles or LazyParticles
        Particles with their poses.
    runtime, resume, log
        As :func:`cryofield.train.train`; ``resume`` continues the warm-up if it was
        interrupted, else the main fit. Warm-up records carry ``"warmup": True``.
    progress : callable, optional
        ``progress(images_done, epoch, stage)``, ``stage`` "warm-up" or "fit".

    Returns
    -------
    Models
    """
    if config.center_angstrom is None or config.a0 is None:
        raise ValueError("resolve the centre and amplitude first (resolve_start)")
    runtime = runtime or Runtime(resolve_device(config.device))
    coarse, center = reference_model(config)
    outdir = Path(config.outdir)

    def fresh() -> Models:
        return build_cryofold(config, coarse, center, data.box, data.n_pixels, data.pixel_size_angstrom)

    warm_dir = outdir / "warmup"
    main_started = (outdir / "checkpoints/last.pt").is_file()
    globals_ = None
    if config.warmup_epochs > 0 and not (resume and main_started):
        warm_resume = resume and (warm_dir / "checkpoints/last.pt").is_file()
        warm_config = replace(config, outdir=str(warm_dir), epochs=config.warmup_epochs,
                              checkpoint=config.warmup_epochs)
        warm = train(warm_config, data, runtime=runtime, resume=warm_resume, models=fresh(),
                     progress=None if progress is None else (lambda done, epoch: progress(done, epoch, "warm-up")),
                     log=None if log is None else (lambda record: log(record | {"warmup": True})))
        decoder = warm.decoder
        globals_ = {"width_angstrom": float(decoder.width_angstrom.detach()), "a0": float(decoder.a0.detach())}
        if runtime.is_main:
            (warm_dir / "globals.json").write_text(json.dumps(globals_) + "\n")
        resume = False
    models = fresh()
    if globals_ is not None:  # the warm-up's width and amplitude, every coordinate back at its start
        with torch.no_grad():
            models.decoder.log_width.fill_(float(np.log(globals_["width_angstrom"])))
            models.decoder.log_a0.fill_(float(np.log(globals_["a0"])))
    return train(config, data, runtime=runtime, resume=resume, models=models, log=log,
                 progress=None if progress is None else (lambda done, epoch: progress(done, epoch, "fit")))


def load_cryofold(outdir: str | Path, device: torch.device | str = "cpu") -> tuple[CryofoldConfig, CoarseModel, Models]:
    """A trained run's config, reference and networks (from ``OUTDIR/checkpoints/last.pt``)."""
    outdir = Path(outdir)
    config = CryofoldConfig.load(outdir / "config.json")
    coarse, center = reference_model(config)
    from cryofield.imaging import half_lattice_mask

    n_pixels = int(half_lattice_mask(config.box).sum())
    models = build_cryofold(config, coarse, center, config.box, n_pixels, config.data_pixel_size)
    state = torch.load(outdir / "checkpoints/last.pt", weights_only=True, map_location=device)
    models.load_state_dict(state["models"])
    return config, coarse, models.to(torch.device(device))
