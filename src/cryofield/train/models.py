"""The networks of a run: a volume decoder, an image encoder, pose corrections or a pose encoder."""

from __future__ import annotations

import os
import pickle
from dataclasses import replace

import torch
from torch import nn

from cryofield.errors import InputError
from cryofield.io import WorkDir
from cryofield.io.cryodrgn import CryodrgnRun
from cryofield.nn import (
    ImageEncoder,
    LatentTable,
    PoseCorrections,
    PoseEncoder,
    TiltPairEncoder,
    TiltSeriesEncoder,
    VolumeDecoder,
    make_encoding,
)
from cryofield.nn.cryodrgn import CryodrgnDecoder
from cryofield.train.checkpoint import load_checkpoint
from cryofield.train.config import TrainConfig


class Models(nn.Module):
    """The decoder and, for a VAE, the encoder; with pose refinement, the pose corrections.

    ``pose_encoder`` (the pose-VAE baseline of ab initio) predicts each image's rotation,
    which then replaces the batch's. Parts a run does not have are ``None``; the state of
    the others is :meth:`parts_state` (what checkpoints hold).

    Parameters
    ----------
    decoder : nn.Module
        A :class:`cryofield.imaging.VolumeModel` (``VolumeDecoder``, ``GaussianResidues``).
    encoder : nn.Module, optional
        ``ImageEncoder`` or ``TiltPairEncoder``.
    poses : PoseCorrections, optional
    pose_encoder : PoseEncoder, optional
    """

    def __init__(self, decoder: nn.Module, encoder: nn.Module | None = None, poses: PoseCorrections | None = None,
                 pose_encoder: PoseEncoder | None = None):
        super().__init__()
        self.decoder, self.encoder, self.poses, self.pose_encoder = decoder, encoder, poses, pose_encoder

    def tables(self) -> dict[str, nn.Module]:
        """The per-particle tables, trained by their own sparse optimiser: a latent table (``"encoder"``), the poses."""
        out = {"encoder": self.encoder} if isinstance(self.encoder, LatentTable) else {}
        return out | ({"poses": self.poses} if self.poses is not None else {})

    def network_parameters(self) -> list[nn.Parameter]:
        """The networks' trainable parameters (not the per-particle tables: they have their own optimiser)."""
        tables = self.tables()
        return [p for name, part in self.named_children() if name not in tables for p in part.parameters()]

    def parts_state(self) -> dict[str, dict]:
        """``{part: state_dict}`` of every part present (the checkpoints' layout)."""
        return {name: part.state_dict() for name, part in self.named_children()}

    def load_parts_state(self, state: dict[str, dict]) -> None:
        """Restore from :meth:`parts_state` (parts absent here are ignored, e.g. another run's pose corrections)."""
        for name, part in self.named_children():
            part.load_state_dict(state[name])


def build_models(config: TrainConfig, box: int, n_pixels: int, n_particles: int | None = None, *,
                 pose_encoder: bool = False) -> Models:
    """The networks a configuration describes (seeded by ``config.seed``).

    Parameters
    ----------
    config : TrainConfig
    box : int
        Image size ``D``.
    n_pixels : int
        Half-lattice pixels per image ``P`` (the encoder sees ``2P`` numbers per image).
    n_particles : int, optional
        Needed for pose refinement (one correction per particle).
    pose_encoder : bool
        Add an encoder of rotations (``enc_dim`` x ``enc_layers``), the pose-VAE baseline.
    """
    torch.manual_seed(config.seed)
    encoding = make_encoding(config.pe_type, box, config.pe_dim, config.feat_sigma, seed=config.seed)
    decoder = VolumeDecoder(encoding, config.zdim, config.dec_dim, config.dec_layers, domain=config.domain,
                            residual=config.residual)
    encoder = None
    if config.encodes_tilt_series:
        encoder = TiltSeriesEncoder(2 * n_pixels, config.enc_dim, config.enc_layers, config.zdim, config.ntilts,
                                    embedding=config.tilt_emb_dim, pooling=config.tilt_pooling,
                                    residual=config.residual)
    elif config.zdim:
        kind = TiltPairEncoder if config.tilt else ImageEncoder
        encoder = kind(2 * n_pixels, config.enc_dim, config.enc_layers, config.zdim, residual=config.residual)
    poses = None
    if config.refine_poses:
        if n_particles is None:
            raise ValueError("pose refinement needs the number of particles")
        poses = PoseCorrections(n_particles)
    rotations = (PoseEncoder(2 * n_pixels, config.enc_dim, config.enc_layers, residual=config.residual)
                 if pose_encoder else None)
    return Models(decoder, encoder, poses, rotations)


