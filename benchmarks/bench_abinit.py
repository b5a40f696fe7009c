"""Ab initio benchmarks: pose search against `cryodrgn abinit_homo_old`, and whole `cryofield abinit` runs.

    python benchmarks/bench_abinit.py search [--n-search 1000] [--pretrain-epochs 10] [--workdir DIR] [--peer PATH]
    python benchmarks/bench_abinit.py abinit [--n 10000] [--data hand|adk] [--workdir DIR] [EXTRA abinit OPTIONS]
    python benchmarks/bench_abinit.py race [--n 10000] [--data adk] [--box 64|128] [--schedules table search]
        [--window SECONDS] [--peer PATH --peer-window SECONDS [--peer-window-factor 3]] [EXTRA abinit OPTIONS]

Data: the seed's "hand" (``../shared/data/maps/hand-vol.mrc`` at 6 A/px, box 64), or with
``--data adk`` (abinit and race) the closed form of adenylate kinase (the package's example
``1ake_closed.pdb``, 2 A/px, box 64, seed 2), or with ``--data motion`` (race) its closed -> open
motion in 50 states (``1ake_closed.pdb`` to ``4ake_open_chainA_aligned.pdb``, likewise); 10,000
images simulated by `cryofield simulate` with CTF, SNR 0.1 and shifts uniform in +-5 px (10 A).
With ``--box 128`` adenylate kinase is imaged at 1 A/px in the same 128 A box, shifts +-10 px.

search (the seed's table 5.5 protocol): each tool trains its own volume (256x3, Gaussian
features) on the true poses for ``--pretrain-epochs`` epochs, then searches the poses of
the first ``--n-search`` images against it with the same grids: 15-degree base grid, K = 8,
M = 4, band 12 -> 32 (D/2), translations +-10 px on a 14 x 14 grid. Prints the search time
and the rotation error (median and mean squared Frobenius norm after global alignment, as
`cryofield pose-error` computes it for both) and the ratio of times. cryoDRGN's search is
timed from its log (one `abinit_homo_old` epoch on the loaded model, the search of the
first epoch).

abinit: `cryofield abinit` (the default schedule, the table one since 2026-12-06, unless the
extra options change it: `--schedule search` for the runs of docs/benchmarks.md's issue 6
section) on the particles, timed, then scored: `pose-error` against the
true poses, and the FSC of the final map (aligned onto the truth by `align-vol`) against
the true map, next to `backproject` with the true poses.

race (issue 25): each schedule of `cryofield abinit` (``--schedules``) runs with a checkpoint
after every epoch (for at most ``--window`` seconds, then stopped by SIGINT); afterwards every
checkpoint is scored (its poses by `pose-error`; its map, once the poses are within the target,
aligned onto the truth and scored by FSC AUC), and the wall time from the command's start to
each epoch's end read from its `train.log`. A run of one volume reconstructs its map from its
poses at each checkpoint (``maps/reconstruction_epochNNN.mrc``, within the epoch's time): that
map is the one scored, its network's map beside it. The target: median rotation error below 0.03 and
FSC AUC within 0.02 of `backproject` with the true poses. A checkpoint's map is read as every
reader of a run reads it (from the running average of the weights, ``--ema-decay``); the last
step's weights are scored beside it, which is what the run would give without the average (the
average does not change the training). With the peer (``--peer``),
`cryodrgn abinit` (its defaults, ``--zdim 0``, with a checkpoint every epoch as ours) runs for at
most ``--peer-window`` seconds and its checkpoints (``pose.N.pkl``, ``reconstruct.N.mrc``) are
scored the same way, timed by their files' modification times.

The motion (``--data motion``; both tools get ``--zdim 8`` unless ``--zdim`` says otherwise) is
scored at three states, the closed end, the middle and the open end (0, 24, 49): each
checkpoint's map at the mean latent of that state's images (ours: `eval-images` then `eval-vol`
on the checkpoint; the peer's: its ``z.N.pkl`` and `cryodrgn eval_vol` of ``weights.N.pkl``),
aligned onto that state's true map; the FSC AUC is the mean over the three, and the reference
the mean AUC of `backproject` with the true poses of each state's own images (200 of 10,000).
Every scored checkpoint also gets |Spearman| of its latents' first principal component with
the true coordinate.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
CRYOFIELD = os.environ.get("CRYOFIELD", str(BIN / "cryofield"))
HAND = Path(os.environ.get("HAND_MAP", Path(__file__).resolve().parents[2] / "shared/data/maps/hand-vol.mrc"))
ARCH = ["--dec-dim", "256", "--dec-layers", "3", "--pe-type", "gaussian", "--domain", "fourier"]


def run(cmd: list[str], log: Path | None = None) -> float:
    """Run a command (output to ``log``), raising with its tail when it fails; returns wall seconds."""
    started = time.perf_counter()
    with open(log or os.devnull, "w") as fh:
        result = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        tail = Path(log).read_text()[-3000:] if log else ""
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{tail}")
    return time.perf_counter() - started


def simulate(workdir: Path, n: int, kind: str = "hand", box: int = 64) -> Path:
    """The dataset (``particles.star``, ``truth.npz``, ``truth_vols/``), simulated once.

    Adenylate kinase (``adk``, ``motion``) is imaged in a 128 A box: ``box`` pixels of ``128 / box`` A
    (64 px at 2 A/px, 128 px at 1 A/px); the hand has its map's 64 px.
    """
    if kind == "hand" and box != 64:
        raise ValueError("the hand's map is 64 px; --box applies to --data adk and motion")
    data = workdir / (f"{kind}_{n}" if box == 64 else f"{kind}_{n}_{box}px")
    if not (data / "particles.star").is_file():
        if kind == "hand":
            source = ["--volume", str(HAND), "--apix", "6", "--seed", "0"]
        else:
            from cryofield.examples import ADK_CLOSED, ADK_OPEN, example_path

            source = ["--pdb", str(example_path(ADK_CLOSED))]
            if kind == "motion":
                source += ["--pdb", str(example_path(ADK_OPEN)), "--states", "50"]
            source += ["--box", str(box), "--apix", f"{128 / box:g}", "--seed", "2"]
        shift_px = 5 * box // 64  # 10 A either way
        run([CRYOFIELD, "simulate", *source, "-n", str(n), "--snr", "0.1", "--shift-px", str(shift_px), "-o",
             str(data)])
    return data


def pose_error(predicted: Path, truth: Path, *extra: str) -> dict:
    """`cryofield pose-error --json` of two pose files."""
    out = subprocess.run([CRYOFIELD, "pose-error", str(predicted), str(truth), "--json", *extra],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def search(args) -> None:
    import torch

    work = Path(args.workdir)
    data = simulate(work, args.n)
    star = data / "particles.star"
    first = data / f"first_{args.n_search}.star"  # the searched images, for both tools (next to their stack)
    if not first.is_file():
        np.savetxt(work / "first.txt", np.arange(args.n_search), fmt="%d")
        run([CRYOFIELD, "select", str(star), "--ind", str(work / "first.txt"), "-o", str(first)])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # cryofield: pretrain on the true poses, then search the first images with the pretrained decoder
    ours = work / "cryofield"
    if not (ours / "pretrained/checkpoints/last.pt").is_file():
        run([CRYOFIELD, "train-nn", str(star), "-o", str(ours / "pretrained"), "-n", str(args.pretrain_epochs), *ARCH],
            work / "cryofield_pretrain.log")
    from cryofield.cli._common import load_table
    from cryofield.data import prepare_particles
    from cryofield.posesearch import PoseSearch, SearchSettings, render_lattice
    from cryofield.train import TrainConfig, load_models

    table = load_table(argparse.Namespace(input=first, datadir=None, poses=None, ctf=None, apix=None))
    config = TrainConfig.load(ours / "pretrained/config.json")
    particles = prepare_particles(table, scale=config.data_scale, rotations=np.zeros((table.n, 3, 3)),
                                  shifts_px=np.zeros((table.n, 2)))
    _, models = load_models(ours / "pretrained", particles.box, particles.n_pixels, device)
    images, ctf, coords = (t.to(device) for t in (particles.images, particles.ctf, particles.coords))
    settings = SearchSettings(kmax=32, shift_extent_px=10)
    search = PoseSearch(coords, particles.box, settings, amp=not args.no_amp)

    def render():
        return render_lattice(models.decoder, particles.box, 32, oversample=args.oversample, amp=True, device=device)

    search(render(), images[:64], ctf[:64])  # warm
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = search(render(), images, ctf)
    rotations, shifts = result.rotations.double().cpu().numpy(), result.shifts_px.double().cpu().numpy()
    t_ours = time.perf_counter() - started
    poses = work / "cryofield_search.star"
    _write_star(table, rotations, shifts, poses)
    e_ours = pose_error(poses, first)
    print(f"{device.type}: cryofield search of {args.n_search} images: {t_ours:.2f} s "
          f"({1000 * t_ours / args.n_search:.2f} ms/image), rotation error median {e_ours['rot_median']:.4f} "
          f"mean {e_ours['rot_mean']:.4f}, shift error^2 median {e_ours['trans_median']:.3f} px^2")
    peer = shutil.which(args.peer) or (args.peer if Path(args.peer).exists() else None)
    if not peer:
        print("cryodrgn not found: cryofield alone")
        return
    theirs = work / "cryodrgn"
    theirs.mkdir(parents=True, exist_ok=True)
    for what, source in (("pose", star), ("ctf", star), ("ctf_first", first)):
        if not (theirs / f"{what}.pkl").is_file():
            run([peer, f"parse_{what.split('_')[0]}_star", str(source), "-o", str(theirs / f"{what}.pkl")])
    epochs = max(2, args.pretrain_epochs)  # its search then runs in epoch E + 1 with --ps-freq E
    if not (theirs / "pretrained" / "weights.pkl").is_file():
        run([peer, "train_nn", str(star), "--poses", str(theirs / "pose.pkl"), "--ctf", str(theirs / "ctf.pkl"),
             "-o", str(theirs / "pretrained"), "-n", str(epochs), "--layers", "3", "--dim", "256",
             "--pe-type", "gaussian", "--domain", "fourier"], theirs / "pretrain.log")
    log = theirs / "search.log"
    shutil.rmtree(theirs / "search", ignore_errors=True)
    t_whole = run([peer, "abinit_homo_old", str(first), "--ctf", str(theirs / "ctf_first.pkl"),
                   "-o", str(theirs / "search"), "--load", str(theirs / "pretrained" / "weights.pkl"),
                   "-n", str(epochs + 1), "--ps-freq", str(epochs), "--pretrain", "0",
                   "--l-start", "12", "--l-end", "32", "--l-ramp-epochs", "0", "--niter", "4", "--nkeptposes", "8",
                   "--base-healpy", "2", "--t-extent", "10", "--t-ngrid", "14", "--layers", "3", "--dim", "256",
                   "--pe-type", "gaussian", "--domain", "fourier"], log)
    found = re.findall(r"Epoch: \d+ Average loss = \S+; Finished in (\d+):(\d+):([\d.]+)", log.read_text())
    t_peer = sum(float(x) * f for x, f in zip(found[-1], (3600, 60, 1))) if found else t_whole
    e_peer = pose_error(theirs / "search" / f"pose.{epochs + 1}.pkl", first, "--box", str(particles.box))
    print(f"{device.type}: cryodrgn abinit_homo_old search epoch: {t_peer:.1f} s "
          f"({'its log' if found else 'whole command'}; {1000 * t_peer / args.n_search:.1f} ms/image), "
          f"rotation error median {e_peer['rot_median']:.4f} mean {e_peer['rot_mean']:.4f}, "
          f"shift error^2 median {e_peer['trans_median']:.3f} px^2")
    print(f"speed ratio cryofield/cryodrgn: {t_peer / t_ours:.1f}x")


def _write_star(table, rotations: np.ndarray, shifts_px: np.ndarray, path: Path) -> None:
    from dataclasses import replace

    from cryofield.io.export import write_particles

    posed = replace(table.without_source_rows(), rotations_or_none=np.asarray(rotations, float),
                    shifts_angstrom=np.asarray(shifts_px, float) * table.pixel_size_angstrom[:, None])
    write_particles(posed, path)


def abinit(args, extra: list[str]) -> None:
    work = Path(args.workdir)
    data = simulate(work, args.n, args.data)
    out = work / f"abinit_{args.data}_{args.n}"
    seconds = run([CRYOFIELD, "abinit", str(data / "particles.star"), "-o", str(out), *extra], out.with_suffix(".log"))
    print(f"cryofield abinit on {args.n} images: {seconds:.0f} s ({seconds / 3600:.2f} h)")
    error = pose_error(out / "poses.star", data / "particles.star")
    print(f"pose error: rotation median {error['rot_median']:.4f} mean {error['rot_mean']:.4f}, hand {error['hand']}")
    truth_map = sorted((data / "truth_vols").glob("*.mrc"))[0]
    aligned = out / "volume_aligned.mrc"
    run([CRYOFIELD, "align-vol", str(truth_map), str(out / "volume.mrc"), "-o", str(aligned)])
    run([CRYOFIELD, "backproject", str(data / "particles.star"), "-o", str(data / "backproject")])
    for name, path in (("abinit (aligned onto the truth)", aligned),
                       ("backproject, true poses", data / "backproject" / "volume.mrc")):
        text = path.with_suffix(".fsc.txt")
        fsc = subprocess.run([CRYOFIELD, "fsc", str(path), str(truth_map), "-o", str(text)],
                             capture_output=True, text=True, check=True).stdout.strip()
        curve = np.loadtxt(text)
        print(f"{name}: {fsc}; FSC AUC to Nyquist {np.trapezoid(curve[:, 1], curve[:, 0]) / curve[-1, 0]:.3f}")


TARGET_ROTATION, TARGET_AUC_GAP = 0.03, 0.02


def fsc_auc(volume: Path, truth_map: Path, align: bool = True) -> float:
    """FSC AUC to Nyquist of ``volume`` against the truth (aligned onto it first by `align-vol`)."""
    if align:
        aligned = volume.with_name(volume.stem + "_aligned.mrc")
        run([CRYOFIELD, "align-vol", str(truth_map), str(volume), "-o", str(aligned)])
        volume = aligned
    text = volume.with_suffix(".fsc.txt")
    subprocess.run([CRYOFIELD, "fsc", str(volume), str(truth_map), "-o", str(text)], capture_output=True, check=True)
    curve = np.loadtxt(text)
    return float(np.trapezoid(curve[:, 1], curve[:, 0]) / curve[-1, 0])


def _epoch_times(train_log: Path, started: float) -> dict[int, float]:
    """Seconds from ``started`` (a Unix time) to the end of each epoch (0-based), from `train.log`'s stamps."""
    from datetime import datetime

    times = {}
    for line in train_log.read_text().splitlines():
        found = re.match(r"(\S+)\s+epoch (\d+):", line)
        if found:
            times[int(found[2]) - 1] = datetime.fromisoformat(found[1]).timestamp() - started
    return times


