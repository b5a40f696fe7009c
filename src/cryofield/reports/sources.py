"""What a report finds in a work directory and reads: FSC files, maps, traversals, the analyses."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io import Landscape, LatentAnalysis, LatentPath, numbered_map, numbered_maps


@dataclass
class MapGroup:
    """Maps shown together with one iso-level: a cluster set, a traversal, or the run's own maps.

    Attributes
    ----------
    title : str
    kind : str
        ``"clusters"``, ``"trajectory"`` or ``"maps"``.
    paths : list of Path
        In display order (a trajectory's order).
    captions : list of str
        One line per map.
    """

    title: str
    kind: str
    paths: list[Path]
    captions: list[str] = field(default_factory=list)


def read_fsc(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, str]:
    """An FSC curve from a text file written by ``cryofield fsc -o`` or ``cryofield backproject``.

    The header line (``# freq_1/A  fsc`` or ``# shell  freq_1/A  resolution_A  fsc_half_maps``)
    names the columns: frequencies are the ``freq_1/A`` column (the first of two columns when
    there is no header), the FSC is the last column.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    freqs_per_angstrom : ndarray, shape (S,)
        Shell frequencies, 1/Angstrom, increasing.
    curve : ndarray, shape (S,)
        FSC values.
    name : str
        The FSC column's name (``fsc`` when there is no header).

    Raises
    ------
    InputError
        Unreadable, too short, non-finite or decreasing frequencies.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
        table = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not an FSC text file ({exc})") from None
    names: list[str] = []
    for line in lines:
        if line.startswith("#"):
            names = line.lstrip("#").split()
            break
    if table.shape[0] < 2 or table.shape[1] < 2:
        raise InputError(path, f"an FSC table needs at least 2 rows and 2 columns, got {table.shape}")
    column = names.index("freq_1/A") if "freq_1/A" in names else 0
    if names and len(names) != table.shape[1]:
        raise InputError(path, f"the header names {len(names)} columns, the table has {table.shape[1]}")
    freqs, curve = table[:, column], table[:, -1]
    if not (np.isfinite(freqs).all() and np.isfinite(curve).all()):
        raise InputError(path, "non-finite values")
    if np.any(np.diff(freqs) <= 0):
        raise InputError(path, "frequencies must increase down the file")
    return freqs, curve, names[-1] if names else "fsc"


def fsc_crossing(freqs: np.ndarray, curve: np.ndarray, threshold: float) -> float | None:
    """Frequency where an FSC curve first falls below ``threshold`` (linear between shells).

    Parameters
    ----------
    freqs, curve : ndarray, shape (S,)
        Frequencies (any unit) and FSC values.
    threshold : float

    Returns
    -------
    float or None
        In the unit of ``freqs``; ``None`` when the curve never falls below.
    """
    below = np.flatnonzero(np.asarray(curve)[1:] < threshold)
    if len(below) == 0:
        return None
    i = below[0] + 1
    f0, f1, c0, c1 = freqs[i - 1], freqs[i], curve[i - 1], curve[i]
    return float(f0 + (c0 - threshold) * (f1 - f0) / (c0 - c1)) if c0 != c1 else float(f0)


def find_fsc_files(workdir: str | os.PathLike) -> list[Path]:
    """Every ``fsc*.txt`` under a folder (hidden folders and files skipped), sorted by path."""
    workdir = Path(workdir)
    found = [p for p in workdir.rglob("fsc*.txt")
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(workdir).parts)]
    return sorted(found)


def find_traversals(workdir: str | os.PathLike, extra: list[str | os.PathLike] = ()) -> list[Path]:
    """Traversal folders (``z_path.txt`` and ``vol_XXX.mrc``) under ``workdir``, then those in ``extra``.

    Parameters
    ----------
    workdir : str or PathLike
    extra : list of str or PathLike
        More folders (written outside the work directory); each must hold such a traversal.

    Returns
    -------
    list of Path
        Without repeats; ``pc{i}`` folders first (by ``i``), then the others by path.

    Raises
    ------
    InputError
        A folder in ``extra`` with no ``z_path.txt`` or no maps.
    """
    def order(folder: Path) -> tuple:
        match = re.fullmatch(r"pc(\d+)", folder.name)
        return (0, int(match.group(1)), str(folder)) if match else (1, 0, str(folder))

    workdir = Path(workdir)
    found = {p.parent.resolve(): p.parent for p in workdir.rglob("z_path.txt") if LatentPath.found_in(p.parent)
             and not any(part.startswith(".") for part in p.relative_to(workdir).parts)}
    folders = sorted(found.values(), key=order)
    for folder in map(Path, extra):
        if not LatentPath.found_in(folder):
            raise InputError(folder, "not a traversal folder (z_path.txt and vol_XXX.mrc)")
        if folder.resolve() not in found:
            found[folder.resolve()] = folder
            folders.append(folder)
    return folders


@dataclass
class _Latents:
    analysis: Path
    result: LatentAnalysis
    spaces: list[dict]

    @property
    def n(self) -> int:
        return self.result.n

    @property
    def clusters(self) -> str | None:
        return None if self.result.kmeans is None else self.result.kmeans.name

    @property
    def counts(self) -> list[int]:
        return [] if self.result.kmeans is None else self.result.kmeans.counts.tolist()


def _load_latents(analysis: Path, max_points: int, seed: int) -> _Latents:
    result = LatentAnalysis.load(analysis)
    variance = result.explained_variance_ratio
    kmeans = result.kmeans
    shown = np.arange(result.n)
    if result.n > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(result.n, max_points, replace=False))
    spaces = []
    for space in ("pca", "umap"):
        xy = result.coordinates(space)
        if xy is None:
            continue  # not computed, or a 1-D latent: no plane to draw a lasso in
        if space == "pca":
            names = [f"PC{i + 1}" + (f" ({100 * variance[i]:.1f} %)" if i < len(variance) else "") for i in range(2)]
            title = "latent PCA"
        else:
            names, title = ["UMAP1", "UMAP2"], "latent UMAP"
        xy = np.asarray(xy, np.float64)
        centre_rows = [] if kmeans is None else kmeans.centers_row
        spaces.append({
            "space": space, "title": title, "xlabel": names[0], "ylabel": names[1],
            "x": xy[shown, 0].tolist(), "y": xy[shown, 1].tolist(), "row": shown.tolist(),
            "cluster": None if kmeans is None else kmeans.labels[shown].tolist(),
            "centers": {"x": xy[centre_rows, 0].tolist(), "y": xy[centre_rows, 1].tolist(),
                        "label": [str(j) for j in range(len(centre_rows))]},
        })
    return _Latents(analysis, result, spaces)