def load_models(workdir: str | os.PathLike | WorkDir, box: int, n_pixels: int,
                device: str | torch.device = "cpu") -> tuple[TrainConfig, Models]:
    """The configuration and trained networks of a work directory (last checkpoint), pose corrections excluded.

    The networks are the running average of the weights where the run kept one
    (:func:`checkpoint_networks`).

    Parameters
    ----------
    workdir : str, PathLike or WorkDir
        A trained ``train-nn``, ``train-vae`` or ``abinit`` run, or a cryoDRGN ``train_vae`` or
        ``train_nn`` run (its decoder only: :func:`load_cryodrgn_decoder`).
    box, n_pixels : int
        The images' size ``D`` and half-lattice pixels ``P``.
    device : str or torch.device

    Returns
    -------
    (TrainConfig, Models)
    """
    workdir = workdir if isinstance(workdir, WorkDir) else WorkDir(workdir)
    config = TrainConfig.load(workdir)
    if workdir.is_cryodrgn():
        return config, Models(load_cryodrgn_decoder(workdir)).to(torch.device(device))
    models = build_models(replace(config, refine_poses=False), box, n_pixels)
    state = checkpoint_networks(load_checkpoint(workdir, device))
    latents = state.get("encoder") or {}
    if "mean.weight" in latents:  # ab initio's latent table (--z-table) in place of an encoder
        models.encoder = LatentTable(*latents["mean.weight"].shape, variational="logvar.weight" in latents)
    models.load_parts_state(state)
    return config, models.to(torch.device(device))


def checkpoint_networks(state: dict) -> dict[str, dict]:
    """A checkpoint's networks as a run reads them out: the running average of each where it kept one.

    Parameters
    ----------
    state : dict
        A checkpoint (``models``, and ``averaged`` when the run averaged its weights).

    Returns
    -------
    dict
        ``{part: state_dict}`` for :meth:`Models.load_parts_state`.
    """
    return state["models"] | state.get("averaged", {})


def load_cryodrgn_decoder(workdir: WorkDir, epoch: int | None = None) -> CryodrgnDecoder:
    """The decoder of a cryoDRGN run (its final weights, or ``weights.EPOCH.pkl``), loaded with ``weights_only=True``.

    Raises
    ------
    InputError
        Weights that are not a cryoDRGN checkpoint, or a decoder this version cannot rebuild.
    """
    run = CryodrgnRun.open(workdir.root, epoch)
    model = run.model
    try:
        state = torch.load(run.weights, weights_only=True, map_location="cpu")["model_state_dict"]
        decoder = CryodrgnDecoder(run.box, int(model.get("zdim") or 0), int(model["pdim"]), int(model["players"]),
                                  str(model.get("pe_type", "gaussian")), model.get("pe_dim"),
                                  str(model.get("domain", "fourier")))
        decoder.load_cryodrgn_state(state)
    except (RuntimeError, KeyError, ValueError, TypeError, OSError, pickle.UnpicklingError) as exc:
        raise InputError(run.weights, f"not a cryoDRGN decoder cryofield can read ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    return decoder.eval()
