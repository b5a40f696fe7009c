"""Ab initio's settings: the schedule of its three stages and the pose search's grids."""

from __future__ import annotations

from dataclasses import dataclass

from cryofield.errors import InputError
from cryofield.posesearch import BnbSettings, SearchSettings
from cryofield.train.config import KEPT, TrainConfig, setting


@dataclass
class AbinitConfig(TrainConfig):
    """A :class:`TrainConfig` plus the schedule and the pose search's settings.

    Units: band limits in cycles per box (Fourier pixels), ``shift_extent_px`` in pixels
    (default ``20 * D / 128``). ``epochs`` is the total, set from the three stages.
    """

    epochs: int = setting(90, resume=KEPT)  # the three stages'
    method: str = "hps"  # pose search: "hps" (cryoDRGN2) or "bnb" (cryoDRGN-BNB); learned: "gd" or "pose-vae"
    epochs_search: int = 30
    epochs_fixed: int = 30
    epochs_refine: int = 30
    search_every: int = 5
    kmax_ramp_epochs: int = 25
    base_level: int | None = None  # None: 2 (hps) or 1 (bnb)
    keep: int = 8
    rounds: int | None = None  # None: 4 (hps) or 5 (bnb)
    kmin: float = 12.0
    kmax: float = 48.0
    n_shifts: int | None = None  # None: 14 (hps) or 7 (bnb)
    shift_extent_px: float | None = None
    oversample: float = 2.0
    search_batch: int = 32
    search_chunk: int = 256  # online search: particles per model render (0: all at once, with one model)
    search_groups: int = 1  # heterogeneous: models per chunk, at k-means centres of its latents (1: their mean)

    def __post_init__(self):
        bnb = self.method == "bnb"
        for name, hps_default, bnb_default in (("base_level", 2, 1), ("rounds", 4, 5), ("n_shifts", 14, 7)):
            if getattr(self, name) is None:
                setattr(self, name, bnb_default if bnb else hps_default)
        if self.learns_poses and (self.epochs_fixed or self.epochs_refine):
            raise ValueError(f"method {self.method} runs one stage: set epochs_fixed and epochs_refine to 0")
        if self.method == "pose-vae" and self.beta is None:
            self.beta = 1.0  # the rotation posterior's KL at the ELBO's weight (there is no z to set 1/zdim)
        self.epochs = self.epochs_search + self.epochs_fixed + self.epochs_refine

    def check(self) -> None:
        """Settings out of range, as an :class:`InputError` naming the work directory and the flag."""
        super().check()
        if self.method != "hps" and (self.zdim or self.tilt):
            raise InputError(self.outdir, f"--method {self.method} reconstructs one volume from single images (no "
                             "--zdim or --tilt)")
        if self.zdim < 0:
            raise InputError(self.outdir, "--zdim must be 0 or more")
        if self.pose_lr <= 0:
            raise InputError(self.outdir, "--pose-lr must be positive")
        for name in ("epochs_search", "search_every", "keep", "n_shifts", "batch_size", "search_batch",
                     "search_groups"):
            if getattr(self, name) < 1:
                raise InputError(self.outdir, f"--{name.replace('_', '-')} must be at least 1")
        if self.search_chunk < 0:
            raise InputError(self.outdir, "--search-chunk must be 0 (all at once) or more")
        if self.kmin <= 0 or self.kmax < self.kmin:
            raise InputError(self.outdir, f"need 0 < --kmin <= --kmax (got {self.kmin}, {self.kmax})")

    @property
    def learns_poses(self) -> bool:
        """Whether the poses are learned by gradient descent (the baselines) rather than searched."""
        return self.method in ("gd", "pose-vae")

    @property
    def search_settings(self) -> SearchSettings | BnbSettings:
        """The pose search's grids and bands (``rounds`` are the subdivisions of branch and bound)."""
        shared = {name: getattr(self, name) for name in ("base_level", "kmin", "kmax", "n_shifts", "shift_extent_px")}
        if self.method == "bnb":
            return BnbSettings(subdivisions=self.rounds, **shared)
        return SearchSettings(keep=self.keep, rounds=self.rounds, **shared)

    def stage(self, epoch: int) -> int:
        """1, 2 or 3: the stage an epoch belongs to."""
        if epoch < self.epochs_search:
            return 1
        return 2 if epoch < self.epochs_search + self.epochs_fixed else 3

    def searches(self, epoch: int) -> bool:
        """Whether a pose search runs before this epoch."""
        if self.learns_poses:
            return False
        stage = self.stage(epoch)
        if stage == 1:
            return epoch >= 1 and (epoch - 1) % self.search_every == 0
        if stage == 3:
            return (epoch - self.epochs_search - self.epochs_fixed) % self.search_every == 0
        return False

    def resets(self, epoch: int) -> bool:
        """Whether the networks and optimiser start afresh before this epoch (the start of stage 2)."""
        return self.epochs_fixed > 0 and epoch == self.epochs_search

    def search_kmax(self, epoch: int, box: int) -> float:
        """The search's band limit before ``epoch``, cycles per box: ``kmin`` ramping to ``kmax``."""
        top = min(self.kmax, box / 2)
        ramp = min(1.0, epoch / self.kmax_ramp_epochs) if self.kmax_ramp_epochs > 0 else 1.0
        return min(self.kmin, top) + (top - min(self.kmin, top)) * ramp
