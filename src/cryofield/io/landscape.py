"""What ``cryofield landscape`` computes about a run's volume ensemble, as a typed result that owns its files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io._atomic import save_npy, save_table, save_text
from cryofield.io.arrays import read_array
from cryofield.io.results import ClusterSet
from cryofield.io.workdir import read_json_object


@dataclass
class LandscapeStates:
    """The states of a landscape: agglomerative clusters of the sketched maps.

    Attributes
    ----------
    of_sketch : ndarray, shape (K,), int
        Each sketched map's state, numbered by particles (largest first).
    of_particle : ndarray, shape (N,), int
        Each particle's state (its sketch cluster's).
    linkage : str
    """

    of_sketch: np.ndarray
    of_particle: np.ndarray
    linkage: str

    @property
    def count(self) -> int:
        """``M``, the number of states."""
        return int(self.of_sketch.max()) + 1 if len(self.of_sketch) else 0

    @property
    def folder(self) -> str:
        """``states{M}``."""
        return f"states{self.count}"

    @property
    def volumes(self) -> list[int]:
        """Sketched maps per state."""
        return np.bincount(self.of_sketch, minlength=self.count).tolist()

    @property
    def particles(self) -> list[int]:
        """Particles per state."""
        return np.bincount(self.of_particle, minlength=self.count).tolist()


@dataclass
class Landscape:
    """What ``cryofield landscape`` computes about a run's volume ensemble, with its files.

    Layout (particle indices are rows of the run's input file):

    - ``sketch/``: ``labels.npy`` (N,), ``centers_ind.txt``, ``centers.txt`` (latents), ``counts.txt``
    - ``sketch_check.json``; ``mask.mrc``; ``mean.mrc``
    - ``vol_pca.json`` (explained variance), ``sketch_pc.npy`` (K, L); ``pc{i}/vol_XXX.mrc``
      along volume PC i and ``pc{i}/pc_coordinates.txt``
    - ``states{M}/``: ``sketch_labels.npy``, ``labels.npy``, ``state_XXX.mrc`` (centroid),
      ``state_XXX.ind.txt``, ``counts.json``
    - ``sketch_mds.npy`` (K, 2), ``sketch_umap.npy`` (K, 2)
    - ``z_vol_pc.npy`` (N, L) from phi; ``phi.pt`` and ``phi.json`` (written by the analysis)
    - ``summary.json``

    Attributes
    ----------
    sketch : ClusterSet
        k-means of the latents, ``centers_row`` the sketched particles (empty when loaded).
    sketch_check : dict
        ``between_sketch`` distances and per checked cluster its ``distances``.
    sketch_pc : ndarray, shape (K, L)
    explained_variance_ratio : ndarray, shape (L,)
    states : LandscapeStates
    sketch_mds : ndarray, shape (K, 2)
    sketch_umap : ndarray, shape (K, 2) or None
    z_vol_pc : ndarray, shape (N, L) or None
    summary : dict
    """

    sketch: ClusterSet
    sketch_check: dict
    sketch_pc: np.ndarray
    explained_variance_ratio: np.ndarray
    states: LandscapeStates
    sketch_mds: np.ndarray
    sketch_umap: np.ndarray | None = None
    z_vol_pc: np.ndarray | None = None
    summary: dict = field(default_factory=dict)

    @property
    def sketch_counts(self) -> np.ndarray:
        """Particles per sketched map, (K,)."""
        return np.bincount(self.sketch.labels, minlength=len(self.sketch_pc))

    @staticmethod
    def state_map(folder: str | os.PathLike, states: LandscapeStates, j: int) -> Path:
        """The centroid map of state ``j``."""
        return Path(folder) / states.folder / f"state_{j:03d}.mrc"

    @staticmethod
    def pc_folder(folder: str | os.PathLike, pc: int) -> Path:
        """``pc{i}/``: maps along volume PC ``pc`` (1-based)."""
        return Path(folder) / f"pc{pc}"

    def state_maps(self, folder: str | os.PathLike) -> list[Path]:
        """The state centroid maps that exist."""
        return [p for j in range(self.states.count) if (p := self.state_map(folder, self.states, j)).is_file()]

    def save(self, folder: str | os.PathLike, z: np.ndarray, rows: np.ndarray) -> None:
        """Write the arrays, index files and JSON of the layout (the maps are written as they are made).

        Parameters
        ----------
        folder : str or PathLike
        z : ndarray, shape (N, zdim)
            The latents (for the sketched centres' values).
        rows : ndarray, shape (N,), int
            Each latent's row in the run's input file.
        """
        folder = Path(folder)
        sketch = folder / "sketch"
        sketch.mkdir(parents=True, exist_ok=True)
        save_npy(sketch / "labels.npy", self.sketch.labels)
        save_table(sketch / "centers.txt", z[self.sketch.centers_row])
        save_table(sketch / "centers_ind.txt", rows[self.sketch.centers_row], fmt="%d")
        save_table(sketch / "counts.txt", self.sketch_counts, fmt="%d")
        save_text(folder / "sketch_check.json", json.dumps(self.sketch_check) + "\n")
        save_npy(folder / "sketch_pc.npy", self.sketch_pc)
        save_text(folder / "vol_pca.json", json.dumps(
            {"explained_variance_ratio": self.explained_variance_ratio.tolist()}, indent=2) + "\n")
        states = folder / self.states.folder
        states.mkdir(exist_ok=True)
        save_npy(states / "sketch_labels.npy", self.states.of_sketch)
        save_npy(states / "labels.npy", self.states.of_particle)
        for j in range(self.states.count):
            save_table(states / f"state_{j:03d}.ind.txt", rows[self.states.of_particle == j], fmt="%d")
        save_text(states / "counts.json", json.dumps({"volumes": self.states.volumes,
                                                        "particles": self.states.particles,
                                                        "linkage": self.states.linkage}) + "\n")
        save_npy(folder / "sketch_mds.npy", self.sketch_mds)
        if self.sketch_umap is not None:
            save_npy(folder / "sketch_umap.npy", self.sketch_umap)
        if self.z_vol_pc is not None:
            save_npy(folder / "z_vol_pc.npy", self.z_vol_pc.astype(np.float32))
        save_text(folder / "summary.json", json.dumps(self.summary, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Landscape:
        """Read a landscape folder.

        Raises
        ------
        InputError
            A missing or malformed file, named.
        """
        folder = Path(folder)
        summary = read_json_object(folder / "summary.json")
        recorded = summary.get("states")
        if not isinstance(recorded, dict) or not (folder / str(recorded.get("folder", ""))
                                                  / "sketch_labels.npy").is_file():
            raise InputError(folder, "not a folder written by `cryofield landscape` (no states)")
        states_dir = folder / str(recorded.get("folder", ""))
        labels = read_array(folder / "sketch" / "labels.npy", ndim=1, what="sketch labels").astype(np.int64)
        n = len(labels)
        sketch = ClusterSet("sketch", labels, np.empty(0, np.int64))  # the sketched rows are not saved
        of_sketch = read_array(states_dir / "sketch_labels.npy", ndim=1, what="state labels").astype(np.int64)
        if n and (labels.min() < 0 or labels.max() >= len(of_sketch)):
            raise InputError(folder / "sketch" / "labels.npy", f"labels outside 0..{len(of_sketch) - 1}")
        of_particle = read_array(states_dir / "labels.npy", rows=n, ndim=1, what="state labels", missing_ok=True)
        of_particle = of_sketch[labels] if of_particle is None else of_particle.astype(np.int64)
        states = LandscapeStates(of_sketch, of_particle, str(recorded.get("linkage", "")))
        sketch_pc = read_array(folder / "sketch_pc.npy", rows=len(of_sketch), ndim=2, what="sketch coordinates")
        optional = {name: read_array(folder / f"{name}.npy", ndim=2, what="coordinates", missing_ok=True)
                    for name in ("sketch_mds", "sketch_umap", "z_vol_pc")}
        return cls(sketch, read_json_object(folder / "sketch_check.json"), sketch_pc,
                   np.asarray(summary.get("explained_variance_ratio", []), float), states,
                   optional["sketch_mds"], optional["sketch_umap"], optional["z_vol_pc"], summary)
