"""The work directory of a run: every file a run writes, named and formatted in one place.

A run (``train-nn``, ``train-vae``, ``abinit``, ``train-cryofold``) writes one folder::

    config.json            every setting, resolved, with versions and input checksums
    checkpoints/           epoch_NNNN.pt and last.pt (torch state dicts, weights_only)
    log.jsonl              one JSON record per epoch: losses, times, throughput
    train.log              the same as lines to read, with times, starts and resumes
    z.npy                  posterior means (N, zdim), float32, in particle order
    poses.npz              refined poses: rotations (N, 3, 3), shifts_px (N, 2)
    volume.mrc             the map (homogeneous runs), positive density
    poses.star             ab initio: the found poses for RELION or train-vae
    poses_tilt.star        ab initio with tilt pairs: the tilted partners' poses
    maps/stageN.mrc        ab initio: the map at the end of each stage
    poses/                 ab initio: viewing-direction plots after each search
    warmup/                Cryofold: the warm-up, a work directory of its own, + globals.json
    structure.pdb          Cryofold: the fitted coarse-grained model
    analysis/, landscape/  what ``analyze`` and ``landscape`` write (their own modules name those files)
    .lock                  held while a process writes the run (:meth:`WorkDir.locked`)
    report.html            the default report

Checkpoints are read and written by :mod:`cryofield.train` (this layer never imports
torch); their paths are here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io._atomic import is_part_name, save_npy, save_npz, save_text
from cryofield.io.arrays import check_array, read_array, read_arrays
from cryofield.io.cryodrgn import CryodrgnRun, is_cryodrgn_run
from cryofield.io.legacy import load_legacy_pickle


@dataclass(frozen=True)
class WorkDir:
    """The files of one run's work directory.

    Parameters
    ----------
    root : str or PathLike
        The folder (``-o`` of a trainer, ``WORKDIR`` of the commands that read runs).
    """

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def __str__(self) -> str:
        return str(self.root)

    # ---- names ----
    @property
    def config(self) -> Path:
        """``config.json``: every setting of the run."""
        return self.root / "config.json"

    @property
    def checkpoints(self) -> Path:
        """The folder of checkpoints."""
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        """``checkpoints/last.pt``: what ``--resume`` and every reader of a trained run load."""
        return self.checkpoints / "last.pt"

    def checkpoint(self, epoch: int) -> Path:
        """``checkpoints/epoch_NNNN.pt``, after 0-based ``epoch``."""
        return self.checkpoints / f"epoch_{epoch:04d}.pt"

    @property
    def log(self) -> Path:
        """``log.jsonl``: one record per epoch."""
        return self.root / "log.jsonl"

    @property
    def train_log(self) -> Path:
        """``train.log``: the run's history as lines a person reads."""
        return self.root / "train.log"

    @property
    def latents(self) -> Path:
        """``z.npy``: posterior means (N, zdim) (a cryoDRGN run's ``z.pkl``)."""
        if self.is_cryodrgn():
            return CryodrgnRun.open(self.root).latents
        return self.root / "z.npy"

    @property
    def refined_poses(self) -> Path:
        """``poses.npz``: poses refined by ``--refine-poses``."""
        return self.root / "poses.npz"

    @property
    def volume(self) -> Path:
        """``volume.mrc``: the run's map."""
        return self.root / "volume.mrc"

    @property
    def poses_star(self) -> Path:
        """``poses.star``: ab initio's poses of the particles."""
        return self.root / "poses.star"

    @property
    def tilt_poses_star(self) -> Path:
        """``poses_tilt.star``: ab initio's poses of the tilted partners."""
        return self.root / "poses_tilt.star"

    @property
    def stage_maps(self) -> Path:
        """``maps/``: ab initio's map after each stage."""
        return self.root / "maps"

    def stage_map(self, stage: int) -> Path:
        """``maps/stageN.mrc``."""
        return self.stage_maps / f"stage{stage}.mrc"

    def reconstruction_map(self, epoch: int) -> Path:
        """``maps/reconstruction_epochNNN.mrc``: one volume's map from its poses after 0-based ``epoch``."""
        return self.stage_maps / f"reconstruction_epoch{epoch + 1:03d}.mrc"

    @property
    def reconstruction(self) -> tuple[Path, Path, Path, Path]:
        """``reconstruction.mrc``, its two half maps and ``reconstruction_fsc.txt``: the final poses' map."""
        names = ("reconstruction.mrc", "reconstruction_half_a.mrc", "reconstruction_half_b.mrc",
                 "reconstruction_fsc.txt")
        return tuple(self.root / name for name in names)

    @property
    def convergence_plot(self) -> Path:
        """``convergence.png``: ab initio's loss, pose changes and gradient per epoch."""
        return self.root / "convergence.png"

    @property
    def direction_plots(self) -> Path:
        """``poses/``: ab initio's viewing directions after each search."""
        return self.root / "poses"

    def direction_plot(self, epoch: int) -> Path:
        """``poses/directions_epochNNN.png`` after the search before 0-based ``epoch``."""
        return self.direction_plots / f"directions_epoch{epoch + 1:03d}.png"

    @property
    def warmup(self) -> WorkDir:
        """``warmup/``: Cryofold's warm-up, a work directory of its own."""
        return WorkDir(self.root / "warmup")

    @property
    def warmup_globals(self) -> Path:
        """``globals.json`` of a warm-up: the width and amplitude it fitted."""
        return self.root / "globals.json"

    @property
    def structure(self) -> Path:
        """``structure.pdb``: Cryofold's fitted model."""
        return self.root / "structure.pdb"

    @property
    def analysis(self) -> Path:
        """``analysis/``: the default output of ``cryofield analyze``."""
        return self.root / "analysis"

    @property
    def landscape(self) -> Path:
        """``landscape/``: the default output of ``cryofield landscape``."""
        return self.root / "landscape"

    @property
    def report(self) -> Path:
        """``report.html``: the default output of ``cryofield report``."""
        return self.root / "report.html"

    @contextlib.contextmanager
    def locked(self) -> Iterator[WorkDir]:
        """Hold the folder for one writing process (``.lock``, an advisory ``flock``).

        The lock belongs to the open file, so a process that dies, even by SIGKILL, leaves
        none behind; the temporary files such a process was writing are removed here (the
        files they were to replace are untouched). A second process is refused with an :class:`InputError` naming the
        process that holds the folder.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        fh = open(path, "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise InputError(self.root, f"in use by {holder}: one run at a time writes a work directory") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"process {os.getpid()} on {socket.gethostname()}\n")
            fh.flush()
            for folder in (self.root, self.checkpoints):  # what a killed writer left, never a whole file
                for left in folder.glob(".*.part*"):
                    if is_part_name(left.name):
                        left.unlink(missing_ok=True)
            yield self
        finally:
            fh.close()

    # ---- state ----
    def is_cryodrgn(self) -> bool:
        """Whether this is a cryoDRGN work directory (read through :mod:`cryofield.io.cryodrgn`)."""
        return is_cryodrgn_run(self.root)

    def is_trained(self) -> bool:
        """Whether the run has a config and a last checkpoint (a cryoDRGN run: its final weights)."""
        if self.is_cryodrgn():
            return (self.root / "weights.pkl").is_file()
        return self.config.is_file() and self.last_checkpoint.is_file()

    def require_trained(self) -> WorkDir:
        """``self``, or an :class:`InputError` naming the folder when it holds no trained run."""
        if not self.is_trained():
            raise InputError(self.root, "not a trained work directory (config.json and checkpoints/last.pt, or "
                                        "cryoDRGN's config.yaml and weights.pkl)")
        return self

    def require_config(self) -> WorkDir:
        """``self``, or an :class:`InputError` when there is no ``config.json``."""
        if not self.config.is_file() and not self.is_cryodrgn():
            raise InputError(self.root, "not a trained work directory (config.json, or cryoDRGN's config.yaml)")
        return self

    def read_settings(self) -> dict:
        """``config.json`` as a dict (:mod:`cryofield.train` turns it into a typed config).

        A cryoDRGN run's ``config.yaml`` is read under cryofield's names
        (:meth:`CryodrgnRun.cryofield_settings`).
        """
        if self.is_cryodrgn():
            return CryodrgnRun.open(self.root).cryofield_settings()
        return read_json_object(self.config)

    def read_log(self) -> list[dict]:
        """The per-epoch records of ``log.jsonl`` (empty when there is none)."""
        if not self.log.is_file():
            return []
        records = []
        for number, line in enumerate(self.log.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise InputError(self.log, f"line {number} is not JSON") from None
            if not isinstance(record, dict) or "epoch" not in record:
                raise InputError(self.log, f"line {number} is not an epoch record")
            records.append(record)
        return records

    def keep_log_until(self, epochs: int) -> None:
        """Keep the records of the first ``epochs`` epochs of ``log.jsonl`` (a run going back to a checkpoint).

        A last line cut short by a killed process is dropped too.
        """
        if not self.log.is_file():
            return
        lines = self.log.read_text().splitlines()
        kept = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line) if line.strip() else None
            except ValueError:
                if number == len(lines):
                    break  # the append a kill cut short
                raise InputError(self.log, f"line {number} is not JSON") from None
            if isinstance(record, dict) and int(record.get("epoch", -1)) < epochs:
                kept.append(line + "\n")
        if len(kept) != len(lines):
            save_text(self.log, "".join(kept))

    def append_log(self, record: dict) -> None:
        """Append one epoch's record to ``log.jsonl``, and as a line to ``train.log``."""
        with open(self.log, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        shown = {k: v for k, v in record.items() if k != "epoch"}
        self.note(f"epoch {record['epoch'] + 1}: " + ", ".join(
            f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()))

    def start_log(self) -> None:
        """Make the checkpoint folder and start empty logs (a fresh run in an old folder)."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.log.unlink(missing_ok=True)
        self.train_log.unlink(missing_ok=True)

    def note(self, line: str) -> None:
        """Append a time-stamped line to ``train.log``."""
        import datetime

        with open(self.train_log, "a") as fh:
            fh.write(f"{datetime.datetime.now().isoformat(timespec='seconds')}  {line}\n")

    def read_latents(self, zdim: int | None = None, path: str | os.PathLike | None = None) -> np.ndarray:
        """Latents (N, zdim): ``z.npy`` or ``path``, checked to be finite and of ``zdim`` columns."""
        source = Path(path) if path is not None else self.latents
        if not source.is_file():
            raise InputError(source, "not found" + ("" if path is not None else ": the run did not finish"))
        if source.suffix.lower() == ".pkl":  # cryoDRGN's z.pkl, through the safe loader
            return check_array(source, load_legacy_pickle(source), ndim=2, columns=zdim, what="latents")
        return read_array(source, ndim=2, columns=zdim, what="latents")

    def write_latents(self, z: np.ndarray) -> None:
        """Write ``z.npy``."""
        save_npy(self.latents, z)

    def read_refined_poses(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(rotations (N, 3, 3), shifts_px (N, 2))`` of ``poses.npz``, or None without one."""
        if not self.refined_poses.is_file():
            return None
        poses = read_arrays(self.refined_poses, ("rotations", "shifts_px"), what="refined poses")
        n = len(poses["rotations"])
        check_array(self.refined_poses, poses["rotations"], ndim=3, rows=n, columns=3, what="rotations")
        check_array(self.refined_poses, poses["shifts_px"], ndim=2, rows=n, columns=2, what="shifts")
        return poses["rotations"], poses["shifts_px"]

    def write_refined_poses(self, rotations: np.ndarray, shifts_px: np.ndarray) -> None:
        """Write ``poses.npz``: rotations ``R`` (N, 3, 3) and shifts in pixels (N, 2), RELION's sign."""
        save_npz(self.refined_poses, rotations=rotations, shifts_px=shifts_px)

    def write_warmup_globals(self, values: dict) -> None:
        """Write a warm-up's ``globals.json``."""
        save_text(self.warmup_globals, json.dumps(values) + "\n")


def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON file holding one object, or an :class:`InputError` naming it."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a JSON settings file ({exc})") from None
    if not isinstance(values, dict):
        raise InputError(path, "not a settings object")
    return values
