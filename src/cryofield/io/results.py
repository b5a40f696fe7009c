"""The results of analysing a latent space, as typed objects that own their files: saved once, read by all.

:class:`LatentAnalysis` is what ``cryofield analyze`` writes, :class:`LatentPath` a path
through latent space (the traversal commands, ``analyze``'s PC paths);
:class:`cryofield.io.landscape.Landscape` is what ``cryofield landscape`` writes. A set of
maps is always ``vol_000.mrc``, ``vol_001.mrc`` ... in a folder (:func:`numbered_map`,
:func:`numbered_maps`).

An analysis folder:

Layout of an analysis folder (particle indices are rows of the run's input file, so that
``cryofield select IN --ind FILE`` exports them; latent rows are rows of ``z.npy``):

- ``z_pca.npy`` (N, k) coordinates on the latent PCs; ``pca.json`` explained variance,
  components and mean
- ``z_umap.npy`` (N, 2) UMAP of the latents (zdim > 1)
- ``z_norm.npy`` (N,) each particle's ``|z|``
- ``kmeans{K}/`` and ``gmm{K}/``: ``labels.npy``, ``centers.txt`` (on-data latents),
  ``centers_ind.txt`` (their particle indices), ``counts.txt``, ``cluster_XXX.ind.txt`` and,
  with a model, ``vol_XXX.mrc`` at the centres
- ``pc{i}/``: ``z_path.txt`` along PC i and its maps ``vol_XXX.mrc``
- ``summary.json``: the counts and settings (``particles``, ``zdim``, ``seed``,
  ``explained_variance_ratio``, per cluster set ``counts``/``centers_row``/``centers_ind``,
  per PC ``points``/``percentiles``, ``maps``)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io._atomic import save_npy, save_table, save_text
from cryofield.io.arrays import read_array
from cryofield.io.workdir import read_json_object

_MAP_NAME = re.compile(r"vol_(\d+)\.mrc$")


def numbered_map(folder: str | os.PathLike, j: int) -> Path:
    """``folder/vol_XXX.mrc``, the ``j``-th map of a set (0-based)."""
    return Path(folder) / f"vol_{j:03d}.mrc"


def numbered_maps(folder: str | os.PathLike) -> list[Path]:
    """The ``vol_XXX.mrc`` files of a folder, in the order of their numbers."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob("vol_*.mrc") if (m := _MAP_NAME.search(p.name))]
    return [p for _, p in sorted(found)]


