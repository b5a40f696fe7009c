"""Typed run configurations, saved resolved in ``WORKDIR/config.json``, and the one policy of ``--resume``.

Every setting is a dataclass field; its ``resume`` policy says what a resumed run does
with it:

- ``FIXED``: the run's own; a different value asked for is an error (the checkpoint would
  not fit it, or the run would not continue exactly);
- ``MAY_CHANGE``: the run's own unless another is asked for (``epochs``: train longer);
- ``RUNTIME``: where and how this process runs, never taken from the run (the device,
  compilation, CUDA graphs, the checkpoint interval): as asked, else the default;
- ``KEPT``: the run's own whatever is asked (filled in from the data, or derived from
  other settings).

The input files' checksums are kept in ``versions["inputs_sha256"]``; a resumed run checks
every one that is still where it was, and the particles wherever they are now.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from cryofield.errors import InputError
from cryofield.io import WorkDir
from cryofield.io._atomic import save_text
from cryofield.io.tilts import WEIGHTING_HELP, WEIGHTINGS
from cryofield.io.workdir import read_json_object

FIXED, MAY_CHANGE, RUNTIME, KEPT = "fixed", "may change", "runtime", "kept"


def setting(default: Any = dataclasses.MISSING, help: str | None = None, *, resume: str = FIXED,
            path: bool = False, flags: tuple[str, ...] | None = None, choices: list | None = None,
            nargs: str | int | None = None, const: Any = None, metavar: str | tuple[str, ...] | None = None,
            required: bool = False, factory: Any = dataclasses.MISSING) -> Any:
    """A config field: its default, its ``--resume`` policy and how the command line offers it.

    The command line builds each option from this one declaration
    (:func:`cryofield.cli._train.add_settings`): the flag, type (the field's annotation),
    default and help a user sees.

    Parameters
    ----------
    default
        The default value (or ``factory`` for a mutable one); none: required.
    help : str, optional
        The option's help text.
    resume : str
        ``FIXED``, ``MAY_CHANGE``, ``RUNTIME`` or ``KEPT`` (module docstring).
    path : bool
        A file or folder: given as a path, compared by where it resolves to.
    flags : tuple of str, optional
        The option's flags (default ``--name-with-dashes``); a boolean that defaults to True
        is turned off by a ``--no-...`` flag.
    choices, nargs, const, metavar, required
        As :meth:`argparse.ArgumentParser.add_argument` takes them (a setting without a
        default is required).
    """
    metadata = {"resume": resume, "path": path, "flags": flags, "help": help, "choices": choices, "nargs": nargs,
                "const": const, "metavar": metavar, "required": required}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def flag_of(f: dataclasses.Field) -> str:
    """The long flag of a setting (``--batch-size`` for ``batch_size``)."""
    flags = f.metadata.get("flags")
    return flags[-1] if flags else "--" + f.name.replace("_", "-")


@dataclass
class TrainConfig:
    """Every setting of a neural-volume run (``train-nn`` when ``zdim == 0``, ``train-vae`` otherwise).

    Units: ``window_r`` is a fraction of the box radius; ``lr`` is Adam's step size;
    ``tilt_deg`` degrees; ``pose_lr`` the step size of the pose corrections (radians and
    pixels). ``device`` is ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"``; ``buffer_size`` is the shuffling buffer of ``lazy`` loading, in images.
    ``residual`` is the networks' residual block (:class:`cryofield.nn.ResidualMLP`):
    ``"post"``, the seed's and cryoDRGN's ``relu(W h + b + h)``, or ``"pre"``,
    ``h + relu(W h + b)``, which runs saved before the setting existed use.
    """

    # what a run saved before a setting existed did, where that is not the setting's default (:meth:`load`)
    # (ema_decay: runs before 2026-12-07, and cryoDRGN's, kept no average)
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"residual": "pre", "tilt_weighting": "none", "ema_decay": 0.0}

    particles: str = setting(resume=KEPT, path=True)  # IN on the command line; checked by its checksum
    outdir: str = setting(help="work directory", resume=KEPT, path=True, flags=("-o", "--outdir"))
    poses: str | None = setting(None, path=True)
    ctf: str | None = setting(None, path=True)
    datadir: str | None = setting(None, path=True)
    ind: str | None = setting(None, "train on these particles only (.npy, .txt or .pkl)", path=True)
    tilt_series: bool = setting(False, "IN lists one row per tilt image (Warp/M, cryoDRGN parse_relion): group the "
                                       "images into particles and read each one's exposure (RELION 5 sets always "
                                       "are read so); train-vae then learns one z per particle from its tilts")
    apix: float | None = setting(None)
    zdim: int = setting(0, "latent dimension (default 0: one volume)")
    enc_dim: int = setting(256, "encoder width (default 256)")
    enc_layers: int = setting(3, "encoder hidden-to-hidden (residual) layers, counted as cryoDRGN does (default 3)")
    dec_dim: int = setting(256, "decoder width (default 256)")
    dec_layers: int = setting(3, "decoder hidden-to-hidden (residual) layers, counted as cryoDRGN does (default 3)")
    domain: str = setting("fourier", "decoder outputs: Re/Im of F or Hartley H(k), H(-k) (default fourier)",
                          choices=["fourier", "hartley"])
    residual: str = setting("post", "every network's residual blocks: post = relu(W h + b + h), the seed's and "
                                    "cryoDRGN's (default); pre = h + relu(W h + b), cryofield's before 2026-11-27",
                            choices=["post", "pre"])
    pe_type: str = setting("gaussian", "positional encoding (default gaussian)",
                           choices=["gaussian", "geom_full", "geom_lowf"])
    pe_dim: int | None = setting(None, "frequencies per axis (default box/2)")
    feat_sigma: float = setting(0.5, "gaussian features' scale (default 0.5)")
    epochs: int = setting(20, "epochs (default 20)", resume=MAY_CHANGE, flags=("-n", "--epochs"))
    batch_size: int = setting(8, "images per step (tilt series: particles; default 8)", flags=("-b", "--batch-size"))
    lr: float = setting(4e-4, "Adam learning rate (default 4e-4, chosen with the running average of the weights; "
                              "cryoDRGN's is 1e-4)")
    ema_decay: float = setting(0.99, "the maps and latents a run writes (and every later reader of it) come from "
                                     "the running average of the networks' weights over about 1/(1 - D) steps "
                                     "(default 0.99: the last 100); 0: from the last step's weights, as cryoDRGN",
                               metavar="D")
    beta: float | None = setting(None, "KL weight (default 1/zdim)")
    uninvert_data: bool = setting(False, "do not flip the data's contrast")
    window_r: float = setting(0.85, "soft real-space window radius (default 0.85)")
    amp: bool = setting(True, "full fp32 instead of bf16/fp16 mixed precision", flags=("--no-amp",))
    checkpoint: int = setting(5, "checkpoint every N epochs (default 5)", resume=RUNTIME)
    on_nan: str = setting("stop", "a loss that turns NaN or Inf: stop the run (default), or rollback: go back to "
                                  "the last checkpoint with half the learning rate (at most 3 times)",
                          resume=RUNTIME, choices=["stop", "rollback"])
    seed: int = setting(0)
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N", resume=RUNTIME)
    compile_mode: str | None = setting(
        None, "compile the networks with torch.compile (MODE default: 'default'); pays on a GPU, where it fuses the "
              "many small operations of a step; slower to start",
        resume=RUNTIME, flags=("--compile",), nargs="?", const="default",
        choices=["default", "reduce-overhead", "max-autotune"])
    cuda_graph: bool = setting(True, "on a GPU, launch each step's kernels one by one instead of replaying the step "
                                     "as one CUDA graph (the default there, where the run allows it)",
                               resume=RUNTIME, flags=("--no-cuda-graph",))
    lazy: bool = setting(False, "read images as needed through a shuffling buffer (memory independent of N)")
    buffer_size: int = setting(8192, "--lazy: images in the buffer (default 8192)")
    table_storage: str = setting("auto", "where per-particle tables (pose corrections, ab initio's pose and latent "
                                         "tables, their optimiser's moments) live: memory, or disk (files mapped "
                                         "into memory, paged out when memory runs short; in TMPDIR; a run on a GPU "
                                         "keeps them there); default auto: disk for a --lazy run on the CPU (and "
                                         "a --lazy run's particle metadata on any device)",
                                 resume=RUNTIME,
                                 choices=["auto", "memory", "disk"])
    ntilts: int = setting(10, "--tilt-series: the tilts of each particle encoded and decoded, lowest exposure "
                              "first (default 10; particles with fewer use theirs)")
    tilt_pooling: str = setting("concat", "--tilt-series: pool the tilts' embeddings by concatenation (in exposure "
                                          "order; the default, as cryoDRGN-ET), their mean or their maximum",
                                choices=["concat", "mean", "max"])
    tilt_emb_dim: int = setting(64, "--tilt-series: each tilt's embedding (default 64)")
    tilt_weighting: str = setting("auto", "--tilt-series: " + WEIGHTING_HELP, choices=list(WEIGHTINGS))
    tilt: str | None = setting(None, "tilted partner of each particle (.star/.cs/.mrcs), same order", path=True)
    tilt_deg: float = setting(45.0, "stage tilt about x in degrees, for --tilt files without poses (default 45)")
    refine_poses: bool = setting(False, "learn a rotation and shift correction per particle; writes "
                                        "OUTDIR/poses.npz")
    pose_lr: float = setting(1e-3, "step size of the pose corrections (default 1e-3)")
    world_size: int = setting(1, resume=RUNTIME)
    # filled in from the data when training starts
    box: int = setting(0, resume=KEPT)
    data_pixel_size: float = setting(0.0, resume=KEPT)
    data_scale: float = setting(1.0, resume=KEPT)
    #: whether each image's predicted transform is damped by its exposure (tilt images; ``imaging.dose``)
    data_exposure_weighted: bool = setting(False, resume=KEPT)
    #: what scales each tilt image's CTF: ``"_rlnCtfScalefactor"``, ``"cos(tilt)"`` or ``""`` (none)
    data_tilt_amplitude: str = setting("", resume=KEPT)
    versions: dict = setting(resume=KEPT, factory=dict)

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

    def check(self) -> None:
        """Settings out of range, as an :class:`InputError` (the methods' configs add theirs)."""
        if self.epochs < 0 or self.batch_size < 1 or self.checkpoint < 1:
            raise InputError(self.outdir, "need --epochs >= 0, --batch-size and --checkpoint >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(self.outdir, f"need 0 <= --ema-decay < 1, not {self.ema_decay}")
        if self.encodes_tilt_series:
            if self.ntilts < 1 or self.tilt_emb_dim < 1:
                raise InputError(self.outdir, "need --ntilts and --tilt-emb-dim >= 1")
            if self.tilt is not None or self.refine_poses:
                raise InputError(self.outdir, "--tilt-series encodes each particle's own tilts: it takes neither "
                                              "--tilt (tilt pairs) nor --refine-poses")

    @property
    def encodes_tilt_series(self) -> bool:
        """A VAE over tilt series: one latent per particle, from its tilts (``tilt_series`` and ``zdim``)."""
        return self.tilt_series and self.zdim > 0

    @property
    def metadata_in_files(self) -> bool:
        """Whether the particles' metadata lives in mapped files: a ``--lazy`` run, unless ``--table-storage memory``.

        On any device: the metadata is read on the host, and lazily read images leave it as the
        only per-particle memory (:meth:`cryofield.io.ParticleTable.in_mapped_files`).
        """
        return self.lazy and self.table_storage != "memory"

    @property
    def input_files(self) -> tuple[str, ...]:
        """The files whose checksums the run records (and a resumed run checks)."""
        return tuple(p for p in (self.particles, self.poses, self.ctf, self.tilt) if p)

    def save(self, where: str | os.PathLike | WorkDir) -> None:
        """Write as indented JSON to a work directory's ``config.json``, or to a file."""
        path = _config_file(where)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_text(path, json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls: type[C], where: str | os.PathLike | WorkDir) -> C:
        """Read a config written by :meth:`save`, from a work directory or a file (or a cryoDRGN run's).

        A setting missing from the file was added after the run was made, and loads as
        :attr:`LEGACY_DEFAULTS` says where the run behaved otherwise than the default now does:
        without ``residual`` it was trained with ``"pre"`` blocks, so that its checkpoints compute
        what they were trained to; without ``tilt_weighting``, with no amplitude scale on its
        tilt images; without ``ema_decay``, with no average of its weights. Unknown keys (other
        methods' settings) are ignored.
        """
        if isinstance(where, WorkDir) or Path(where).is_dir():  # a cryoDRGN run's config.yaml too
            values = (where if isinstance(where, WorkDir) else WorkDir(where)).read_settings()
        else:
            values = read_json_object(where)
        values = cls.LEGACY_DEFAULTS | values
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def resumed(self: C, changes: dict[str, Any]) -> C:
        """The config a resumed run continues with: this (the run's) config, with ``changes`` asked for.

        Parameters
        ----------
        changes : dict
            Settings asked for (on the command line: those given with a value other than
            the default). ``particles`` names where the run's particles are now.

        Raises
        ------
        InputError
            A ``FIXED`` setting asked to change, or an input whose checksum differs.
        """
        where = Path(self.outdir) / "config.json"
        policies = {f.name: f for f in dataclasses.fields(self)}
        values = {}
        for f in dataclasses.fields(self):
            if f.metadata.get("resume") == RUNTIME:
                values[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        differing = []
        for name, given in changes.items():
            if name not in policies:
                raise ValueError(f"{type(self).__name__} has no setting {name!r}")
            f, saved = policies[name], getattr(self, name)
            policy = f.metadata.get("resume", FIXED)
            if policy in (MAY_CHANGE, RUNTIME):
                values[name] = given
            elif policy == FIXED and not _same(given, saved, f.metadata.get("path", False)):
                flag = flag_of(f)
                shown = (lambda v: not v) if flag.startswith("--no-") else (lambda v: v)
                differing.append(f"{flag} {shown(given)} differs from the run's {shown(saved)}")
        if differing:
            raise InputError(where, "--resume continues the run with its own settings: " + "; ".join(differing))
        config = dataclasses.replace(self, **values)
        config.check_inputs(changes.get("particles"))
        return config

    def check_inputs(self, particles: str | os.PathLike | None = None) -> None:
        """Check the run's recorded input checksums: the particles (at ``particles``, if moved) and the rest.

        Raises
        ------
        InputError
            Naming the file whose content is not what the run was trained on.
        """
        digests = self.versions.get("inputs_sha256", {})
        recorded = digests.get(self.particles)
        if recorded is not None and file_digest(particles or self.particles) not in (None, recorded):
            raise InputError(particles or self.particles,
                             f"--resume: not the particles the run was trained on ({self.particles})")
        for path in self.input_files[1:]:
            recorded = digests.get(path)
            if recorded is not None and file_digest(path) not in (None, recorded):
                raise InputError(path, "--resume: the file changed since the run started")

    def with_versions(self: C) -> C:
        """The config with the software versions and its input files' checksums recorded."""
        import torch

        from cryofield import __version__

        return dataclasses.replace(self, versions={
            "cryofield": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "inputs_sha256": {str(p): file_digest(p) for p in self.input_files}})


@dataclass
class VaeConfig(TrainConfig):
    """``train-vae``: a :class:`TrainConfig` whose latent has 8 dimensions unless told otherwise."""

    zdim: int = setting(8, "latent dimension (default 8)")


C = TypeVar("C", bound=TrainConfig)


def file_digest(path: str | os.PathLike | None) -> str | None:
    """SHA-256 of a file's bytes, or None when it is not a file."""
    if path is None or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _same(given: Any, saved: Any, path: bool) -> bool:
    if path and given is not None and saved is not None:
        return Path(given).resolve() == Path(saved).resolve()
    if isinstance(saved, list) or isinstance(given, (list, tuple)):
        return saved is not None and given is not None and list(given) == list(saved)
    return given == saved


def _config_file(where: str | os.PathLike | WorkDir) -> Path:
    """The config file of a work directory (given as one or as its folder), or ``where`` itself."""
    if isinstance(where, WorkDir):
        return where.config
    return WorkDir(where).config if Path(where).is_dir() else Path(where)
