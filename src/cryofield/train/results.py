"""A finished (or running) run, opened from its work directory: settings, losses, latents, maps, poses."""

from __future__ import annotations

import os
from functools import cached_property

import numpy as np

from cryofield.io import WorkDir, read_particles
from cryofield.train.config import TrainConfig


class Run:
    """A run's work directory, read through :class:`cryofield.io.WorkDir`.

    Parameters
    ----------
    workdir : str, PathLike or WorkDir
        A folder written by ``train-nn``, ``train-vae``, ``abinit`` or ``train-cryofold``
        (or :func:`cryofield.train.run`).
    written : list of (str, str), optional
        What the run that returned this object wrote: ``(path, what)``.
    config : TrainConfig, optional
        The config, when the caller has it (default: read from ``config.json``).

    Examples
    --------
    >>> run = Run("run/")                               # doctest: +SKIP
    >>> run.z.shape, run.losses["mse"][-1]              # doctest: +SKIP
    >>> volume = run.volume(np.median(run.z, axis=0))   # doctest: +SKIP
    """

    def __init__(self, workdir: str | os.PathLike | WorkDir, *, written: list[tuple[str, str]] | None = None,
                 config: TrainConfig | None = None):
        self.workdir = (workdir if isinstance(workdir, WorkDir) else WorkDir(workdir)).require_config()
        self.written = list(written or [])
        if config is None:
            from cryofield.train.launch import load_config

            config = load_config(self.workdir)
        self.config = config

    def __repr__(self) -> str:
        return f"Run({str(self.workdir.root)!r}, {type(self.config).__name__}, zdim={self.config.zdim})"

    @property
    def log(self) -> list[dict]:
        """Each epoch's record (``log.jsonl``): losses, times, throughput, and each method's own."""
        return self.workdir.read_log()

    @property
    def losses(self) -> dict[str, np.ndarray]:
        """Per-epoch series of the log's numeric entries, e.g. ``mse`` and ``kl`` (epochs,)."""
        records = self.log
        keys = [k for k in (records[0] if records else {}) if isinstance(records[0][k], (int, float))]
        return {k: np.array([r.get(k, np.nan) for r in records], dtype=float) for k in keys}

    @cached_property
    def z(self) -> np.ndarray:
        """The posterior means (N, zdim), in the run's particle order."""
        return self.workdir.read_latents(self.config.zdim)

    @cached_property
    def _volumes(self):
        """``maps(latents (M, zdim), amp) -> (M, D, D, D)``: the decoder's maps, or the atomic model's."""
        from cryofield.train.cryofold import CryofoldConfig

        if isinstance(self.config, CryofoldConfig):
            return _AtomicVolumes(self.workdir)
        from cryofield.train.volumes import RunVolumes

        return RunVolumes(self.workdir.root)

    def volume(self, z: np.ndarray | None = None, *, amp: bool | None = None) -> np.ndarray:
        """The map (D, D, D) float32 at latent ``z`` (zdim,), positive density in the data's units.

        Homogeneous runs take no ``z``. ``amp`` evaluates in bf16 (default: as trained).
        """
        return self.volumes(np.zeros((1, 0)) if z is None else np.asarray(z, np.float32)[None], amp=amp)[0]

    def volumes(self, zs: np.ndarray, *, amp: bool | None = None) -> np.ndarray:
        """Maps (M, D, D, D) float32 at latents (M, zdim)."""
        return self._volumes(zs, amp=self.config.amp if amp is None else amp)

    @cached_property
    def input_rows(self) -> np.ndarray:
        """The row of the input file each particle of the run is, (N,) int64: ``config.ind``'s, else all of them.

        Tilt series count particles. Indices a user writes (``select --ind``, ``graph-traversal
        --anchors``) are these rows; the run's arrays (``z``) are in their order.
        """
        return input_rows(self.config, len(self.z))

    @property
    def pixel_size(self) -> float:
        """The maps' pixel size, Angstrom."""
        return self.config.data_pixel_size

    def poses(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(rotations (N, 3, 3), shifts_px (N, 2))`` the run found: refined, or searched ab initio; else None."""
        refined = self.workdir.read_refined_poses()
        if refined is not None:
            return refined
        if self.workdir.poses_star.is_file():
            table = read_particles(self.workdir.poses_star)
            return table.rotations, table.shifts_px
        return None


def input_rows(config: TrainConfig, n: int) -> np.ndarray:
    """The input-file row of each of a run's ``n`` particles, (n,) int64: ``config.ind``'s, else ``0 .. n - 1``."""
    if config.ind:
        from cryofield.io import read_indices

        return read_indices(config.ind, np.iinfo(np.int64).max)
    return np.arange(n)


class _AtomicVolumes:
    """A Cryofold run's maps at latents: its coarse-grained model rendered (as ``eval-cryofold`` does)."""

    def __init__(self, workdir: WorkDir):
        from cryofield.train.cryofold import load_cryofold

        self.config, _, models = load_cryofold(workdir.require_trained().root)
        self.decoder = models.decoder.eval()

    def __call__(self, latents: np.ndarray, *, amp: bool = False) -> np.ndarray:
        """Maps (M, D, D, D) at latents (M, zdim), always in fp32.

        ``amp`` is accepted and ignored: the atomic model is fitted and written in fp32.
        """
        import torch

        from cryofield.imaging import render_volume

        latents = np.asarray(latents, np.float32).reshape(len(latents), -1)
        with torch.no_grad():
            return np.stack([(render_volume(self.decoder, self.config.box,
                                            torch.from_numpy(z)[None] if self.config.zdim else None)
                              * self.config.data_scale).numpy() for z in latents])
