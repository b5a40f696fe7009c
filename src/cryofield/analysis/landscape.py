"""Landscape analysis of a run's volume ensemble (the seed's chapter 6).

The latent space's layout is arbitrary and its distances pass through a nonlinear decoder,
so this analysis works on the maps themselves:

1. **Sketch**: k-means on the latents (``sketch`` clusters) and the map at each cluster's
   on-data centre, a small set of maps that covers the ensemble, rare states included.
2. **Check the sketch**: in a few sketched clusters, the pairwise distances between maps of
   member particles, against the distances between sketched maps (members should be close).
3. **Mask**: the union of each sketched map thresholded at half its maximum (optionally
   dilated), or a mask given by the user: the voxels that vary, without the solvent.
4. **Volume PCA** of the masked maps: explained variance, and maps along each PC.
5. **Agglomerative clustering** of the masked maps into ``M`` states; each state's centroid
   map and particles (every particle follows its sketch cluster).
6. **MDS and UMAP** of the sketch.
7. **phi**: an MLP from z to the volume-PC coordinates, trained on maps of sampled particles
   generated on the fly, then applied to every particle: a landscape with interpretable axes.

The result and its files (``sketch/``, ``mask.mrc``, ``pc{i}/``, ``states{M}/``,
``z_vol_pc.npy``, ``summary.json`` ...) are :class:`cryofield.io.Landscape`'s; ``phi.pt``
(phi's weights, a plain state dict) and ``phi.json`` (losses and R^2 per PC) are written here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryofield.analysis.latent import kmeans_clusters
from cryofield.analysis.phi import train_phi
from cryofield.io import ClusterSet, Landscape, LandscapeStates, numbered_map, write_map
from cryofield.io._atomic import save_table, save_text, whole
from cryofield.train.config import setting

MapSource = Callable[[np.ndarray], np.ndarray]  # latents (M, zdim) -> maps (M, D, D, D)


@dataclass
class LandscapeSettings:
    """Settings of :func:`landscape_analysis` (defaults: the seed's, with fewer phi samples on CPU).

    Each is declared once (:func:`cryofield.train.setting`); ``cryofield landscape`` builds its
    options from them.

    ``sketch``: k-means clusters of the latents; ``threshold``: fraction of each map's
    maximum for the automatic mask; ``dilate``: pixels added around it; ``n_pcs``: volume
    PCs kept (and predicted by phi); ``traverse_pcs``/``pc_points``: maps along the first PCs;
    ``states``/``linkage``: agglomerative clustering (Euclidean); ``check_clusters``/
    ``check_particles``: the sketch check; ``phi_samples``: particles whose maps train phi
    (the seed's 25,000; 0 skips phi; ``None``: :func:`default_phi_samples` of the maps' box),
    split 3:1 into training and validation; ``phi_epochs``,
    ``phi_batch``, ``phi_lr``: its training; ``amp``: render the maps in bfloat16.
    """

    sketch: int = setting(500, "k-means clusters of the sketch (default 500)")
    threshold: float = setting(0.5, "automatic mask: voxels above this fraction of each map's maximum (default 0.5)")
    dilate: int = setting(0, "dilate the automatic mask by N pixels (default 0)")
    n_pcs: int = setting(10, "volume PCs kept and predicted per particle (default 10)", flags=("--pcs",))
    traverse_pcs: int = setting(3)
    pc_points: int = setting(10, "maps along each of the first 3 PCs (default 10)")
    states: int = setting(10, "agglomerative clusters (default 10)", flags=("-M", "--states"))
    linkage: str = setting("average", "agglomerative linkage, Euclidean distances (default average)",
                           choices=["average", "ward", "complete", "single"])
    check_clusters: int = setting(3)
    check_particles: int = setting(20)
    phi_samples: int | None = setting(None, "particles whose maps train the z -> volume-PC network (default 2,000 for "
                                            "maps of up to 64 px, fewer for larger maps, at least 500: the rendering "
                                            "time of 2,000 maps at 64 px; the seed used 25,000; 0 skips it)")
    phi_epochs: int = setting(50, "its epochs (default 50)")
    phi_batch: int = setting(64)
    phi_lr: float = setting(1e-3)
    amp: bool = setting(True, "render the maps in float32 (slower; default bfloat16)", flags=("--no-amp",))
    seed: int = setting(0)


def default_phi_samples(box: int) -> int:
    """Phi's training maps when none are asked for: 2,000 at up to 64 px, fewer at larger boxes, at least 500.

    A map costs about ``box^3`` (its lattice through the decoder), so the count keeps the
    rendering time of 2,000 maps at 64 px down to the floor of 500, which placed every
    particle as well as the sketch's own maps did (volume PC1's |Spearman| with a 1-D
    motion 0.965 both ways; ``docs/benchmarks.md``).

    Parameters
    ----------
    box : int
        Edge of the rendered maps, pixels.

    Returns
    -------
    int
        2,000 for ``box <= 64``, ``2000 (64 / box)^3`` above it, never below 500 (128 px: 500).
    """
    return int(min(2000, max(500, round(2000 * (64 / box) ** 3))))


def threshold_mask(maps: np.ndarray, fraction: float = 0.5, dilate: int = 0) -> np.ndarray:
    """Union over maps of the voxels above ``fraction`` of each map's maximum, dilated by ``dilate`` px.

    Parameters
    ----------
    maps : ndarray, shape (M, D, D, D)
    fraction : float
    dilate : int
        Binary dilation steps (pixels).

    Returns
    -------
    ndarray, shape (D, D, D), bool
    """
    maps = np.asarray(maps)
    peaks = maps.reshape(len(maps), -1).max(axis=1)
    mask = np.zeros(maps.shape[1:], bool)
    for volume, peak in zip(maps, peaks):
        mask |= volume > fraction * peak
    return _dilated(mask, dilate)


def _dilated(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` after ``steps`` binary dilations (itself for 0)."""
    if steps <= 0:
        return mask
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=steps)