@dataclass
class LatentPath:
    """A path through latent space, and the particles it passes (``z_path.txt``, ``path_ind.txt``, maps).

    Attributes
    ----------
    z : ndarray, shape (M, zdim)
        The latents along the path.
    particle_rows : ndarray, shape (M,), int, optional
        The input-file row of the particle at each point (graph paths through the data).
    """

    z: np.ndarray
    particle_rows: np.ndarray | None = None

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``z_path.txt`` (and ``path_ind.txt``) into ``folder`` (made if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_table(folder / "z_path.txt", self.z)
        if self.particle_rows is not None:
            save_table(folder / "path_ind.txt", self.particle_rows, fmt="%d")

    def map_paths(self, folder: str | os.PathLike) -> list[Path]:
        """Where the map at each point goes: ``folder/vol_XXX.mrc``."""
        return [numbered_map(folder, j) for j in range(len(self.z))]

    @staticmethod
    def found_in(folder: str | os.PathLike) -> bool:
        """Whether ``folder`` holds a path with its maps (a traversal a report shows)."""
        return (Path(folder) / "z_path.txt").is_file() and bool(numbered_maps(folder))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> LatentPath:
        """Read ``z_path.txt`` (and ``path_ind.txt``) of ``folder``."""
        folder = Path(folder)
        z = read_array(folder / "z_path.txt", ndim=2, what="latent path")
        indices = read_array(folder / "path_ind.txt", ndim=1, rows=len(z), what="particle indices",
                             of="path points", missing_ok=True)
        return cls(z, None if indices is None else indices.astype(np.int64))


@dataclass
class ClusterSet:
    """Clusters of the latents (k-means or a Gaussian mixture) with their on-data centres.

    Attributes
    ----------
    name : str
        ``kmeans20``, ``gmm5``: its folder.
    labels : ndarray, shape (N,), int
        Each particle's cluster.
    centers_row : ndarray, shape (k,), int
        The latent row of the particle at each cluster's centre (empty when a folder from
        an older version did not record them).
    """

    name: str
    labels: np.ndarray
    centers_row: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """Particles per cluster, (k,)."""
        return np.bincount(self.labels, minlength=len(self.centers_row))


@dataclass
class LatentAnalysis:
    """The standard views of a run's latent space (module docstring for the files).

    Attributes
    ----------
    z_pca : ndarray, shape (N, k)
        Coordinates on the latent PCs.
    components : ndarray, shape (k, zdim)
    explained_variance_ratio : ndarray, shape (k,)
    mean : ndarray, shape (zdim,)
    z_norm : ndarray, shape (N,)
    z_umap : ndarray, shape (N, 2) or None
    clusters : dict of str to ClusterSet
        By name, k-means first.
    paths : dict of str to ndarray
        ``pc1`` ... : latents (points, zdim) along each PC.
    summary : dict
        ``summary.json``: counts and settings, and ``maps`` once maps are written.
    """

    z_pca: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    mean: np.ndarray
    z_norm: np.ndarray
    z_umap: np.ndarray | None = None
    clusters: dict[str, ClusterSet] = field(default_factory=dict)
    paths: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Particles."""
        return len(self.z_pca)

    @property
    def kmeans(self) -> ClusterSet | None:
        """The k-means clusters (the first set), if any."""
        return next((c for name, c in self.clusters.items() if name.startswith("kmeans")), None)

    def coordinates(self, space: str) -> np.ndarray | None:
        """The 2-D view ``pca`` (first two PCs) or ``umap`` (N, 2), or None when not computed or 1-D."""
        xy = self.z_pca if space == "pca" else self.z_umap if space == "umap" else None
        if xy is None or xy.shape[1] < 2:
            return None
        return xy[:, :2]

    def map_targets(self, folder: str | os.PathLike, z: np.ndarray) -> list[tuple[np.ndarray, list[Path]]]:
        """``(latents, paths)`` of the maps a run renders for this analysis: cluster centres, then PC paths."""
        folder = Path(folder)
        targets = [(z[c.centers_row], [numbered_map(folder / name, j) for j in range(len(c.centers_row))])
                   for name, c in self.clusters.items()]
        return targets + [(path, LatentPath(path).map_paths(folder / name)) for name, path in self.paths.items()]

    def save(self, folder: str | os.PathLike, z: np.ndarray, rows: np.ndarray) -> None:
        """Write every file of the layout.

        Parameters
        ----------
        folder : str or PathLike
            Created if needed.
        z : ndarray, shape (N, zdim)
            The latents analysed (for the on-data centres' values).
        rows : ndarray, shape (N,), int
            Each latent's row in the run's input file (for the index files).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_npy(folder / "z_pca.npy", self.z_pca)
        save_npy(folder / "z_norm.npy", self.z_norm)
        if self.z_umap is not None:
            save_npy(folder / "z_umap.npy", self.z_umap)
        save_text(folder / "pca.json", json.dumps({
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "components": self.components.tolist(), "mean": self.mean.tolist()}, indent=2) + "\n")
        for name, clusters in self.clusters.items():
            sub = folder / name
            sub.mkdir(exist_ok=True)
            save_npy(sub / "labels.npy", clusters.labels)
            save_table(sub / "centers.txt", z[clusters.centers_row])
            save_table(sub / "centers_ind.txt", rows[clusters.centers_row], fmt="%d")
            save_table(sub / "counts.txt", clusters.counts, fmt="%d")
            for j in range(len(clusters.centers_row)):
                save_table(sub / f"cluster_{j:03d}.ind.txt", rows[clusters.labels == j], fmt="%d")
            self.summary[name] = {"counts": clusters.counts.tolist(), "centers_row": clusters.centers_row.tolist(),
                                  "centers_ind": rows[clusters.centers_row].tolist()}
        for name, path in self.paths.items():
            LatentPath(path).save(folder / name)
        self.save_summary(folder)

    def save_summary(self, folder: str | os.PathLike) -> None:
        """Write ``summary.json`` (again, e.g. once the maps are written)."""
        save_text(Path(folder) / "summary.json", json.dumps(self.summary, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> LatentAnalysis:
        """Read an analysis folder (older ones without ``pca.json`` too).

        Raises
        ------
        InputError
            A missing or malformed file, named.
        """
        folder = Path(folder)
        if not (folder / "z_pca.npy").is_file():
            raise InputError(folder, "no z_pca.npy: not a folder written by `cryofield analyze`")
        summary = read_json_object(folder / "summary.json") if (folder / "summary.json").is_file() else {}
        z_pca = read_array(folder / "z_pca.npy", ndim=2, what="PCA coordinates")
        n = len(z_pca)
        if n == 0:
            raise InputError(folder / "z_pca.npy", "holds no particles")
        pca = read_json_object(folder / "pca.json") if (folder / "pca.json").is_file() else {}
        variance = np.asarray(pca.get("explained_variance_ratio", summary.get("explained_variance_ratio", [])), float)
        z_norm = read_array(folder / "z_norm.npy", rows=n, ndim=1, what="latent norms", missing_ok=True)
        z_umap = read_array(folder / "z_umap.npy", rows=n, ndim=2, what="UMAP coordinates", missing_ok=True)
        clusters = {}
        for sub in sorted(folder.glob("*/labels.npy"), key=lambda p: (not p.parent.name.startswith("kmeans"),
                                                                       p.parent.name)):
            labels = read_array(sub, rows=n, ndim=1, what="cluster labels").astype(np.int64)
            if len(labels) and labels.min() < 0:
                raise InputError(sub, "negative cluster labels")
            rows = [int(r) for r in summary.get(sub.parent.name, {}).get("centers_row", []) if 0 <= int(r) < n]
            clusters[sub.parent.name] = ClusterSet(sub.parent.name, labels, np.asarray(rows, np.int64))
        paths = {p.parent.name: LatentPath.load(p.parent).z for p in sorted(folder.glob("pc*/z_path.txt"))}
        return cls(z_pca, np.asarray(pca.get("components", []), float), variance,
                   np.asarray(pca.get("mean", []), float), z_norm, z_umap, clusters, paths, summary)
