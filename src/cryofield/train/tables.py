"""Per-particle tables (pose tables, latent tables, their optimiser's moments) in files mapped into memory.

A run's per-particle tables grow with its particles: cryoDRGN-AI's pose table is 8 numbers a
particle and a latent table ``zdim`` (twice that with log-variances), and ``SparseAdam`` keeps two
moments of each, so 10^6 particles with a variational 8-D latent table hold about 290 MB, 10^7
nearly 3 GB. A lazily read run keeps its images out of memory; :class:`MappedTables` keeps these
tables out of it too: each tensor lives in a file of the temporary folder (``TMPDIR``) mapped
with ``MAP_SHARED``, so the kernel keeps the pages a step touches in its page cache and writes
the rest back to the disk when memory runs short, instead of the process holding them.

The files are unlinked as soon as they are mapped: nothing is left behind by a run that is
killed, and a checkpoint (which copies the tables out) remains the only record of them.
"""

from __future__ import annotations

import math
import os
import weakref

import torch
from torch import nn

from cryofield.io.mapped import scratch_file

#: the moments ``torch.optim.SparseAdam`` keeps per parameter, as large as the parameter
_MOMENTS = ("exp_avg", "exp_avg_sq")


def mapped_tensor(values: torch.Tensor, folder: str | os.PathLike | None = None) -> torch.Tensor:
    """A copy of a CPU tensor ``values`` (any shape) in a mapped file (``folder``, default ``TMPDIR``).

    The tensor counterpart of :func:`cryofield.io.mapped.mapped_array`. Returns a contiguous tensor
    of the same shape and dtype whose pages are the file's, and which :func:`is_mapped` recognises.
    """
    return mapped_zeros(values.shape, values.dtype, folder).copy_(values.detach())


def mapped_zeros(shape: tuple[int, ...], dtype: torch.dtype, folder: str | os.PathLike | None = None) -> torch.Tensor:
    """Zeros of ``shape`` and ``dtype`` in an unlinked file mapped into memory (a new file reads as zeros)."""
    numel = math.prod(shape)
    with scratch_file(numel * torch.empty((), dtype=dtype).element_size(), folder) as path:
        mapped = torch.from_file(path, shared=True, size=numel, dtype=dtype)
    return mapped.view(shape)


def is_mapped(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s storage is a file mapped by :func:`mapped_tensor`."""
    return tensor.untyped_storage().filename is not None


class MappedTables:
    """Moves a run's per-particle tables and their ``SparseAdam`` moments into mapped files.

    Parameters
    ----------
    folder : str or PathLike, optional
        Where the files are made (default ``TMPDIR``).

    Notes
    -----
    Call :meth:`map_tables` whenever the tables are made (a fresh stage, a pose table attached)
    and :meth:`map_moments` after their optimiser is made or loaded; both leave mapped tensors
    as they are, so calling them again is cheap. Values are copied, never changed.
    """

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = folder
        self._moments: dict[int, dict[str, torch.Tensor]] = {}  # by id of a live parameter: its mapped moments

    def map_tables(self, tables: dict[str, nn.Module]) -> int:
        """Put every parameter of ``tables`` in a mapped file; returns how many were moved.

        Parameters
        ----------
        tables : dict of str to nn.Module
            :meth:`cryofield.train.models.Models.tables`: each module's parameters are
            ``(N, k)`` embedding weights on the CPU.
        """
        moved = 0
        for table in tables.values():
            for param in table.parameters():
                if not is_mapped(param.data):
                    param.data = mapped_tensor(param.data, self.folder)
                    moved += 1
        return moved

    def map_moments(self, optimizer: torch.optim.Optimizer | None) -> int:
        """Give each mapped parameter of ``optimizer`` mapped moments; returns how many were moved.

        Moments not made yet (before the first step) are made here, as ``SparseAdam`` would
        make them at its first step (zeros, step 0), so that it steps the mapped ones in place.
        Moments loaded from a checkpoint are copied into the files made for them before.
        """
        if optimizer is None:
            return 0
        moved = 0
        for group in optimizer.param_groups:
            for param in group["params"]:
                if not is_mapped(param.data):
                    continue
                state = optimizer.state[param]
                if not state:
                    state["step"] = 0
                if id(param) not in self._moments:
                    self._moments[id(param)] = {}
                    weakref.finalize(param, self._moments.pop, id(param), None)  # forgotten with the parameter
                kept = self._moments[id(param)]
                for name in _MOMENTS:
                    value = state.get(name)
                    if value is not None and is_mapped(value):
                        continue
                    if name in kept and kept[name].shape == param.shape:  # the file made before
                        state[name] = kept[name].zero_() if value is None else kept[name].copy_(value)
                        continue
                    state[name] = kept[name] = (mapped_zeros(param.shape, param.dtype, self.folder) if value is None
                                                else mapped_tensor(value, self.folder))
                    moved += 1
        return moved