def pairwise_distances(vectors: np.ndarray) -> np.ndarray:
    """Euclidean distances between all pairs of rows of ``vectors`` (M, F): the upper triangle, (M (M - 1) / 2,)."""
    from scipy.spatial.distance import pdist

    return pdist(np.asarray(vectors, np.float64))


def state_particles(sketch_labels: np.ndarray, state_of_sketch: np.ndarray) -> np.ndarray:
    """State of every particle (N,), from its sketch cluster (N,) and each sketched map's state (K,)."""
    return np.asarray(state_of_sketch)[np.asarray(sketch_labels)]


def landscape_analysis(z: np.ndarray, maps_at: MapSource, outdir: str | os.PathLike, *, apix: float,
                       particle_indices: np.ndarray | None = None, mask: np.ndarray | None = None,
                       settings: LandscapeSettings | None = None,
                       progress: Callable[[str, int, int], None] | None = None) -> Landscape:
    """Sketch, mask, PCA, cluster and map the volume ensemble of a run; write everything to ``outdir``.

    Parameters
    ----------
    z : ndarray, shape (N, zdim)
        The run's latents, in particle order.
    maps_at : callable
        ``maps_at(latents (M, zdim)) -> maps (M, D, D, D)``: the run's maps (e.g.
        :class:`cryofield.train.RunVolumes`), called in batches.
    outdir : str or PathLike
        Created if needed.
    apix : float
        Pixel size of those maps, Angstrom (written in the headers).
    particle_indices : ndarray, shape (N,), optional
        Row of each latent in the run's input file; default ``0 .. N-1``.
    mask : ndarray, shape (D, D, D), bool, optional
        A user mask instead of the thresholded union.
    settings : LandscapeSettings, optional
    progress : callable, optional
        ``progress(stage, done, total)`` while maps are generated.

    Returns
    -------
    Landscape
        As saved in ``outdir`` (its ``summary`` is ``summary.json``).
    """
    s = settings or LandscapeSettings()
    z = np.asarray(z, np.float64)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows = np.arange(len(z)) if particle_indices is None else np.asarray(particle_indices, np.int64)
    if len(rows) != len(z):
        raise ValueError(f"{len(rows)} particle indices for {len(z)} latents")
    if s.linkage not in ("average", "ward", "complete", "single"):
        raise ValueError(f"linkage must be average, ward, complete or single, not {s.linkage!r}")
    rng = np.random.default_rng(s.seed)
    render = _Renderer(maps_at, progress)

    # 1. sketch (its maps on disk, not in memory: 500 maps at 128 px are 4 GB), 2. its check
    k = min(s.sketch, len(z))
    sketch = kmeans_clusters(z, k, seed=s.seed, reorder=False, n_init=1 if len(z) > 100_000 else 3)
    with tempfile.TemporaryDirectory(prefix=".cryofield-landscape-") as scratch:
        maps = _SketchMaps(Path(scratch), render.batches(z[sketch.on_data], "sketch"), s.threshold)
        summary: dict = {"particles": len(z), "zdim": z.shape[1], "sketch": k, "box": maps.box, "apix": apix,
                         "settings": {**s.__dict__}}
        check = _check_sketch(z, sketch, maps, render, rng, s)
        summary["sketch_check"] = {"between_sketch_median": round(check["between_sketch_median"], 4),
                                   "within_cluster_medians": [round(c["median_distance"], 4)
                                                              for c in check["clusters"]]}
        # 3. mask
        mask, summary["mask"] = _mask(maps, mask, s)
        write_map(outdir / "mask.mrc", mask.astype(np.float32), apix)
        masked = maps.masked(mask)  # (K, V)
        mean_map = maps.mean
        write_map(outdir / "mean.mrc", mean_map, apix)
        # 4. volume PCA, 5. states
        pca, sketch_pc = _volume_pca(masked, mean_map, mask, outdir, apix, s)
        summary["explained_variance_ratio"] = [round(float(v), 4) for v in pca.explained_variance_ratio_]
        states = _states(masked, maps, sketch.labels, outdir, apix, s)
    # 6. embeddings of the sketch, 7. phi
    summary["states"] = {"folder": states.folder, "volumes": states.volumes, "particles": states.particles,
                         "linkage": states.linkage}
    mds, umap = _sketch_embeddings(masked, s)
    z_vol_pc = None
    if s.phi_samples is None or s.phi_samples > 0:
        z_vol_pc, summary["phi"] = _fit_phi(z, pca, mask, render, rng, outdir, s)
        sketch_rho = _spearman(z_vol_pc[sketch.on_data, 0], sketch_pc[:, 0])
        summary["phi"]["sketch_pc1_spearman"] = round(float(sketch_rho), 4)
    result = Landscape(ClusterSet("sketch", sketch.labels, sketch.on_data), check, sketch_pc,
                       pca.explained_variance_ratio_, states, mds, umap, z_vol_pc, summary)
    result.save(outdir, z, rows)
    return result