def _groups(workdir: Path, latents: _Latents | None, traversals: list[Path]) -> list[MapGroup]:
    groups = []
    top = sorted(p for p in workdir.glob("*.mrc") if p.is_file())
    if top:
        groups.append(MapGroup("maps of the run", "maps", top, [p.name for p in top]))
    if latents is not None:
        for name in sorted(latents.result.clusters):
            counts = latents.result.clusters[name].counts
            centres = latents.result.summary.get(name, {}).get("centers_ind", [])
            folder = latents.analysis / name
            maps = [(j, path) for j in range(len(counts)) if (path := numbered_map(folder, j)).is_file()]
            if not maps:
                continue
            captions = [f"{name}/{path.name}: cluster {j}, {counts[j]} particles"
                        + (f", centre particle {centres[j]}" if j < len(centres) else "") for j, path in maps]
            groups.append(MapGroup(f"{name}: maps at the on-data cluster centres", "clusters",
                                   [path for _, path in maps], captions))
    for folder in traversals:
        paths = numbered_maps(folder)
        try:
            name = str(folder.relative_to(workdir))
        except ValueError:
            name = str(folder)
        captions = [f"{name}/{p.name}: point {i + 1} of {len(paths)}" for i, p in enumerate(paths)]
        pc = re.fullmatch(r"pc(\d+)", folder.name)
        if pc and latents is not None and len(latents.result.components):
            try:
                path_z = LatentPath.load(folder).z
                component = latents.result.components[int(pc.group(1)) - 1]
                values = (path_z - latents.result.mean) @ component
                if len(values) == len(paths):
                    captions = [f"{c}, PC{pc.group(1)} = {v:.3g}" for c, v in zip(captions, values)]
            except (ValueError, IndexError, KeyError):
                pass  # the captions without PC values
        groups.append(MapGroup(f"trajectory {name}", "trajectory", paths, captions))
    return groups


def _landscape_groups(folder: Path) -> list[MapGroup]:
    """The state centroid maps and the maps along the volume PCs of a landscape folder."""
    groups = []
    landscape = Landscape.load(folder)
    paths = landscape.state_maps(folder)
    if paths:
        counts = landscape.states.particles
        captions = [f"{landscape.states.folder}/{p.name}: state {j}" + (f", {counts[j]} particles"
                                                                        if j < len(counts) else "")
                    for j, p in enumerate(paths)]
        groups.append(MapGroup("landscape states: centroid maps", "clusters", paths, captions))
    for pc_dir in sorted(folder.glob("pc[0-9]*")):
        paths = numbered_maps(pc_dir)
        if paths:
            groups.append(MapGroup(f"landscape: maps along volume {pc_dir.name.upper()}", "trajectory", paths,
                                   [f"landscape/{pc_dir.name}/{p.name}" for p in paths]))
    return groups