def _checkpoint_poses(state: dict):
    """A checkpoint's poses: the pose table's in its stage, else the last search's; (N, 3, 3), (N, 2) px."""
    from cryofield.so3 import s2s2_to_matrix

    rotations, shifts = state["poses"]["rotations"], state["poses"]["shifts_px"]
    table = state["models"].get("poses")
    if table and "rotation.weight" in table:
        rotations, shifts = s2s2_to_matrix(table["rotation.weight"]), shifts + table["shift.weight"]
    return rotations.double().numpy(), shifts.double().numpy()


MOTION_STATES = (0, 24, 49)  # the closed end, the middle and the open end of the 50-state motion


class Truth:
    """What the race scores against: the true map (or, for the motion, three states' maps and images)."""

    def __init__(self, data: Path):
        self.data = data
        truth = np.load(data / "truth.npz")
        self.states, self.coordinates = truth["state"], truth["coordinates"]
        self.motion = len(np.unique(self.states)) > 1
        maps = sorted((data / "truth_vols").glob("*.mrc"))
        self.maps = [maps[s] for s in MOTION_STATES] if self.motion else maps[:1]

    def reference_auc(self) -> float:
        """FSC AUC of `backproject` with the true poses: of all images, or the mean of each state's own."""
        aucs = []
        for state, truth_map in zip(MOTION_STATES, self.maps):
            out = self.data / (f"backproject_state{state:02d}" if self.motion else "backproject")
            if not (out / "volume.mrc").is_file():
                cmd = [CRYOFIELD, "backproject", str(self.data / "particles.star"), "-o", str(out)]
                if self.motion:
                    ind = self.data / f"state{state:02d}.ind.txt"
                    np.savetxt(ind, np.flatnonzero(self.states == state), fmt="%d")
                    cmd += ["--ind", str(ind)]
                run(cmd)
            aucs.append(fsc_auc(out / "volume.mrc", truth_map, align=False))
        return float(np.mean(aucs))

    def maps_auc(self, maps: list[Path]) -> float:
        """Mean FSC AUC of ``maps`` (one per scored state, in order), each aligned onto its truth."""
        return float(np.mean([fsc_auc(volume, truth_map) for volume, truth_map in zip(maps, self.maps)]))

    def state_latents(self, z: np.ndarray) -> np.ndarray:
        """The mean latent of each scored state's images, (3, zdim)."""
        return np.stack([z[self.states == state].mean(0) for state in MOTION_STATES])

    def spearman(self, z: np.ndarray) -> float:
        """|Spearman| of the latents' first principal component with the true coordinate."""
        from cryofield.metrics import latent_pc_spearman

        return float(latent_pc_spearman(z, self.coordinates, 1)[0, 0])


