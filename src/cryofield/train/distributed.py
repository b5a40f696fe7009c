"""Devices, mixed precision and multi-process training (``torchrun``)."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: its device, its rank among ``world_size`` processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes the outputs (rank 0)."""
        return self.rank == 0

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the processes (itself in a single process)."""
        if self.world_size > 1:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def merge_rows(self, values: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """Rows that each process changed, gathered into every process.

        Parameters
        ----------
        values : Tensor, shape (M, ...)
            This process's rows (on any device).
        own : Tensor, shape (M,), bool
            The rows this process changed; no row may be changed by two processes.

        Returns
        -------
        Tensor, shape (M, ...)
            Each row as the process that changed it has it, exactly (zeros are added to it);
            rows no process changed as they are here (the same in every process).
        """
        if self.world_size == 1:
            return values
        mask = own.to(values.device).reshape(-1, *[1] * (values.dim() - 1))
        kept = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
        owners = own.to(self.device, torch.int32)
        kept = kept.to(self.device)  # NCCL reduces on the GPU
        dist.all_reduce(kept)
        dist.all_reduce(owners)
        changed = (owners > 0).to(values.device).reshape(mask.shape)
        return torch.where(changed, kept.to(values.device), values)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; any other name as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def init_runtime(device: str = "auto") -> Runtime:
    """The calling process's :class:`Runtime`, joining the process group when launched by ``torchrun``.

    ``torchrun --nproc-per-node K`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; the
    group uses NCCL on GPUs and gloo on CPUs, and each process takes GPU ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    resolved = resolve_device(device)
    if world_size <= 1:
        return Runtime(resolved)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return Runtime(resolved, dist.get_rank(), dist.get_world_size())


def release_runtime(runtime: Runtime) -> None:
    """Leave the process group that :func:`init_runtime` joined, once every rank is done (nothing in one process).

    Every rank waits at a barrier (the others wait there while rank 0 writes the outputs), then the
    group is destroyed. Left to the interpreter's exit, a rank that finished first tore its gloo
    connections down under the others and aborted ("terminate called without an active exception"):
    4 of 16 launches of a 2-rank `train-nn` on 2 cores, none of 20 with the barrier and the destroy.
    """
    if runtime.world_size > 1 and dist.is_initialized():
        dist.barrier()  # no rank tears its connections down while another still uses them
        dist.destroy_process_group()


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """Mixed precision for the networks: bf16 on CPUs and on GPUs that have it, fp16 on older GPUs.

    While a CUDA graph is being captured the cast weights are not cached (a graph must not
    keep tensors that live outside it).
    """
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    return torch.autocast(device.type, dtype=amp_dtype(device), enabled=enabled, cache_enabled=not capturing)


def amp_dtype(device: torch.device) -> torch.dtype:
    """The reduced precision used on ``device``."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def needs_grad_scaler(device: torch.device, amp: bool) -> bool:
    """Whether training must scale its loss (fp16 only: bf16 has fp32's exponent range)."""
    return amp and amp_dtype(device) == torch.float16
