"""A running average of the networks' weights: the model a run's maps and latents come from.

Adam at a fixed step size leaves the weights jittering about the fit: each step follows the
noise of its 8 images. The exponential moving average of the weights over the last
``1 / (1 - decay)`` steps cancels much of that jitter at the cost of one in-place interpolation
per step: at equal epochs the averaged model's maps were as good as the last step's or better in every
run measured (``docs/benchmarks.md``, "The maps from the running average of the weights").
Training itself steps the live weights; only what a run reads out of its networks uses the
average. Ab initio's searches use the live weights too: the average lags them by about
``1 / (1 - decay)`` steps, and the first search, whose references take shape within its epoch,
then failed.
The per-particle tables (pose and latent tables, pose corrections) are not averaged: each row
is stepped only when its particle is in a batch.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cryofield.train.models import Models


class WeightAverage:
    """The exponential moving average of a run's networks (not of its per-particle tables).

    After each optimiser step :meth:`update` sets ``average <- d * average + (1 - d) * weights``
    for every network parameter, with ``d = min(decay, (1 + t) / (10 + t))`` at the ``t``-th
    update (0-based): early on the average spans about the last ninth of the steps taken, so that
    a short run (or the first few hundred steps of a long one) is not read from weights that
    lag far behind. Buffers are copied as they are.

    Parameters
    ----------
    models : Models
        The live networks (the average starts at their weights).
    decay : float
        The weight the average keeps at each step, in (0, 1): about ``1 / (1 - decay)`` steps are
        averaged (0.99: the last 100).

    Attributes
    ----------
    parts : nn.ModuleDict
        The averaged copies of the networks, by part name (``decoder``, ``encoder``, ``pose_encoder``).
    steps : int
        Updates so far (a checkpoint's ``averaged_steps``).
    """

    def __init__(self, models: Models, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), not {decay}")
        self.decay, self.steps = decay, 0
        tables = models.tables()
        self.parts = nn.ModuleDict({name: copy.deepcopy(part).requires_grad_(False)
                                    for name, part in models.named_children() if name not in tables})
        self._live = models
        self._pairs = self._pair_tensors()

    def _pair_tensors(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """(averaged params, live params, averaged buffers, live buffers), in matching order."""
        live = dict(self._live.named_children())
        avg_params, live_params, avg_buffers, live_buffers = [], [], [], []
        for name, part in self.parts.items():
            avg_params += [p.data for p in part.parameters()]
            live_params += [p.data for p in live[name].parameters()]
            avg_buffers += list(part.buffers())
            live_buffers += list(live[name].buffers())
        return avg_params, live_params, avg_buffers, live_buffers

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the live weights (after an optimiser step)."""
        avg_params, live_params, avg_buffers, live_buffers = self._pairs
        decay = min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))
        self.steps += 1
        if avg_params:
            torch._foreach_lerp_(avg_params, live_params, 1.0 - decay)
        for avg, live in zip(avg_buffers, live_buffers):
            avg.copy_(live)

    @torch.no_grad()
    def reset(self) -> None:
        """Start the average again at the live weights (a checkpoint that holds none)."""
        self.steps = 0
        avg_params, live_params, avg_buffers, live_buffers = self._pairs
        for avg, live in zip(avg_params + avg_buffers, live_params + live_buffers):
            avg.copy_(live)

    def models(self) -> Models:
        """The averaged networks with the live per-particle tables, as a :class:`Models` (no copy)."""
        parts = {name: self.parts[name] if name in self.parts else part for name, part in self._live.named_children()}
        return Models(**parts)

    def state_dict(self) -> dict[str, dict]:
        """``{part: state_dict}`` of the averaged networks (a checkpoint's ``averaged``)."""
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        """Restore :meth:`state_dict` (every averaged part must be there)."""
        for name, part in self.parts.items():
            part.load_state_dict(state[name])
