"""Each optimiser step of a full batch replayed as one CUDA graph."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from cryofield.data import PreparedParticles
from cryofield.train.config import TrainConfig
from cryofield.train.distributed import Runtime
from cryofield.train.models import Models


class GraphedStep:
    """Optimiser steps of full batches, each replayed as one CUDA graph.

    On a GPU a step of these small networks is bound by launching its few hundred kernels
    from Python, not by arithmetic. After ``warmup`` ordinary steps (on a side stream, as
    capture requires), the whole step of a full batch (forward, backward and Adam) is
    captured once; each later full batch is copied into the graph's input tensors and the
    graph replayed, one launch per step. Shorter batches (an epoch's last, or with
    ``--lazy`` a buffer's) run as ordinary steps on the same parameters. The optimiser must
    be made with ``capturable=True``; see :func:`can_graph` for the runs that qualify. If
    capture fails, a warning says so and every step runs ordinarily.

    Parameters
    ----------
    optimizer : Optimizer
        The networks' optimiser (its gradients become the graph's buffers).
    batch_size : int
        The size of the batches replayed.
    device : torch.device
        The GPU the networks are on (streams and graph are made there, whichever GPU is current).
    warmup : int
        Ordinary steps before the capture.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, batch_size: int, device: torch.device, warmup: int = 3):
        if not all(group["capturable"] for group in optimizer.param_groups):
            raise ValueError("a CUDA graph needs an optimiser made with capturable=True")
        self.optimizer, self.batch_size, self.device, self.warmup = optimizer, batch_size, device, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self._steps = 0

    def __call__(self, step: Callable[[PreparedParticles], torch.Tensor], batch: PreparedParticles) -> torch.Tensor:
        """Run ``step(batch)`` (returning a (3,) tensor), through the graph where possible."""
        if self.failed or len(batch) != self.batch_size:
            return step(batch)
        if self.graph is None:
            self._steps += 1
            with torch.cuda.device(self.device):
                if self._steps <= self.warmup:
                    return self._on_side_stream(step, batch)
                try:
                    self._capture(step, batch)
                except RuntimeError as error:
                    warnings.warn(f"training without CUDA graphs (capture failed: {error})", stacklevel=2)
                    self.failed, self.graph = True, None
                    torch.cuda.synchronize()
                    return step(batch)
        _copy_into(self.inputs, batch)
        self.graph.replay()
        return self.outputs

    @staticmethod
    def _on_side_stream(step: Callable[[PreparedParticles], torch.Tensor], batch: PreparedParticles) -> torch.Tensor:
        side, main = torch.cuda.Stream(), torch.cuda.current_stream()
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out = step(batch)
        main.wait_stream(side)
        return out

    def _capture(self, step: Callable[[PreparedParticles], torch.Tensor], batch: PreparedParticles) -> None:
        self.inputs = _static_copy(batch)
        self.optimizer.zero_grad(set_to_none=True)  # the backward then allocates the gradients inside the graph
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.outputs = step(self.inputs)
        # an ordinary step sets the gradients to None; these references keep the graph's own alive
        self._gradients = [p.grad for group in self.optimizer.param_groups for p in group["params"]]
        self.graph = graph


def can_graph(config: TrainConfig, runtime: Runtime, models: Models, scaler: torch.amp.GradScaler) -> bool:
    """Whether training replays its steps as CUDA graphs (:class:`GraphedStep`).

    On a GPU, in one process, unless turned off (``config.cuda_graph``) or compiled, for
    networks without per-particle pose parameters or a pose encoder, without a gradient
    scaler (fp16 checks its gradients on the host).

    Parameters
    ----------
    config : TrainConfig
    runtime : Runtime
    models : Models
    scaler : GradScaler

    Returns
    -------
    bool
    """
    return (config.cuda_graph and runtime.device.type == "cuda" and runtime.world_size == 1
            and not config.compile_mode and models.poses is None and models.pose_encoder is None
            and not scaler.is_enabled())


def _static_copy(batch: PreparedParticles) -> PreparedParticles:
    """A copy of a batch's per-image tensors (the pixel coordinates, the same for every batch, shared)."""
    def clone(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.clone()

    return PreparedParticles(clone(batch.images), batch.coords, clone(batch.rotations), clone(batch.ctf),
                             batch.scale, batch.box, batch.pixel_size_angstrom,
                             None if batch.tilted is None else _static_copy(batch.tilted), clone(batch.tilt_mask))


def _copy_into(static: PreparedParticles, batch: PreparedParticles) -> None:
    for target, source in ((static.images, batch.images), (static.rotations, batch.rotations),
                           (static.ctf, batch.ctf), (static.tilt_mask, batch.tilt_mask)):
        if target is not None:
            target.copy_(source, non_blocking=True)
    if static.tilted is not None:
        _copy_into(static.tilted, batch.tilted)