class _SketchMaps:
    """The sketch's maps, rendered once into a scratch file and read back one (or a block of voxels) at a time.

    While rendering it keeps their mean and the union of their thresholded regions, so that
    no step needs all the maps in memory at once.

    Parameters
    ----------
    folder : Path
        Scratch folder (the file is ``K D^3`` float32).
    batches : iterable of ndarray, each (B, D, D, D) float32
        The maps, a batch at a time (:meth:`_Renderer.batches`).
    threshold : float
        Each map's region is where it exceeds ``threshold`` times its maximum.
    """

    def __init__(self, folder: Path, batches, threshold: float):
        self.path = folder / ".sketch-maps.part.f32"  # a temporary name: never an output
        self.count = 0
        total = union = None
        with open(self.path, "wb") as fh:
            for maps in batches:
                fh.write(np.ascontiguousarray(maps).tobytes())
                self.count += len(maps)
                total = maps.sum(0, dtype=np.float64) + (0 if total is None else total)
                region = threshold_mask(maps, threshold)
                union = region if union is None else union | region
        self.shape = maps.shape[1:]
        self.box = self.shape[-1]
        self.mean = (total / self.count).astype(np.float32)
        self.union = union

    @property
    def _voxels(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> np.ndarray:
        """Map ``i``, (D, D, D) float32."""
        return self.block([i], 0, self._voxels)[0].reshape(self.shape)

    def block(self, rows, start: int, stop: int) -> np.ndarray:
        """Voxels ``start:stop`` (flat order) of maps ``rows``, (len(rows), stop - start) float32."""
        out = np.empty((len(rows), stop - start), np.float32)
        with open(self.path, "rb") as fh:
            for j, i in enumerate(rows):
                fh.seek(4 * (int(i) * self._voxels + start))
                fh.readinto(memoryview(out[j]).cast("B"))
        return out

    def masked(self, mask: np.ndarray) -> np.ndarray:
        """Every map's voxels in ``mask``, (K, V) float64."""
        return np.stack([self[i][mask] for i in range(self.count)]).astype(np.float64)

    def distances(self, rows, block: int = 1 << 18) -> np.ndarray:
        """:func:`pairwise_distances` of maps ``rows``, from their Gram matrix summed over blocks of voxels."""
        gram = np.zeros((len(rows), len(rows)))
        for start in range(0, self._voxels, block):
            x = self.block(rows, start, min(start + block, self._voxels)).astype(np.float64)
            gram += x @ x.T
        squared = np.diag(gram)
        d2 = squared[:, None] + squared[None, :] - 2 * gram
        return np.sqrt(np.maximum(d2, 0.0))[np.triu_indices(len(rows), 1)]

    def state_mean(self, members: np.ndarray) -> np.ndarray:
        """Mean of maps ``members``, (D, D, D) float32."""
        total = np.zeros(self.shape)
        for i in members:
            total += self[i]
        return (total / max(len(members), 1)).astype(np.float32)


class _Renderer:
    """The run's maps at given latents, in batches of 8, reporting ``progress(stage, done, total)``.

    ``render(latents, stage)`` returns them all (M, D, D, D); :meth:`batches` yields them a batch
    at a time.
    """

    def __init__(self, maps_at: MapSource, progress: Callable[[str, int, int], None] | None, batch: int = 8):
        self.maps_at, self.progress, self.batch = maps_at, progress, batch

    def batches(self, latents: np.ndarray, stage: str):
        """Maps (B, D, D, D) float32 of successive batches of ``latents``."""
        for i in range(0, len(latents), self.batch):
            yield np.asarray(self.maps_at(latents[i:i + self.batch]), np.float32)
            if self.progress is not None:
                self.progress(stage, min(i + self.batch, len(latents)), len(latents))

    def __call__(self, latents: np.ndarray, stage: str) -> np.ndarray:
        return np.concatenate(list(self.batches(latents, stage)))


def _check_sketch(z: np.ndarray, sketch, maps: _SketchMaps, render, rng: np.random.Generator,
                  s: LandscapeSettings) -> dict:
    """Distances among maps of members of a few sketched clusters, against those between sketched maps."""
    k = len(maps)
    between = maps.distances(rng.choice(k, min(k, 100), replace=False))
    populated = np.flatnonzero(sketch.counts >= 2)
    checks = []
    for cluster in rng.choice(populated, min(s.check_clusters, len(populated)), replace=False):
        members = np.flatnonzero(sketch.labels == cluster)
        members = rng.choice(members, min(s.check_particles, len(members)), replace=False)
        within = pairwise_distances(render(z[members], "sketch check").reshape(len(members), -1))
        checks.append({"cluster": int(cluster), "particles": len(members),
                       "median_distance": float(np.median(within)), "distances": np.round(within, 4).tolist()})
    return {"between_sketch_median": float(np.median(between)) if len(between) else 0.0,
            "between_sketch": np.round(between, 4).tolist(), "clusters": checks}


def _mask(maps: _SketchMaps, mask: np.ndarray | None, s: LandscapeSettings) -> tuple[np.ndarray, dict]:
    """The thresholded union of the sketched maps, or the user's mask; and how it was made."""
    if mask is None:
        mask = _dilated(maps.union, s.dilate)
        info = {"source": f"union of maps > {s.threshold} x max", "dilate": s.dilate}
    else:
        mask = np.asarray(mask, bool)
        if mask.shape != maps.shape:
            raise ValueError(f"mask of shape {mask.shape} for maps of shape {maps.shape}")
        info = {"source": "user"}
    if not mask.any():
        raise ValueError("the mask is empty")
    return mask, info | {"voxels": int(mask.sum())}


def _volume_pca(masked: np.ndarray, mean_map: np.ndarray, mask: np.ndarray, outdir: Path, apix: float,
                s: LandscapeSettings):
    """PCA of the masked sketch maps, and maps along the first PCs (5th to 95th percentile of the sketch)."""
    from sklearn.decomposition import PCA

    n_pcs = max(1, min(s.n_pcs, len(masked) - 1, masked.shape[1]))
    pca = PCA(n_components=n_pcs, random_state=s.seed).fit(masked)
    sketch_pc = pca.transform(masked)
    for pc in range(min(s.traverse_pcs, n_pcs)):
        folder = Landscape.pc_folder(outdir, pc + 1)
        folder.mkdir(exist_ok=True)
        lo, hi = np.percentile(sketch_pc[:, pc], [5, 95])
        for j, t in enumerate(np.linspace(lo, hi, s.pc_points)):
            volume = mean_map.copy()
            volume[mask] = pca.mean_ + t * pca.components_[pc]
            write_map(numbered_map(folder, j), volume.astype(np.float32), apix)
        save_table(folder / "pc_coordinates.txt", np.linspace(lo, hi, s.pc_points))
    return pca, sketch_pc


def _states(masked: np.ndarray, maps: _SketchMaps, sketch_labels: np.ndarray, outdir: Path, apix: float,
            s: LandscapeSettings) -> LandscapeStates:
    """Agglomerative clusters of the masked sketch maps, numbered by particles, and their centroid maps."""
    from sklearn.cluster import AgglomerativeClustering

    m = min(s.states, len(masked))
    state_of_sketch = AgglomerativeClustering(n_clusters=m, linkage=s.linkage).fit_predict(masked)
    particle_state = state_particles(sketch_labels, state_of_sketch)
    order = np.argsort(-np.bincount(particle_state, minlength=m), kind="stable")  # largest first
    rank = np.empty(m, np.int64)
    rank[order] = np.arange(m)
    states = LandscapeStates(rank[state_of_sketch], rank[particle_state], s.linkage)
    (outdir / states.folder).mkdir(exist_ok=True)
    for j in range(m):
        write_map(Landscape.state_map(outdir, states, j), maps.state_mean(np.flatnonzero(states.of_sketch == j)),
                  apix)
    return states


def _sketch_embeddings(masked: np.ndarray, s: LandscapeSettings) -> tuple[np.ndarray, np.ndarray | None]:
    """MDS of the masked sketch maps, and their UMAP when there are more than 15."""
    from sklearn.manifold import MDS

    try:
        mds = MDS(n_components=2, random_state=s.seed, n_init=1, init="classical_mds")
    except TypeError:  # scikit-learn before 1.8
        mds = MDS(n_components=2, random_state=s.seed, n_init=1)
    embedded = mds.fit_transform(masked)
    if len(masked) <= 15:
        return embedded, None
    from cryofield.analysis.latent import umap_embedding

    return embedded, umap_embedding(masked.astype(np.float32), seed=s.seed)


def _fit_phi(z: np.ndarray, pca, mask: np.ndarray, render, rng: np.random.Generator, outdir: Path,
             s: LandscapeSettings) -> tuple[np.ndarray, dict]:
    """Phi trained on maps of sampled particles, applied to every particle; ``phi.pt`` and ``phi.json``."""
    import torch

    wanted = default_phi_samples(mask.shape[0]) if s.phi_samples is None else s.phi_samples
    samples = rng.choice(len(z), min(wanted, len(z)), replace=False)
    targets = np.concatenate([pca.transform(render(z[part], "phi samples")[:, mask].astype(np.float64))
                              for part in np.array_split(samples, max(1, len(samples) // 64))])
    phi, record = train_phi(z[samples], targets, epochs=s.phi_epochs, batch=s.phi_batch, lr=s.phi_lr, seed=s.seed)
    with whole(outdir / "phi.pt") as temp, open(temp, "wb") as fh:
        torch.save(phi.state_dict(), fh)
    save_text(outdir / "phi.json", json.dumps({**record, "samples": len(samples)}) + "\n")
    return phi(z), {"samples": len(samples), "best_epoch": record["best_epoch"], "val_r2": record["val_r2"]}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two (N,) arrays."""
    from scipy import stats

    return float(stats.spearmanr(a, b)[0])