def score_run(out: Path, data: Path, started: float, target_auc: float) -> list[dict]:
    """Every epoch's checkpoint of a `cryofield abinit` run: time, rotation error; maps near the target and last."""
    import torch

    from cryofield.cli._common import load_table

    table = load_table(argparse.Namespace(input=data / "particles.star", datadir=None, poses=None, ctf=None,
                                          apix=None))
    truth = Truth(data)
    times = _epoch_times(out / "train.log", started)
    rows = []
    for path in sorted((out / "checkpoints").glob("epoch_*.pt")):
        epoch = int(path.stem.split("_")[1])
        state = torch.load(path, weights_only=True, map_location="cpu")
        star = out / "scored" / f"poses_{epoch:04d}.star"
        star.parent.mkdir(exist_ok=True)
        _write_star(table, *_checkpoint_poses(state), star)
        row = {"epoch": epoch, "seconds": times.get(epoch), "rot_median": pose_error(star, data / "particles.star")
               ["rot_median"]}
        if row["rot_median"] < TARGET_ROTATION and not any(r.get("auc", 0) >= target_auc for r in rows):
            row.update(_run_maps(out, path, epoch, truth))
        rows.append(row)
    if rows and "auc" not in rows[-1]:  # the final map's too
        rows[-1].update(_run_maps(out, path, rows[-1]["epoch"], truth))
    return rows


