"""Ab initio's settings: the schedule (cryoDRGN2's or cryoDRGN-AI's) and the pose search's grids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from cryofield.errors import InputError
from cryofield.train.config import KEPT, TrainConfig, setting


@dataclass
class AbinitConfig(TrainConfig):
    """A :class:`TrainConfig` plus the schedule and the pose search's settings.

    Units: band limits in cycles per box (Fourier pixels), ``shift_extent_px`` in pixels
    (default ``20 * D / 128``). ``epochs`` is the total, set from the stages.

    Two schedules. ``"search"`` (cryoDRGN2 with the model reset): stage 1, ``epochs_search``
    epochs, the first on random poses and a search every ``search_every``-th; stage 2,
    ``epochs_fixed`` epochs after a reset; stage 3, ``epochs_refine`` epochs with searches.
    ``"table"`` (cryoDRGN-AI): stage 1 is epoch 0, a pass over ``pretrain_images`` images on
    random poses, then ``epochs_search`` epochs each with a search; stage 2, ``epochs_table``
    epochs in which every particle's pose is a row of a table trained with the volume.

    The table schedule is the default: on 10,000 adenylate kinase images at 64 px it reached a
    median rotation error below 0.03 rad and the FSC target 1.36 times sooner than the search
    schedule, and finished in 30 minutes instead of 2.6 hours, as accurate
    (``docs/benchmarks.md``). Without a ``schedule``, the search schedule is chosen when its
    own stages are set (``epochs_fixed``, ``epochs_refine``) and for the methods other than the
    hierarchical search (their comparisons were made in it).

    One volume (no ``zdim``) takes its map from its poses (``Abinit._reconstruct``), so its
    decoder is only the searches' reference: ``train_band`` ``"search"`` (its default in the
    table schedule) fits it inside the next search's band until the last search
    (:meth:`train_band_px`). On 20,000 x 128 px images that reached the race's target 2.8 times
    sooner than the decoder fit at every pixel with its map as the product, the poses as good.
    """

    # runs saved before --train-band fit every pixel in every epoch
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = TrainConfig.LEGACY_DEFAULTS | {"train_band": "full"}

    ind: str | None = setting(None, "reconstruct from these particles only (.npy, .txt or .pkl)", path=True)
    zdim: int = setting(0, "latent dimension: 0 for one volume (default), more for a heterogeneous VAE")
    enc_layers: int = setting(3, "encoder residual layers (default 3)")
    z_table: bool = setting(False, "--zdim: each particle's latent a row of a table trained with the volume (an "
                                   "autodecoder, cryoDRGN-AI's default) instead of an image encoder")
    z_table_kl: bool = setting(False, "--z-table: a Gaussian per particle with the KL term (weight --beta) instead "
                                      "of a point")
    z_lr: float = setting(1e-2, "--z-table: step size of the latent table (default 1e-2)")
    epochs: int = setting(90, resume=KEPT)  # the three stages'
    tilt: str | None = setting(None, "tilted partner of each particle (.star/.cs/.mrcs), same order: poses are "
                                     "searched on both images together", path=True)
    tilt_deg: float = setting(45.0, "stage tilt about x in degrees (default 45)")
    pose_lr: float = setting(1e-3, "gd: step size of the rotations (radians) and shifts (px) (default 1e-3)")
    # the schedule
    schedule: str | None = setting(None, "table: cryoDRGN-AI's pretraining on random poses, a few search epochs, "
                                         "then each particle's pose a row of a table trained with the volume "
                                         "(default); search: cryoDRGN2's searches, model reset and searches again "
                                         "(the default with --epochs-fixed, --epochs-refine or --no-reset, and "
                                         "with --method other than hps)", choices=["search", "table"])
    epochs_search: int | None = setting(None, "stage 1: epochs with pose search (search: the first on random poses, "
                                              "default 30; table: one search each, default 3)")
    epochs_fixed: int | None = setting(None, "search, stage 2: reset the model, train on the last poses (default 30)")
    epochs_refine: int | None = setting(None, "search, stage 3: epochs with pose search again (default 30)")
    pretrain_images: int = setting(10000, "table: images trained on random poses before the first search "
                                          "(default 10,000, at most all)")
    epochs_table: int | None = setting(None, "table, stage 2: epochs training the pose table with the volume "
                                             "(step --pose-lr) (default 27)")
    train_band: str | None = setting(None, "table: fit the decoder inside the band limit of the next search only "
                                           "in the pretraining and each search epoch but the last (search: the "
                                           "default for one volume, whose map is reconstructed from the poses), "
                                           "or at every pixel in every epoch (full: the default with --zdim)",
                                     choices=["search", "full"])
    search_every: int = setting(5, "search poses every N epochs (default 5)")
    kmax_ramp_epochs: int = setting(25, "epochs over which the search's band limit grows from --kmin to --kmax "
                                        "(default 25)")
    # the pose search: "hps" (cryoDRGN2) or "bnb" (cryoDRGN-BNB); learned: "gd" or "pose-vae"
    method: str = setting(
        "hps", "hps: hierarchical pose search (cryoDRGN2, default); bnb: branch and bound with frequency marching "
               "(cryoDRGN-BNB), for comparison; the baselines of the seed's table 5.2, one stage of "
               "--epochs-search epochs: gd (gradient descent on poses from random starts, step --pose-lr) and "
               "pose-vae (an encoder predicts each rotation)", choices=["hps", "bnb", "gd", "pose-vae"])
    base_level: int | None = setting(None, "SO(3) base grid: 1 = 576 rotations (30 deg; bnb default), 2 = 4,608 "
                                           "(15 deg; hps default), 3 = 36,864")
    keep: int = setting(8, "K: rotations kept per round (default 8)")
    rounds: int | None = setting(None, "M: refinement rounds (default 4; bnb: subdivisions, 5)")
    kmin: float = setting(12.0, "band limit of the base search, Fourier px (default 12)")
    kmax: float = setting(48.0, "band limit of the last round, capped at D/2 (default 48)")
    n_shifts: int | None = setting(None, "T: translation grid T x T (default 14; bnb 7)")
    shift_extent_px: float | None = setting(None, "translation grid half-width in px (default 20 * D / 128)",
                                            flags=("--shift-extent",))
    oversample: float = setting(2.0, "model lattice points per Fourier pixel for slice interpolation (default 2)")
    search_batch: int = setting(32, "images searched at a time (default 32)")
    search_chunk: int = setting(256, "online search: render the model every N particles and train on each chunk "
                                     "right after searching it, as cryoDRGN does per batch (default 256; 0: all "
                                     "particles against one model, which converges far worse)")
    search_groups: int = setting(1, "--zdim: search each chunk against the model at its mean latent (1, the "
                                    "default), or at this many k-means centres of its latents (one render each; "
                                    "converged far worse in our tests)")

    def __post_init__(self):
        bnb = self.method == "bnb"
        for name, hps_default, bnb_default in (("base_level", 2, 1), ("rounds", 4, 5), ("n_shifts", 14, 7)):
            if getattr(self, name) is None:
                setattr(self, name, bnb_default if bnb else hps_default)
        if self.schedule is None:
            own_stages = self.epochs_fixed is not None or self.epochs_refine is not None
            self.schedule = "search" if own_stages or self.method != "hps" else "table"
        table = self.schedule == "table"
        for name, search_default, table_default in (("epochs_search", 30, 3), ("epochs_fixed", 30, 0),
                                                    ("epochs_refine", 30, 0), ("epochs_table", 0, 27)):
            if getattr(self, name) is None:
                setattr(self, name, table_default if table else search_default)
        if self.learns_poses and (self.epochs_fixed or self.epochs_refine):
            raise ValueError(f"method {self.method} runs one stage: set epochs_fixed and epochs_refine to 0")
        if table and (self.epochs_fixed or self.epochs_refine):
            raise ValueError("the table schedule has no reset or refinement stage: set epochs_fixed and "
                             "epochs_refine to 0")
        if not table and self.epochs_table:
            raise ValueError("epochs_table belongs to the table schedule")
        if self.train_band is None:  # one volume's map comes from its poses (Abinit.end_of_epoch), not the decoder
            self.train_band = "search" if table and not self.zdim else "full"
        if self.method == "pose-vae" and self.beta is None:
            self.beta = 1.0  # the rotation posterior's KL at the ELBO's weight (there is no z to set 1/zdim)
        self.epochs = (1 + self.epochs_search + self.epochs_table if table
                       else self.epochs_search + self.epochs_fixed + self.epochs_refine)

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
        if self.schedule == "table" and self.learns_poses:
            raise InputError(self.outdir, f"--schedule table searches poses: not with --method {self.method}")
        if (self.z_table or self.z_table_kl) and not self.zdim:
            raise InputError(self.outdir, "--z-table needs --zdim")
        if self.z_table_kl and not self.z_table:
            raise InputError(self.outdir, "--z-table-kl belongs to --z-table")
        if self.z_lr <= 0:
            raise InputError(self.outdir, "--z-lr must be positive")
        if self.pretrain_images < 1:
            raise InputError(self.outdir, "--pretrain-images must be at least 1")
        if (self.epochs_table or 0) < 0:
            raise InputError(self.outdir, "--epochs-table must be 0 or more")
        if self.lazy and self.learns_poses:
            raise InputError(self.outdir, f"--lazy needs a pose search: --method {self.method} learns every "
                             "particle's pose from images held in memory")
        if self.kmin <= 0 or self.kmax < self.kmin:
            raise InputError(self.outdir, f"need 0 < --kmin <= --kmax (got {self.kmin}, {self.kmax})")

    @property
    def learns_poses(self) -> bool:
        """Whether the poses are learned by gradient descent (the baselines) rather than searched."""
        return self.method in ("gd", "pose-vae")

    @property
    def search_settings(self):
        """The pose search's grids and bands (``rounds`` are the subdivisions of branch and bound).

        Returns
        -------
        cryofield.posesearch.SearchSettings or cryofield.posesearch.BnbSettings
        """
        from cryofield.posesearch import BnbSettings, SearchSettings

        shared = {name: getattr(self, name) for name in ("base_level", "kmin", "kmax", "n_shifts", "shift_extent_px")}
        if self.method == "bnb":
            return BnbSettings(subdivisions=self.rounds, **shared)
        return SearchSettings(keep=self.keep, rounds=self.rounds, **shared)

    @property
    def table_schedule(self) -> bool:
        """Whether this is cryoDRGN-AI's schedule (pretraining, searches, then the pose table)."""
        return self.schedule == "table"

    def stage(self, epoch: int) -> int:
        """1, 2 or 3: the stage an epoch belongs to (the table schedule's: 1, searching, or 2, the table)."""
        if self.table_schedule:
            return 1 if epoch <= self.epochs_search else 2
        if epoch < self.epochs_search:
            return 1
        return 2 if epoch < self.epochs_search + self.epochs_fixed else 3

    def searches(self, epoch: int) -> bool:
        """Whether a pose search runs before this epoch."""
        if self.learns_poses:
            return False
        if self.table_schedule:
            return 1 <= epoch <= self.epochs_search
        stage = self.stage(epoch)
        if stage == 1:
            return epoch >= 1 and (epoch - 1) % self.search_every == 0
        if stage == 3:
            return (epoch - self.epochs_search - self.epochs_fixed) % self.search_every == 0
        return False

    def resets(self, epoch: int) -> bool:
        """Whether the networks and optimiser start afresh before this epoch (the start of stage 2)."""
        return not self.table_schedule and self.epochs_fixed > 0 and epoch == self.epochs_search

    def train_band_px(self, epoch: int, box: int) -> float | None:
        """The band limit the decoder is fit inside in ``epoch``'s passes, cycles per box; None: every pixel.

        With ``train_band`` ``"search"``, the table schedule's pretraining and its search epochs
        but the last fit the decoder as far as the next search will look (:meth:`search_kmax`):
        at 128 px the pretraining at ``k < 24`` (14 % of the pixels), the first two search epochs
        at 36 and 48. The last search epoch and the pose table fit every pixel, as do the other
        schedules.
        """
        if not self.table_schedule or self.train_band != "search" or epoch >= self.epochs_search:
            return None
        band = self.search_kmax(epoch + 1, box)
        return None if band >= box / 2 else band

    def search_kmax(self, epoch: int, box: int) -> float:
        """The search's band limit before ``epoch``, cycles per box: ``kmin`` ramping to ``kmax``.

        The table schedule's few searches ramp over themselves, the last at ``kmax``.
        """
        top = min(self.kmax, box / 2)
        span = self.epochs_search if self.table_schedule else self.kmax_ramp_epochs
        ramp = min(1.0, epoch / span) if span > 0 else 1.0
        return min(self.kmin, top) + (top - min(self.kmin, top)) * ramp
