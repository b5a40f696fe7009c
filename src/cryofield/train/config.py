"""Typed training configuration, saved resolved in ``WORKDIR/config.json``."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainConfig:
    """Every setting of a training run (``train-nn`` when ``zdim == 0``, ``train-vae`` otherwise).

    Units: ``window_r`` is a fraction of the box radius; ``lr`` is Adam's step size;
    ``tilt_deg`` degrees; ``pose_lr`` the step size of the pose corrections (radians and
    pixels). ``device`` is ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"``; ``buffer_size`` is the shuffling buffer of ``lazy`` loading, in images.
    ``residual`` is the networks' residual block (:class:`cryofield.nn.ResidualMLP`):
    ``"post"``, the seed's and cryoDRGN's ``relu(W h + b + h)``, or ``"pre"``,
    ``h + relu(W h + b)``, which runs saved before the setting existed use.
    """

    particles: str
    outdir: str
    poses: str | None = None
    ctf: str | None = None
    datadir: str | None = None
    ind: str | None = None
    apix: float | None = None
    zdim: int = 0
    enc_dim: int = 256
    enc_layers: int = 3
    dec_dim: int = 256
    dec_layers: int = 3
    domain: str = "fourier"
    residual: str = "post"
    pe_type: str = "gaussian"
    pe_dim: int | None = None
    feat_sigma: float = 0.5
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-4
    beta: float | None = None  # KL weight; default 1 / zdim
    uninvert_data: bool = False
    window_r: float = 0.85
    amp: bool = True
    checkpoint: int = 5
    seed: int = 0
    device: str = "auto"
    compile_mode: str | None = None  # torch.compile of the networks: None, "default", "reduce-overhead", ...
    cuda_graph: bool = True  # replay each whole step as one CUDA graph where it can (see loop.GraphedStep)
    lazy: bool = False
    buffer_size: int = 8192
    tilt: str | None = None
    tilt_deg: float = 45.0
    refine_poses: bool = False
    pose_lr: float = 1e-3
    world_size: int = 1
    # filled in from the data when training starts
    box: int = 0
    data_pixel_size: float = 0.0
    data_scale: float = 1.0
    versions: dict = field(default_factory=dict)

    def objective(self, mse, kl, restraint, n_pixels: int):
        """The loss of a step: ``mse + (beta KL + restraint) / (2P - 1)``.

        ``mse`` is the mean over the half-lattice pixels; the KL of an image and an atomic
        model's restraint energy are spread over the ``2P - 1`` real pixels of the circle, so
        that both weigh against the image's summed squared residual as in the seed.
        """
        return mse + (self.kl_weight * kl + restraint) / (2 * n_pixels - 1)

    @property
    def kl_weight(self) -> float:
        """``beta``, or ``1 / zdim`` when unset."""
        return self.beta if self.beta is not None else (1.0 / self.zdim if self.zdim else 0.0)

    def save(self, path: str | os.PathLike) -> None:
        """Write as indented JSON."""
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a ``config.json`` written by :meth:`save`.

        A file without ``residual`` was written before that setting existed, by networks
        with ``"pre"`` blocks, and loads as ``"pre"`` so that its checkpoints compute what
        they were trained to.
        """
        values = json.loads(Path(path).read_text())
        values.setdefault("residual", "pre")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