def _run_maps(out: Path, checkpoint: Path, epoch: int, truth: Truth) -> dict:
    """The scores of a run's map after ``epoch``: one volume's reconstruction from its poses, where the run made one.

    `abinit` of one volume reconstructs its map from the poses at each checkpoint (inside the
    epoch's time); the network's map is then scored beside it (``auc_network``). Otherwise the
    checkpoint's maps (:func:`_checkpoint_maps`).
    """
    reconstruction = out / "maps" / f"reconstruction_epoch{epoch + 1:03d}.mrc"
    if truth.motion or not reconstruction.is_file():
        return _checkpoint_maps(out, checkpoint, truth)
    copies = checkpoint_copies(out, checkpoint)
    return {"auc": truth.maps_auc([reconstruction]),
            "auc_network": _copy_maps(copies["averaged"], truth)["auc"]}


def _checkpoint_maps(out: Path, checkpoint: Path, truth: Truth) -> dict:
    """FSC AUC (and for the motion |Spearman|) of one checkpoint, from a copy of the run holding only it.

    The maps come from the running average of the weights where the run kept one (what every
    reader of a run loads); the last step's weights are then scored too (``auc_live``,
    ``spearman_live``), from a copy without the average.
    """
    copies = checkpoint_copies(out, checkpoint)
    scores = _copy_maps(copies["averaged"], truth)
    if "last step" in copies:
        scores |= {f"{key}_live": value for key, value in _copy_maps(copies["last step"], truth).items()}
    return scores


