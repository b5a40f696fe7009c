"""The states a simulation images: maps, or atomic models along a trajectory or rigid motions, rendered."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cryofield.io import AtomicModel, read_map
from cryofield.simulate import atomic


@dataclass
class RigidMotions:
    """Rigid motions of parts of one model: each a selection, its hinge bond and an angle range.

    Attributes
    ----------
    parts : list of (str, str, (float, float))
        ``(selection, hinge bond, (first, last angle in degrees))`` per motion (one or two).
    circular : bool
        The first motion goes once around the circle (its last angle is not repeated).
    random_configs : int
        Draw this many configurations uniformly in the ranges instead of a grid.
    seed : int
        For the random configurations.
    """

    parts: list[tuple[str, str, tuple[float, float]]]
    circular: bool = False
    random_configs: int = 0
    seed: int = 0

    def frames(self, model: AtomicModel, states: int) -> tuple[np.ndarray, np.ndarray]:
        """The model's coordinates in every configuration (S, atoms, 3), A, and their angles (S, motions)."""
        motions = [atomic.rigid_motion(model, part, bond) for part, bond, _ in self.parts]
        ranges = [(0.0, 360.0) if self.circular and i == 0 else span for i, (_, _, span) in enumerate(self.parts)]
        if self.random_configs:
            rng = np.random.default_rng(self.seed + 1)
            angles = np.column_stack([rng.uniform(lo, hi, self.random_configs) for lo, hi in ranges])
        else:
            axes = [np.linspace(lo, hi, states, endpoint=not (self.circular and i == 0))
                    for i, (lo, hi) in enumerate(ranges)]
            angles = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
        frames = []
        for row in angles:
            coords = model.coords_angstrom
            for motion, angle in zip(motions, row):
                coords = motion.apply(coords, angle)
            frames.append(coords)
        return np.stack(frames), angles


def model_states(models: Sequence[AtomicModel], *, states: int, box: int, apix: float, resolution: float,
                 ca_only: bool = False, render: str = "band", motions: RigidMotions | None = None,
                 ) -> tuple[list[np.ndarray], np.ndarray]:
    """Maps of atomic models: one model, two models' interpolation, or rigid motions of one.

    Parameters
    ----------
    models : sequence of AtomicModel
        One model, or two for a trajectory from the first to the second.
    states : int
        States along a trajectory, or per motion on a grid.
    box, apix, resolution
        The maps' box (pixels), pixel size and resolution (Angstrom).
    ca_only : bool
        Render C-alpha atoms only.
    render : str
        :func:`cryofield.simulate.atomic.render`'s mode.
    motions : RigidMotions, optional
        Rigid motions of one model.

    Returns
    -------
    (list of ndarray, ndarray)
        The maps (D, D, D) of every state, all in the first state's frame, and each state's
        true coordinates (S, d).

    Raises
    ------
    ValueError
        More than two models, or motions of two.
    """
    if len(models) == 2:
        model, frames = atomic.interpolation_trajectory(models[0], models[1], states)
        coordinates = np.linspace(0, 1, states)[:, None]
    elif len(models) > 2:
        raise ValueError("one model, or two for a trajectory")
    elif motions is not None:
        model = models[0]
        frames, coordinates = motions.frames(model, states)
    else:
        model, frames, coordinates = models[0], models[0].coords_angstrom[None], np.zeros((1, 1))
    keep = model.atom_name == "CA" if ca_only else np.ones(len(model), bool)
    coords0, weights = atomic.atom_weights(model, ca_only)  # the first frame's atoms, rendered
    center = (weights[:, None] * coords0).sum(0) / weights.sum()  # one frame of reference for all states
    return [atomic.render(frame[keep], weights, box, apix, resolution, center, render) for frame in frames], coordinates


def map_states(paths: Sequence[str | os.PathLike], apix: float | None = None) -> tuple[list[np.ndarray], np.ndarray,
                                                                                       float | None]:
    """Maps read as the states (a discrete mixture), their coordinates (the state numbers) and the pixel size.

    The first map's pixel size holds for all unless ``apix`` is given.

    Raises
    ------
    ValueError
        A map that is not a cube of the first map's size, as ``(path, message)`` in its args.
    """
    volumes = []
    for path in paths:
        volume, pixel = read_map(path)
        if volume.ndim != 3 or len(set(volume.shape)) != 1:
            raise ValueError(path, f"map is {volume.shape}; a cube is needed")
        if volumes and volume.shape != volumes[0].shape:
            raise ValueError(path, f"map is {volume.shape}, the first is {volumes[0].shape}")
        volumes.append(volume)
        apix = apix or pixel or None
    return volumes, np.arange(len(volumes), dtype=float)[:, None], apix
