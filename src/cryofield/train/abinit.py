"""Ab initio reconstruction: training interleaved with pose search, and the model reset (cryoDRGN2 "+r").

The schedule, in three stages (the seed's section 5.3.3):

1. ``epochs_search`` epochs: the first on random poses, then a pose search in every
   ``search_every``-th epoch (epochs 1, 1 + every, ...), the epochs between reusing the
   last poses. The search is online: ``search_chunk`` particles at a time are searched
   with the current model and trained on at once, so the model improves during the
   epoch, as with cryoDRGN's search per batch. Searching all particles against one model
   (``search_chunk = 0``) got stuck at wrong, self-consistent poses in our tests, even at
   SNR 10: every image is placed against the same featureless first model. The search's
   band limit grows from ``kmin`` to ``kmax`` over ``kmax_ramp_epochs`` epochs, as the
   model resolves finer detail.
2. ``epochs_fixed`` epochs (0 to skip the reset): the networks and the optimiser start
   afresh and train on the last poses. A decoder trained while the poses were poor
   predicts a constant at high frequency and its gradients there vanish; the reset cures
   it (logged as ``grad_high``, the gradient norm of the decoder's last layer for the
   high-frequency half of the loss).
3. ``epochs_refine`` epochs with a pose search at the first and every ``search_every``-th.

Images are prepared once, uncentred; after each search they are centred by the found
shifts. Checkpoints hold the models, optimiser, poses, epoch and RNG state, so ``resume``
continues exactly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryofield.data import PreparedParticles
from cryofield.imaging import render_volume, shift_phase_at
from cryofield.io import write_map
from cryofield.posesearch import BnbSettings, BranchAndBound, PoseSearch, SearchSettings, render_lattice
from cryofield.so3 import geodesic_distance, random_rotations
from cryofield.train.config import TrainConfig
from cryofield.train.distributed import Runtime, needs_grad_scaler, resolve_device
from cryofield.train.loop import Models, _rng_state, _to, build_models, run_epoch, slice_coords


@dataclass
class AbinitConfig(TrainConfig):
    """A :class:`TrainConfig` plus the schedule and the pose search's settings.

    Units: band limits in cycles per box (Fourier pixels), ``shift_extent_px`` in pixels
    (default ``20 * D / 128``). ``epochs`` is the total, set from the three stages.
    """

    method: str = "hps"  # hierarchical pose search (cryoDRGN2), or "bnb" (branch and bound, cryoDRGN-BNB)
    epochs_search: int = 30
    epochs_fixed: int = 30
    epochs_refine: int = 30
    search_every: int = 5
    kmax_ramp_epochs: int = 25
    base_level: int = 2
    keep: int = 8
    rounds: int = 4
    kmin: float = 12.0
    kmax: float = 48.0
    n_shifts: int = 14
    shift_extent_px: float | None = None
    oversample: float = 2.0
    search_batch: int = 32
    search_chunk: int = 256  # online search: particles per model render (0: all at once, with one model)

    def __post_init__(self):
        self.epochs = self.epochs_search + self.epochs_fixed + self.epochs_refine

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


@dataclass
class Poses:
    """Rotations (N, 3, 3) and shifts (N, 2) in pixels (RELION's sign) of every particle."""

    rotations: torch.Tensor
    shifts_px: torch.Tensor


def centred(raw: PreparedParticles, poses: Poses) -> PreparedParticles:
    """The particles centred by their shifts, with their rotations (uncentred input, unchanged)."""
    images = raw.images * shift_phase_at(raw.coords, poses.shifts_px.to(raw.coords), raw.box)
    return PreparedParticles(images, raw.coords, poses.rotations.float().to(images.device), raw.ctf, raw.scale, raw.box,
                             raw.pixel_size_angstrom)


def high_frequency_gradient(models: Models, batch: PreparedParticles, config: TrainConfig) -> float:
    """Norm of the gradient of the high-frequency loss (``|k| > D/4``) for the decoder's last layer."""
    high = batch.coords.norm(dim=-1) > batch.box / 4
    last = models.decoder.mlp.last
    models.decoder.zero_grad(set_to_none=True)
    predicted = models.decoder(slice_coords(batch.coords[high], batch.rotations, batch.box))
    if batch.ctf is not None:
        predicted = predicted * batch.ctf[:, high]
    (predicted - batch.images[:, high]).abs().pow(2).mean().backward()
    norm = float(torch.cat([p.grad.flatten() for p in last.parameters()]).norm())
    models.decoder.zero_grad(set_to_none=True)
    return norm


def _fresh(config: AbinitConfig, data: PreparedParticles, runtime: Runtime, stage: int):
    """New networks (seeded per stage), their optimiser and scaler."""
    from dataclasses import replace

    models = build_models(replace(config, seed=config.seed + 1000 * (stage - 1)), data.box,
                          data.n_pixels).to(runtime.device)
    optimizer = torch.optim.Adam(models.parameters(), lr=config.lr, fused=runtime.device.type == "cuda")
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=needs_grad_scaler(runtime.device, config.amp))
    return models, optimizer, scaler