def checkpoint_copies(out: Path, checkpoint: Path) -> dict[str, Path]:
    """Copies of the run ``out`` holding only ``checkpoint``, by how they read its networks.

    ``"averaged"``: the checkpoint as saved (read as every reader of a run reads it: from the
    running average of the weights where it kept one); and where it kept one, ``"last step"``:
    the checkpoint without it (the last step's weights, what the run gives with ``--ema-decay 0``).
    """
    import torch

    state = torch.load(checkpoint, weights_only=True, map_location="cpu")
    variants = {"averaged": state}
    if "averaged" in state:
        variants["last step"] = {key: value for key, value in state.items() if key != "averaged"}
    copies = {}
    for name, variant in variants.items():
        copy = out / "scored" / (checkpoint.stem + ("_live" if name == "last step" else ""))
        (copy / "checkpoints").mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "config.json", copy / "config.json")
        torch.save(variant, copy / "checkpoints" / "last.pt")
        copies[name] = copy
    return copies


def _copy_maps(copy: Path, truth: Truth) -> dict:
    """Score the only checkpoint of ``copy``, a copy of a run (:func:`checkpoint_copies`)."""
    if not truth.motion:
        run([CRYOFIELD, "eval-vol", str(copy), "-o", str(copy / "map")])
        return {"auc": truth.maps_auc([copy / "map" / "vol_000.mrc"])}
    run([CRYOFIELD, "eval-images", str(copy), "-o", str(copy / "z.npy")])
    z = np.load(copy / "z.npy")
    np.savetxt(copy / "z_states.txt", truth.state_latents(z))
    run([CRYOFIELD, "eval-vol", str(copy), "--z-file", str(copy / "z_states.txt"), "-o", str(copy / "map")])
    return {"auc": truth.maps_auc(sorted((copy / "map").glob("vol_*.mrc"))), "spearman": truth.spearman(z)}


