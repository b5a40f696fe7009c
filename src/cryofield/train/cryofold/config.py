"""Cryofold's settings: the reference structure, its start, its restraints and the ablations."""

from __future__ import annotations

from dataclasses import dataclass

from cryofield.errors import InputError
from cryofield.io import read_atomic_model
from cryofield.train.config import KEPT, MAY_CHANGE, TrainConfig, setting

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

    zdim: int = setting(0, "latent dimension for a heterogeneous fit (--zdim alone: 1, the seed's; default 0)",
                        nargs="?", const=1)
    enc_layers: int = setting(3, "encoder residual layers (default 3)")
    dec_dim: int = setting(256, "offset decoder width (default 256)")
    dec_layers: int = setting(3, "offset decoder residual layers (default 3)")
    epochs: int = setting(10, "epochs after the warm-up (default 10)", resume=MAY_CHANGE, flags=("-n", "--epochs"))
    lr: float = setting(1e-4, "Adam learning rate (default 1e-4, the seed's)")
    amp: bool = setting(True, "the encoder in fp32 instead of bf16/fp16", flags=("--no-amp",))
    ema_decay: float = setting(0.0, "the structure, map and latents from the running average of the networks' "
                                    "weights over about 1/(1 - D) steps (default 0: the last step's; the average is "
                                    "not measured on Cryofold yet)", metavar="D")
    lazy: bool = setting(False, "read images through a shuffling buffer")
    # the run's reference (its checksum is checked on --resume)
    pdb: str = setting("", "reference structure (PDB or mmCIF), in the frame of the particles' poses (see --center)",
                       resume=KEPT, path=True, required=True)
    init: str = setting("reference", "start from the reference (default), from it with uniform noise on each "
                                     "C-alpha (--init-noise), or from random C-alphas in a cube at the centre "
                                     "(--init-box); side chains of noisy and random starts begin on their C-alpha",
                        choices=list(INITS))
    init_noise_angstrom: float = setting(6.0, "noise half-width per coordinate, A (default 6)", flags=("--init-noise",))
    init_box_angstrom: float = setting(64.0, "edge of the random start's cube, A (default 64)", flags=("--init-box",))
    ablate: list[str] = setting(help="drop model parts: one Gaussian per residue, no bond restraints, or no image "
                                     "loss", factory=list, nargs="+", choices=list(ABLATIONS))
    width_angstrom: float = setting(3.71, "initial Gaussian width, A (default 3.71)", flags=("--width",))
    a0: float | None = setting(None, "initial amplitude per electron (default: the least-squares fit of the starting "
                                     "model to the first 256 images)")
    bond_strength: float = setting(0.1, "restraint strength k (default 0.1, the seed's; 30 kept the fitted "
                                        "structures closer to the true ones in our benchmarks)")
    warmup_epochs: int = setting(1, "epochs fitting width and amplitude before the coordinates restart (default 1)")
    center_angstrom: list[float] | None = setting(
        None, "the reference's point (A) at the box centre (default: its electron-weighted centroid, as 'cryofield "
              "simulate' places a model; for a model fitted into a map with its origin at 0, use D/2 * pixel size on "
              "each axis)", flags=("--center",), nargs=3, metavar=("X", "Y", "Z"))

    def objective(self, mse, kl, restraint, n_pixels: int):
        """As :meth:`TrainConfig.objective`, without the image term when the images are ablated."""
        return super().objective(mse * 0 if "images" in self.ablate else mse, kl, restraint, n_pixels)

    @property
    def input_files(self) -> tuple[str, ...]:
        """The particles, poses, CTF and the reference structure."""
        return tuple(p for p in (self.particles, self.poses, self.ctf, self.pdb) if p)

    def check(self) -> None:
        """Settings out of range, or an unreadable reference, as an :class:`InputError`."""
        super().check()
        if self.epochs < 1 or self.batch_size < 1 or self.warmup_epochs < 0 or self.zdim < 0:
            raise InputError(self.outdir, "need --epochs and --batch-size >= 1, --warmup-epochs and --zdim >= 0")
        if self.width_angstrom <= 0 or (self.a0 is not None and self.a0 <= 0) or self.init_box_angstrom <= 0:
            raise InputError(self.outdir, "--width, --a0 and --init-box must be positive")
        if self.bond_strength < 0 or self.init_noise_angstrom < 0:
            raise InputError(self.outdir, "--bond-strength and --init-noise must be 0 or more")
        read_atomic_model(self.pdb)  # a clear error before the images are read