def abinit(config: AbinitConfig, data: PreparedParticles, *, runtime: Runtime | None = None,
           resume: bool = False, progress: Callable[[int, int, str], None] | None = None,
           log: Callable[[dict], None] | None = None,
           on_search: Callable[[int, Poses], None] | None = None) -> tuple[Models, Poses]:
    """Reconstruct a volume and every particle's pose from images alone.

    Parameters
    ----------
    config : AbinitConfig
        ``zdim`` must be 0 (homogeneous).
    data : PreparedParticles
        The images uncentred (prepared with zero shifts; the rotations are ignored).
    runtime : Runtime, optional
        Device (default ``config.device``); one process.
    resume : bool
        Continue from ``OUTDIR/checkpoints/last.pt``.
    progress : callable, optional
        ``progress(images_done, epoch, what)`` with ``what`` "search" or "train".
    log : callable, optional
        Receives each epoch's record (also appended to ``OUTDIR/log.jsonl``).
    on_search : callable, optional
        ``on_search(epoch, poses)`` after each search (e.g. to plot the viewing directions).

    Returns
    -------
    (Models, Poses)
        The last stage's networks and the poses they were trained on; ``OUTDIR/maps/`` holds
        the map at the end of each stage.
    """
    if config.zdim:
        raise ValueError("heterogeneous ab initio is not available yet; use zdim 0")
    runtime = runtime or Runtime(resolve_device(config.device))
    outdir = Path(config.outdir)
    (outdir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (outdir / "maps").mkdir(exist_ok=True)
    if not resume:
        (outdir / "log.jsonl").unlink(missing_ok=True)
    device = runtime.device
    n = len(data)
    sampler = torch.Generator().manual_seed(config.seed)
    start = 0
    models, optimizer, scaler = _fresh(config, data, runtime, 1)
    poses = Poses(random_rotations(n, generator=torch.Generator().manual_seed(config.seed), dtype=torch.float32),
                  torch.zeros(n, 2))
    if resume:
        state = torch.load(outdir / "checkpoints/last.pt", weights_only=True, map_location=device)
        start = int(state["epoch"]) + 1
        models, optimizer, scaler = _fresh(config, data, runtime, config.stage(state["epoch"]))
        models.load_state_dict(state["models"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # the checkpoint may come from another device
            group["fused"] = device.type == "cuda"
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        poses = Poses(state["poses"]["rotations"].cpu(), state["poses"]["shifts_px"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())
        sampler.set_state(state["rng"]["sampler"].cpu())
    raw = _to(data, device)
    searcher = BranchAndBound if config.method == "bnb" else PoseSearch
    search = searcher(raw.coords, data.box, config.search_settings, batch_size=config.search_batch)
    probe = torch.from_numpy(np.random.default_rng(config.seed).choice(n, min(n, 64), replace=False))
    posed = centred(raw, poses)
    for epoch in range(start, config.epochs):
        started = time.perf_counter()
        stage = config.stage(epoch)
        record = {"epoch": epoch, "stage": stage}
        if config.resets(epoch):
            models, optimizer, scaler = _fresh(config, data, runtime, stage)
            record["reset"] = True
        trained = None
        if config.searches(epoch):
            kmax = config.search_kmax(epoch, data.box)
            t0 = time.perf_counter()
            new, trained = _search_epoch(config, models, search, raw, poses, kmax, epoch, (optimizer, scaler, sampler),
                                         runtime, progress)
            change = torch.rad2deg(geodesic_distance(new.rotations.double(), poses.rotations.double()))
            record |= {"search_kmax": round(kmax, 2),
                       "search_seconds": round(time.perf_counter() - t0 - (trained or {}).get("seconds", 0), 3),
                       "pose_change_deg_median": round(float(change.median()), 3),
                       "shift_change_px_median": round(float((new.shifts_px - poses.shifts_px).norm(dim=-1)
                                                             .median()), 3)}
            poses = new
            posed = centred(raw, poses)
            if on_search is not None:
                on_search(epoch, poses)
        if trained is None:
            trained = run_epoch(models, posed, config, optimizer, scaler, sampler, runtime, epoch=epoch,
                                progress=None if progress is None else (lambda done, e: progress(done, e, "train")))
        record |= {"mse": trained["mse"], "train_seconds": trained["seconds"],
                   "grad_high": high_frequency_gradient(models, posed.subset(probe.to(posed.images.device)),
                                                        config),
                   "seconds": round(time.perf_counter() - started, 3)}
        record["images_per_second"] = round(n / record["seconds"], 1)
        with open(outdir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if log is not None:
            log(record)
        last_of_stage = epoch + 1 == config.epochs or config.stage(epoch + 1) != stage
        if last_of_stage:
            with torch.no_grad():
                volume = render_volume(models.decoder, data.box, device=device) * data.scale
            write_map(outdir / "maps" / f"stage{stage}.mrc", volume.cpu().numpy(), data.pixel_size_angstrom)
        if (epoch + 1) % config.checkpoint == 0 or last_of_stage:
            state = {"models": models.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                     "scaler": scaler.state_dict(), "rng": _rng_state(sampler),
                     "poses": {"rotations": poses.rotations, "shifts_px": poses.shifts_px}}
            torch.save(state, outdir / "checkpoints" / f"epoch_{epoch:04d}.pt")
            torch.save(state, outdir / "checkpoints" / "last.pt")
    return models, poses


def _search_epoch(config: AbinitConfig, models: Models, search, raw: PreparedParticles, poses: Poses, kmax: float,
                  epoch: int, state: tuple, runtime: Runtime, progress) -> tuple[Poses, dict | None]:
    """Search every particle's pose, at once or online (``search_chunk``).

    Online, the particles go chunk by chunk in random order: each chunk is searched with the
    current model and trained on at once (the returned record), as cryoDRGN interleaves
    search and training; otherwise ``None`` is returned and the epoch trains afterwards.
    """
    n = len(raw)
    chunk = config.search_chunk or n
    order = torch.randperm(n, generator=state[2]) if chunk < n else torch.arange(n)
    rotations, shifts = poses.rotations.clone(), poses.shifts_px.clone()
    sums = {"mse": 0.0, "seconds": 0.0}
    for start in range(0, n, chunk):
        where = order[start:start + chunk]
        here = where.to(raw.images.device)
        lattice = render_lattice(models.decoder, raw.box, kmax, oversample=config.oversample, amp=config.amp,
                                 device=raw.images.device)
        # online, the bar follows the training of each chunk; at once, the search
        count = None if progress is None or chunk < n else _counter(progress, epoch, "search")
        result = search(lattice, raw.images[here], None if raw.ctf is None else raw.ctf[here], kmax=kmax,
                        progress=count)
        rotations[where], shifts[where] = result.rotations.cpu(), result.shifts_px.cpu()
        if chunk < n:
            part = centred(raw.subset(here), Poses(result.rotations, result.shifts_px))
            done = run_epoch(models, part, config, *state, runtime, epoch=epoch, progress=None if progress is None
                             else (lambda d, e, s=start: progress(s + d, e, "search + train")))
            sums["mse"] += done["mse"] * len(where)
            sums["seconds"] += done["seconds"]
    trained = {"mse": sums["mse"] / n, "seconds": round(sums["seconds"], 3)} if chunk < n else None
    return Poses(rotations, shifts), trained


def _counter(progress: Callable[[int, int, str], None], epoch: int, what: str) -> Callable[[int], None]:
    """Turn per-batch counts into running totals for ``progress``."""
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        progress(done, epoch, what)

    return step