def score_peer(out: Path, data: Path, started: float, target_auc: float, box: int, peer: str) -> list[dict]:
    """The peer's checkpoints (``pose.N.pkl``, its maps), timed by when each pose file was written."""
    from cryofield.io import load_legacy_pickle

    truth = Truth(data)
    poses = sorted(out.glob("pose.*.pkl"), key=_epoch_of)
    rows = []
    for path in poses:
        epoch = _epoch_of(path)
        row = {"epoch": epoch, "seconds": path.stat().st_mtime - started,
               "rot_median": pose_error(path, data / "particles.star", "--box", str(box))["rot_median"]}
        z_file = out / f"z.{epoch}.pkl"
        if truth.motion and z_file.is_file():
            row["spearman"] = truth.spearman(np.asarray(load_legacy_pickle(z_file)))
        reached = any(r.get("auc", 0) >= target_auc for r in rows)
        if (row["rot_median"] < TARGET_ROTATION and not reached) or path == poses[-1]:
            row.update(_peer_maps(out, epoch, truth, peer, box))
        rows.append(row)
    return rows


def _epoch_of(path: Path) -> int:
    """The epoch of a peer checkpoint file (``pose.N.pkl``, ``weights.N.pkl``)."""
    return int(path.stem.split(".")[1])


def _peer_maps(out: Path, epoch: int, truth: Truth, peer: str, box: int) -> dict:
    """FSC AUC of the peer's map(s) at one epoch: ``reconstruct.N.mrc``, or `eval_vol` at the states' latents."""
    if not truth.motion:
        volume = out / f"reconstruct.{epoch}.mrc"
        return {"auc": truth.maps_auc([volume])} if volume.is_file() else {}
    from cryofield.io import load_legacy_pickle

    weights, z_file = out / f"weights.{epoch}.pkl", out / f"z.{epoch}.pkl"
    if not (weights.is_file() and z_file.is_file()):
        return {}
    maps = out / "scored" / f"epoch_{epoch}"
    maps.mkdir(parents=True, exist_ok=True)
    np.savetxt(maps / "z_states.txt", truth.state_latents(np.asarray(load_legacy_pickle(z_file))))
    run([peer, "eval_vol", str(weights), "-c", str(out / "config.yaml"), "--zfile", str(maps / "z_states.txt"),
         "-o", str(maps), "--Apix", "2"])
    return {"auc": truth.maps_auc([maps / f"vol_{i + 1:03d}.mrc" for i in range(len(MOTION_STATES))])}


