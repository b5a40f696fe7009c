"""cryoDRGN 4.x work directories, read as cryofield runs (no retraining to move over).

A cryoDRGN ``train_vae``/``train_nn`` output folder holds ``config.yaml`` (its settings),
``weights.pkl`` and ``weights.N.pkl`` (``torch.save`` of the model's state: read by
:mod:`cryofield.train` with ``weights_only=True``) and ``z.pkl``/``z.N.pkl`` (the latents,
a pickled array: read through the safe loader). This module names those files and turns
the settings into cryofield's; it never imports torch. The facts were read from cryoDRGN
4.3.1's ``config.py``, ``models.py`` and ``commands/train_vae.py``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io.arrays import check_array
from cryofield.io.legacy import load_legacy_pickle

CONFIG = "config.yaml"


def is_cryodrgn_run(root: str | os.PathLike) -> bool:
    """Whether ``root`` is a cryoDRGN work directory (a ``config.yaml``, no cryofield ``config.json``)."""
    root = Path(root)
    return (root / CONFIG).is_file() and not (root / "config.json").is_file()


@dataclass(frozen=True)
class CryodrgnRun:
    """The files of a cryoDRGN work directory, at its last epoch or a chosen one.

    Attributes
    ----------
    root : Path
    settings : dict
        ``config.yaml`` as written by cryoDRGN.
    weights : Path
        ``weights.pkl`` (or ``weights.N.pkl``).
    latents : Path
        ``z.pkl`` (or ``z.N.pkl``); absent for ``train_nn``.
    """

    root: Path
    settings: dict
    weights: Path
    latents: Path

    @classmethod
    def open(cls, root: str | os.PathLike, epoch: int | None = None) -> CryodrgnRun:
        """Read ``config.yaml`` and find the weights and latents (of ``epoch`` as cryoDRGN numbers them).

        Raises
        ------
        InputError
            No or unreadable ``config.yaml``, no weights, or settings this version cannot read.
        """
        import yaml

        root = Path(root)
        try:
            settings = yaml.safe_load((root / CONFIG).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise InputError(root / CONFIG, f"not a readable cryoDRGN config ({str(exc).splitlines()[0]})") from None
        if not isinstance(settings, dict) or not isinstance(settings.get("model_args"), dict) \
                or not isinstance(settings.get("lattice_args"), dict):
            raise InputError(root / CONFIG, "not a cryoDRGN config (no model_args and lattice_args)")
        version = str(settings.get("version", ""))
        if version and not version.startswith(("3.", "4.")):
            warnings.warn(f"{root / CONFIG}: written by cryoDRGN {version}; cryofield reads 4.x (and 3.x) runs",
                          stacklevel=2)
        suffix = "" if epoch is None else f".{epoch}"
        weights, latents = root / f"weights{suffix}.pkl", root / f"z{suffix}.pkl"
        if not weights.is_file():
            found = sorted(p.name for p in root.glob("weights*.pkl"))
            raise InputError(weights, "not found" + (f"; the run has {', '.join(found)}" if found else ""))
        return cls(root, settings, weights, latents)

    @property
    def box(self) -> int:
        """The images' box ``D`` (cryoDRGN's lattice has ``D + 1`` points)."""
        return int(self.settings["lattice_args"]["D"]) - 1

    @property
    def model(self) -> dict:
        """``model_args``: the networks' settings."""
        return self.settings["model_args"]

    def read_latents(self) -> np.ndarray:
        """The latents (N, zdim), float32, from the pickle through the safe loader."""
        if not self.latents.is_file():
            raise InputError(self.latents, "not found")
        z = load_legacy_pickle(self.latents)
        zdim = int(self.model.get("zdim") or 0)
        return check_array(self.latents, np.asarray(z), ndim=2, columns=zdim or None, what="latents").astype(
            np.float32)

    def pixel_size(self) -> float | None:
        """The data's pixel size in Angstrom, from the run's CTF pickle (None where it is not there)."""
        ctf = (self.settings.get("dataset_args") or {}).get("ctf")
        if not ctf or not Path(ctf).is_file():
            return None
        try:
            values = np.asarray(load_legacy_pickle(ctf), float)
        except InputError:
            return None
        return float(values[0, 1]) if values.ndim == 2 and values.shape[1] >= 2 and len(values) else None

    def cryofield_settings(self) -> dict:
        """The run's settings under cryofield's names (``TrainConfig``/``VaeConfig`` fields).

        Raises
        ------
        InputError
            Settings cryofield cannot reproduce (a data mean other than 0, an activation other
            than ReLU, an encoder that is not the residual MLP).
        """
        model, data = self.model, self.settings.get("dataset_args") or {}
        norm = data.get("norm") or [0.0, 1.0]
        if float(norm[0]) != 0.0:
            raise InputError(self.root / CONFIG, f"data normalised with mean {norm[0]}: cryofield reads runs "
                                                 "normalised with mean 0 (cryoDRGN's default)")
        if model.get("activation", "relu") != "relu":
            raise InputError(self.root / CONFIG, f"activation {model['activation']!r}: cryofield reads ReLU networks")
        apix = self.pixel_size()
        if apix is None:
            warnings.warn(f"{self.root}: no pixel size in the run's CTF file; maps get 1 A/px unless --apix is given",
                          stacklevel=2)
        # amp False: cryoDRGN evaluates its maps in fp32, and so do these
        return {
            "particles": str(data.get("particles", "")), "ctf": data.get("ctf"), "poses": data.get("poses"),
            "ind": data.get("ind"), "datadir": data.get("datadir"), "outdir": str(self.root),
            "zdim": int(model.get("zdim") or 0), "dec_dim": int(model["pdim"]), "dec_layers": int(model["players"]),
            "enc_dim": int(model.get("qdim") or 0), "enc_layers": int(model.get("qlayers") or 0),
            "pe_type": str(model.get("pe_type", "gaussian")), "pe_dim": model.get("pe_dim"),
            "feat_sigma": float(model.get("feat_sigma") or 0.5), "domain": str(model.get("domain", "fourier")),
            "residual": "post", "amp": False, "uninvert_data": not data.get("invert_data", True),
            "window_r": float(data.get("window_r") or 0.85), "seed": int(self.settings.get("seed") or 0),
            "box": self.box, "data_scale": float(norm[1]), "data_pixel_size": apix or 1.0,
            "versions": {"cryodrgn": str(self.settings.get("version", ""))},
        }