def _report(name: str, rows: list[dict], target_auc: float) -> float | None:
    """Print a run's scored epochs; the seconds at which it reached the target (None: it did not)."""
    print(f"{name}:")
    for row in rows:
        auc = f", FSC AUC {row['auc']:.3f}" if "auc" in row else ""
        auc += f", |Spearman| {row['spearman']:.3f}" if "spearman" in row else ""
        if "auc_network" in row:  # one volume's map came from the poses; the network's beside it
            auc += f" (the network's map: {row['auc_network']:.3f})"
        if "auc_live" in row:  # the run's last weights, without the average
            auc += f" (last step's weights: {row['auc_live']:.3f}" + (
                f", {row['spearman_live']:.3f})" if "spearman_live" in row else ")")
        seconds = "?" if row["seconds"] is None else f"{row['seconds']:.0f} s"
        print(f"  epoch {row['epoch'] + 1}: {seconds}, rotation error median {row['rot_median']:.4f}{auc}")
    reached = next((r for r in rows if r["rot_median"] < TARGET_ROTATION and r.get("auc", 0) >= target_auc), None)
    when = "no" if reached is None else f"epoch {reached['epoch'] + 1}, {reached['seconds']:.0f} s"
    print(f"  target reached: {when}")
    return None if reached is None else reached["seconds"]


def _windowed(cmd: list[str], log: Path, window: float) -> str:
    """Run ``cmd`` for at most ``window`` seconds, then SIGINT it (it checkpoints and stops); what happened."""
    import signal

    started = time.perf_counter()
    with open(log, "w") as fh:
        process = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        try:
            code = process.wait(timeout=window)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            process.wait()
            return f"stopped at the window's end, {window:.0f} s"
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{log.read_text()[-3000:]}")
    return f"{time.perf_counter() - started:.0f} s in all"


def race(args, extra: list[str]) -> None:
    work = Path(args.workdir)
    data = simulate(work, args.n, args.data, args.box)
    star = data / "particles.star"
    truth = Truth(data)
    zdim = args.zdim if args.zdim is not None else (8 if truth.motion else 0)
    reference = truth.reference_auc()
    target_auc = reference - TARGET_AUC_GAP
    what = "each scored state's own images (mean)" if truth.motion else "all images"
    print(f"backproject with the true poses of {what}: FSC AUC {reference:.3f}; target: median rotation error < "
          f"{TARGET_ROTATION}, FSC AUC >= {target_auc:.3f}")
    reached = []  # when each of our schedules reached the target
    for schedule in args.schedules:
        out = work / f"race_{schedule}_{data.name}"
        shutil.rmtree(out, ignore_errors=True)
        started = time.time()
        cmd = [CRYOFIELD, "abinit", str(star), "-o", str(out), "--schedule", schedule, "--checkpoint", "1",
               "--zdim", str(zdim), *extra]
        if args.window:
            print(f"cryofield abinit --schedule {schedule}: {_windowed(cmd, out.with_suffix('.log'), args.window)}")
        else:
            seconds = run(cmd, out.with_suffix(".log"))
            print(f"cryofield abinit --schedule {schedule}: {seconds:.0f} s in all")
        reached.append(_report(f"cryofield --schedule {schedule}", score_run(out, data, started, target_auc),
                               target_auc))
    peer = shutil.which(args.peer) or (args.peer if Path(args.peer).exists() else None)
    if not peer or not args.peer_window:
        print("cryodrgn abinit not run (no --peer or --peer-window 0)")
        return
    peer_window = args.peer_window
    if args.peer_window_factor and reached and reached[0] is not None:  # enough to see the ratio asked for
        peer_window = min(peer_window, args.peer_window_factor * reached[0] + 30)
        print(f"cryodrgn abinit's window: {peer_window:.0f} s ({args.peer_window_factor:g}x cryofield's "
              f"{reached[0]:.0f} s to the target, and 30 s)")
    theirs = work / f"race_cryodrgn_{data.name}"
    theirs.mkdir(parents=True, exist_ok=True)
    if not (theirs / "ctf.pkl").is_file():
        run([peer, "parse_ctf_star", str(star), "-o", str(theirs / "ctf.pkl")])
    shutil.rmtree(theirs / "run", ignore_errors=True)
    started = time.time()
    with open(theirs / "run.out", "w") as fh:
        process = subprocess.Popen([peer, "abinit", str(star), "--datadir", str(data), "--ctf", str(theirs / "ctf.pkl"),
                                    "--zdim", str(zdim), "--checkpoint", "1",  # a checkpoint each epoch, as ours
                                    "-o", str(theirs / "run"), "--seed", "0", "--no-analysis"],
                                   stdout=fh, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=peer_window)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            print(f"cryodrgn abinit stopped at the window's end, {peer_window:.0f} s")
    from cryofield.io import read_map

    box = read_map(truth.maps[0])[0].shape[0]
    _report("cryodrgn abinit", score_peer(theirs / "run", data, started, target_auc, box, peer), target_auc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["search", "abinit", "race"])
    parser.add_argument("--schedules", nargs="*", default=["table", "search"],
                        help="race: cryofield's schedules (none: the peer alone)")
    parser.add_argument("--peer-window", type=float, default=0, help="race: seconds cryodrgn abinit may run")
    parser.add_argument("--peer-window-factor", type=float, default=0,
                        help="race: at most this many times the first cryofield schedule's time to the target (and "
                             "30 s), when it reached it: enough to show that ratio (0: --peer-window alone)")
    parser.add_argument("--window", type=float, default=0, help="race: seconds each cryofield run may take (0: all)")
    parser.add_argument("--n", type=int, default=10000, help="particles simulated")
    parser.add_argument("--data", choices=["hand", "adk", "motion"], default="hand",
                        help="abinit, race: the structure imaged (motion: race only)")
    parser.add_argument("--box", type=int, default=64,
                        help="race: adenylate kinase's box in pixels, in 128 A (default 64 at 2 A/px; 128 at 1 A/px)")
    parser.add_argument("--zdim", type=int, help="race: latent dimension, both tools (default 8 for motion, else 0)")
    parser.add_argument("--n-search", type=int, default=1000)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--no-amp", action="store_true", help="search: the base step's products in fp32, not bf16")
    parser.add_argument("--oversample", type=float, default=2.0, help="search: lattice points per Fourier pixel")
    parser.add_argument("--workdir", default="/tmp/cryofield-bench-abinit")
    parser.add_argument("--peer", default=os.environ.get("CRYODRGN", "/tmp/peer/bin/cryodrgn"))
    args, extra = parser.parse_known_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if args.what == "search":
        search(args)
    elif args.what == "race":
        race(args, extra)
    else:
        abinit(args, extra)


if __name__ == "__main__":
    main()
