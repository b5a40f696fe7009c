"""One run opened for exploring: its latent space, particles, selections, exports and maps at any z.

An :class:`Explorer` is the explorer's model, free of any web framework: the server
(:mod:`cryofield.explore.server`) turns its methods into HTTP endpoints, and a notebook can
call them directly. Everything it writes goes under ``RUN/explore/`` (:attr:`Explorer.folder`):
exported selections (``NAME.txt``, ``NAME.star``, ``NAME.cs``), the maps it rendered
(``maps/map_XXXX.mrc``) and ChimeraX scripts.

Particle numbering: the explorer counts **latent rows** (rows of ``z.npy``: particles the run
was trained on, tilt series counted whole); exports and the ``.txt`` indices are rows of the
run's input file, as ``cryofield select`` reads them.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io import LatentAnalysis, ParticleTable, write_map, write_particles
from cryofield.io._atomic import save_text
from cryofield.io.export import output_paths

#: Export formats, by extension.
EXPORT_FORMATS = ("txt", "star", "cs")
#: A name the user gives a selection or script: letters, digits, ``_``, ``-`` and ``.``, not leading.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
#: Points in the neighbour graph of a path (a random subset of larger runs, plus the two ends).
PATH_GRAPH_POINTS = 20_000
#: ``(avg_neighbours, max_neighbours)`` of the graphs a path is sought on, in turn: the seed's, then the 10 nearest.
PATH_GRAPHS = ((5, 10), (10, 10))


@dataclass
class MapJob:
    """A map requested at one latent: queued, then rendered by the explorer's one worker.

    Attributes
    ----------
    id : int
        Its number in the explorer (``maps/map_XXXX.mrc``).
    z : ndarray, shape (zdim,)
    label : str
        What it is, e.g. ``"particle 17"`` or ``"mean of sel2 (120 particles)"``.
    future : Future
        Resolves to the map's file once rendered (:meth:`Explorer.volume` reads the map).
    """

    id: int
    z: np.ndarray
    label: str
    future: Future = field(repr=False)

    @property
    def state(self) -> str:
        """``"queued"``, ``"running"``, ``"done"`` or ``"failed"``."""
        if not self.future.done():
            return "running" if self.future.running() else "queued"
        return "failed" if self.future.exception() is not None else "done"


class Explorer:
    """A run's latent space, particles and decoder, for interactive use.

    Parameters
    ----------
    workdir : str or PathLike
        A run folder (``train-vae``, ``train-nn``, ``abinit``, ``train-cryofold``), analysed
        or not.
    labels : str or PathLike, optional
        One integer or number per latent row (``.npy`` or ``.txt``), offered as a colouring.
    cached_maps : int
        Maps kept in memory for meshes and slices (each ``4 D^3`` bytes).

    Notes
    -----
    Views that cannot work on this run say why in :attr:`notes` instead of failing: a run
    without ``analyze`` has no UMAP or clusters (PCA is computed here), one whose images are
    missing has no thumbnails, a homogeneous run has no latent space but still its map.
    """

    def __init__(self, workdir: str | os.PathLike, *, labels: str | os.PathLike | None = None, cached_maps: int = 16):
        from cryofield.train import Run

        self.run = Run(workdir)
        self.config = self.run.config
        self.root = Path(self.run.workdir.root).resolve()
        self.name = self.root.name
        self.notes: dict[str, str] = {}
        self._labels_path = labels
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cryofield-maps")
        self._jobs: dict[int, MapJob] = {}
        self._volumes: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached_maps = cached_maps
        self._selections: dict[str, np.ndarray] = {}
        self._indices_files: dict[str, Path] = {}  # each selection's last export as .txt

    # ---- the latent space -------------------------------------------------------------------

    @property
    def zdim(self) -> int:
        """Latent dimension (0 for a homogeneous run)."""
        return int(self.config.zdim)

    @cached_property
    def z(self) -> np.ndarray | None:
        """Latents (N, zdim) float32, or None (homogeneous run, or no ``z.npy`` yet: see :attr:`notes`)."""
        if not self.zdim:
            self.notes["latent"] = "a homogeneous run (train-nn) has no latent space: its one map is shown"
            return None
        try:
            return np.asarray(self.run.z, np.float32)
        except (InputError, FileNotFoundError, ValueError) as error:
            self.notes["latent"] = f"no latents to show: {error}"
            return None

    @property
    def n(self) -> int:
        """Particles (latent rows); 0 without latents."""
        return 0 if self.z is None else len(self.z)

    @property
    def rows(self) -> np.ndarray:
        """The input-file row of each latent row, (N,) int64 (:attr:`cryofield.train.Run.input_rows`)."""
        return self.run.input_rows if self.z is not None else np.zeros(0, np.int64)

    @cached_property
    def analysis(self) -> LatentAnalysis | None:
        """``analyze``'s results when present and of this run's size, else None (see :attr:`notes`)."""
        folder = self.run.workdir.analysis
        if self.z is None:
            return None
        if not (folder / "z_pca.npy").is_file():
            self.notes["analysis"] = (f"no analysis yet: UMAP and clusters come from `cryofield analyze {self.root}` "
                                      "(PCA is computed here)")
            return None
        try:
            analysis = LatentAnalysis.load(folder)
        except InputError as error:
            self.notes["analysis"] = f"the analysis could not be read: {error}"
            return None
        if analysis.n != self.n:
            self.notes["analysis"] = f"{folder} holds {analysis.n} particles, the run {self.n}: analyse it again"
            return None
        return analysis

    @cached_property
    def landscape(self):
        """``cryofield landscape``'s results (:class:`cryofield.io.landscape.Landscape`) when present, else None."""
        from cryofield.io.landscape import Landscape

        folder = self.run.workdir.landscape
        if self.z is None or not (folder / "summary.json").is_file():
            return None
        try:
            landscape = Landscape.load(folder)
        except InputError as error:
            self.notes["landscape"] = f"the landscape could not be read: {error}"
            return None
        if len(landscape.states.of_particle) != self.n:
            self.notes["landscape"] = f"{folder} holds {len(landscape.states.of_particle)} particles, the run {self.n}"
            return None
        return landscape

    @cached_property
    def _pca(self) -> np.ndarray:
        """Coordinates on the latent PCs (N, min(zdim, 10)): the analysis', else computed."""
        if self.analysis is not None:
            return self.analysis.z_pca
        from cryofield.analysis import latent_pca

        return latent_pca(self.z, min(self.zdim, 10)).projected

    def axes(self) -> list[str]:
        """The coordinates a scatter can plot on either axis: ``pc1``.., ``umap1``/``umap2``, ``z1``.., columns."""
        if self.z is None:
            return []
        names = [f"pc{i + 1}" for i in range(self._pca.shape[1])]
        if self.analysis is not None and self.analysis.z_umap is not None:
            names += ["umap1", "umap2"]
        names += [f"z{i + 1}" for i in range(self.zdim)]
        if self.landscape is not None and self.landscape.z_vol_pc is not None:
            names += [f"volpc{i + 1}" for i in range(self.landscape.z_vol_pc.shape[1])]
        names += ["|z|", "particle"]
        return names + [c for c in self.columns() if c not in ("optics group",)]

    def default_axes(self) -> tuple[str, str]:
        """UMAP when computed, else the first two PCs, else ``z1`` against the particle number."""
        if self.analysis is not None and self.analysis.z_umap is not None:
            return "umap1", "umap2"
        return ("pc1", "pc2") if self.zdim > 1 else ("z1", "particle")

    def axis(self, name: str) -> np.ndarray:
        """Values (N,) float32 of the coordinate ``name`` (one of :meth:`axes`).

        Raises
        ------
        KeyError
            For a name that is not an axis of this run.
        """
        if self.z is None:
            raise KeyError(f"{self.name} has no latent space")
        match = re.fullmatch(r"(pc|z|umap|volpc)(\d+)", name)
        if match:
            kind, i = match.group(1), int(match.group(2)) - 1
            source = {"pc": self._pca, "z": self.z,
                      "umap": None if self.analysis is None else self.analysis.z_umap,
                      "volpc": None if self.landscape is None else self.landscape.z_vol_pc}[kind]
            if source is None or not 0 <= i < source.shape[1]:
                raise KeyError(f"no axis {name!r} in {self.name}")
            return np.asarray(source[:, i], np.float32)
        if name == "|z|":
            return np.linalg.norm(self.z, axis=1).astype(np.float32)
        if name == "particle":
            return np.arange(self.n, dtype=np.float32)
        values, _ = self.colouring(name)
        return values.astype(np.float32)

    # ---- colourings -------------------------------------------------------------------------

    @cached_property
    def table(self) -> ParticleTable | None:
        """The run's particles (metadata; images read when asked), or None when they cannot be read."""
        from cryofield.train.inputs import read_table

        try:
            table = read_table(self.config)
        except (InputError, OSError, ValueError) as error:
            self.notes["particles"] = f"the run's particles could not be read: {error}"
            return None
        count = table.n if table.tilts is None else table.tilts.n_particles
        if self.z is not None and count != self.n:
            self.notes["particles"] = f"{self.config.particles} holds {count} particles for {self.n} latents"
            return None
        return table

    @cached_property
    def _first_rows(self) -> np.ndarray | None:
        """The table row of each particle: itself, or a tilt series' least exposed image. (N,) int64."""
        if self.table is None:
            return None
        if self.table.tilts is None:
            return np.arange(self.table.n)
        return self.table.tilts.members(1)[:, 0]

    def columns(self) -> list[str]:
        """The per-particle values of the input metadata offered as colourings and axes."""
        return list(self._columns)

    @cached_property
    def _columns(self) -> list[str]:
        table = self.table
        if table is None:
            return []
        names = []
        if table.ctf is not None:
            names.append("defocus")
        names.append("optics group")
        if table.record.kind == "star":
            frame = self._star_frame
            names += [c for c in frame.columns if c != "rlnImageName" and _numeric(frame[c]) is not None]
        elif table.record.kind == "cs":
            cs = table.record.cs
            names += [n for n in cs.dtype.names if cs.dtype[n].shape == () and cs.dtype[n].kind == "f"]
        return names

    @cached_property
    def _star_frame(self):
        """The input STAR file's rows, one per particle (latent row order)."""
        record = self.table.record
        frame = record.star_rows()
        return frame if record.one_row_per_particle else frame.iloc[self._first_rows].reset_index(drop=True)

    def colourings(self) -> list[dict]:
        """Every colouring: ``{"name", "kind": "category" | "value"}``, clusters and ``|z|`` first."""
        out = []
        if self.analysis is not None:
            out += [{"name": f"cluster:{name}", "kind": "category"} for name in self.analysis.clusters]
        if self.landscape is not None:
            out.append({"name": "landscape state", "kind": "category"})
        if self.z is not None:
            out.append({"name": "|z|", "kind": "value"})
        if self._loss_file() is not None:
            out.append({"name": "loss", "kind": "value"})
        else:
            self.notes.setdefault("loss", f"no per-image losses: `cryofield eval-images {self.root} -o "
                                          f"{self.root / 'z_eval.npy'}` writes them")
        if self._labels_path is not None:
            out.append({"name": "labels", "kind": "category"})
        for name in self.columns():
            out.append({"name": name, "kind": "category" if name == "optics group" else "value"})
        return out

    def _loss_file(self) -> Path | None:
        files = sorted(self.root.glob("*.loss.npy"))
        return files[0] if files else None

    def colouring(self, name: str) -> tuple[np.ndarray, str]:
        """``(values (N,), kind)`` of the colouring ``name`` (:meth:`colourings`); categories as integers.

        Raises
        ------
        KeyError
            For a name this run does not offer.
        """
        from cryofield.io.arrays import read_array

        if name.startswith("cluster:") and self.analysis is not None and name[8:] in self.analysis.clusters:
            return self.analysis.clusters[name[8:]].labels.astype(np.int64), "category"
        if name == "|z|" and self.z is not None:
            return np.linalg.norm(self.z, axis=1), "value"
        if name == "landscape state" and self.landscape is not None:
            return self.landscape.states.of_particle, "category"
        if name == "loss" and self._loss_file() is not None:
            return read_array(self._loss_file(), ndim=1, rows=self.n, what="per-image losses"), "value"
        if name == "labels" and self._labels_path is not None:
            values = read_array(self._labels_path, ndim=1, rows=self.n, what="labels")
            integral = np.all(values == np.round(values))
            return (values.astype(np.int64), "category") if integral else (values, "value")
        if self.table is not None and name in self.columns():
            rows = self._first_rows
            table = self.table
            if name == "defocus":
                ctf = table.ctf
                return ((ctf["defocus_u_angstrom"].to_numpy() + ctf["defocus_v_angstrom"].to_numpy()) / 2)[rows], \
                    "value"
            if name == "optics group":
                return np.unique(np.asarray(table.optics_group)[rows], return_inverse=True)[1], "category"
            if table.record.kind == "star":
                return _numeric(self._star_frame[name]), "value"
            return np.asarray(table.record.cs[name], float)[table.record.rows][rows], "value"
        raise KeyError(f"no colouring {name!r} in {self.name}")

    # ---- selections -------------------------------------------------------------------------

    def select_polygon(self, x: str, y: str, vertices) -> np.ndarray:
        """Latent rows (K,) whose ``(x, y)`` coordinates lie inside the polygon ``vertices`` (V, 2)."""
        from cryofield.analysis.selection import polygon_mask

        points = np.column_stack([self.axis(x), self.axis(y)])
        return np.flatnonzero(polygon_mask(points, np.asarray(vertices, float)))

    def select_box(self, x: str, y: str, x_range, y_range) -> np.ndarray:
        """Latent rows (K,) with ``x`` in ``x_range`` and ``y`` in ``y_range`` (inclusive)."""
        a, b = self.axis(x), self.axis(y)
        (x0, x1), (y0, y1) = sorted(map(float, x_range)), sorted(map(float, y_range))
        return np.flatnonzero((a >= x0) & (a <= x1) & (b >= y0) & (b <= y1))

    def store_selection(self, rows: np.ndarray, name: str | None = None) -> str:
        """Keep a selection (latent rows) under ``name`` (default ``selN``); returns the name."""
        rows = np.unique(np.asarray(rows, np.int64))
        if rows.size and (rows[0] < 0 or rows[-1] >= self.n):
            raise ValueError(f"particle numbers must lie in [0, {self.n})")
        with self._lock:
            if name is None:
                number = len(self._selections) + 1
                while f"sel{number}" in self._selections:
                    number += 1
                name = f"sel{number}"
            _check_name(name)
            self._selections[name] = rows
        return name

    def selection(self, name: str) -> np.ndarray:
        """The latent rows (K,) of a stored selection."""
        try:
            return self._selections[name]
        except KeyError:
            raise KeyError(f"no selection {name!r}") from None

    def selections(self) -> dict[str, int]:
        """Stored selections and their sizes."""
        return {name: len(rows) for name, rows in self._selections.items()}

    def combine(self, a: str, b: str, operation: str) -> np.ndarray:
        """``union``, ``intersection`` or ``difference`` (``a`` without ``b``) of two stored selections."""
        left, right = self.selection(a), self.selection(b)
        functions = {"union": np.union1d, "intersection": np.intersect1d, "difference": np.setdiff1d}
        if operation not in functions:
            raise ValueError(f"operation must be one of {', '.join(functions)}")
        return functions[operation](left, right)

    def export(self, selection: str, name: str, fmt: str) -> list[Path]:
        """Write a stored selection as ``explore/NAME.txt`` (input-file rows), ``.star`` or ``.cs``.

        ``.star`` and ``.cs`` go through :func:`cryofield.io.write_particles`, as ``cryofield
        select`` writes them (a ``.cs`` with its ``.csg`` and passthrough table). Existing files
        are not replaced.

        Returns
        -------
        list of Path
            Every file written.

        Raises
        ------
        ValueError
            A bad name or format, a selection of no particles, or a file that exists.
        InputError
            The run's particles cannot be read (``.star``/``.cs``).
        """
        _check_name(name)
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
        rows = self.selection(selection)
        if rows.size == 0:
            raise ValueError(f"selection {selection} holds no particles")
        target = self.folder / f"{name}.{fmt}"
        input_rows = self.rows[rows]
        if fmt == "txt":
            outputs = [target]
        else:
            if self.table is None:
                raise InputError(self.config.particles, self.notes.get("particles", "cannot be read"))
            subset = (self.table.subset(rows) if self.table.tilts is None else self.table.subset_particles(rows))
            outputs = output_paths(subset, target)
        existing = [p for p in outputs if p.exists()]
        if existing:
            raise ValueError(f"{existing[0].name} exists in {self.folder}; choose another name")
        self.folder.mkdir(parents=True, exist_ok=True)
        if fmt == "txt":
            save_text(target, "".join(f"{int(i)}\n" for i in input_rows))
            self._indices_files[selection] = target
        else:
            write_particles(subset, target)
        return outputs

    def commands(self, selection: str | None = None, map_number: int | None = None,
                 path: tuple[int, int] | None = None) -> list[dict]:
        """The command lines that continue from what is on the page, each ``{"what", "command", "ready"}``.

        For a selection: its particles as a ``.star``, a map backprojected from them, a new VAE
        on them, the map at their mean latent (through its last export as ``.txt``, named as it
        was); for a map: the same map from ``eval-vol``; for a path (two latent rows):
        ``graph-traversal`` between them. ``ready`` is False where a command needs the selection
        exported as ``.txt`` first (the export button).
        """
        import shlex

        run = shlex.quote(str(self.root))
        particles = shlex.quote(str(self.config.particles))
        series = " --tilt-series" if getattr(self.config, "tilt_series", False) else ""
        out = []
        if selection is not None:
            self.selection(selection)  # a KeyError when unknown
            indices = self._indices_files.get(selection, self.folder / f"{selection}.txt")
            ready = selection in self._indices_files and indices.is_file()
            ind = shlex.quote(str(indices))
            stem = indices.stem
            star = f"{stem}.star"
            out += [
                {"what": f"{selection}'s particles as a .star (every column of the input kept)",
                 "command": f"cryofield select {particles}{series} --ind {ind} -o {star}", "ready": ready},
                {"what": "their consensus map, half maps and FSC",
                 "command": f"cryofield backproject {star}{series} -o {stem}_map/", "ready": ready},
                {"what": "a new VAE on them alone",
                 "command": f"cryofield train-vae {star}{series} -o {stem}_vae/ --zdim {max(self.zdim, 1)}",
                 "ready": ready},
                {"what": "the map at their mean latent",
                 "command": f"cryofield eval-vol {run} --mean-of {ind} -o {stem}_mean/", "ready": ready},
            ]
        if map_number is not None:
            job = self.job(map_number)
            if job.z is not None:
                values = " ".join(f"{v:.6g}" for v in job.z)
                out.append({"what": f"map {job.id} ({job.label}) again, from the command line",
                            "command": f"cryofield eval-vol {run} --z {values} -o map_{job.id:04d}/", "ready": True})
        if path is not None:
            anchors = " ".join(str(int(self.rows[int(r)])) for r in path)
            out.append({"what": "the path between the two particles, with its maps",
                        "command": f"cryofield graph-traversal {run} --anchors {anchors} -o path/", "ready": True})
        return out

    def exports(self) -> list[str]:
        """Files in :attr:`folder` (exports, scripts), by name."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.is_file())

    @property
    def folder(self) -> Path:
        """``RUN/explore/``: where the explorer writes."""
        return self.root / "explore"

    # ---- particles --------------------------------------------------------------------------

    def thumbnails(self, rows: np.ndarray, size: int = 96) -> list[dict]:
        """The images of latent rows ``rows`` (a page of them), each ``{"row", "png", "meta"}``.

        Tilt series show their least exposed image. ``png`` is a data URI of the image as stored
        (the contrast RELION and cryoSPARC show), block-averaged to at most ``size`` px, with
        percentile contrast; ``meta`` the row's first two colourings (clusters, |z|) and defocus.

        Raises
        ------
        InputError
            The particles or their images cannot be read.
        """
        from cryofield.reports.views import png_data_uri, scale_to_unit

        if self.table is None:
            raise InputError(self.config.particles, self.notes.get("particles", "cannot be read"))
        rows = np.asarray(rows, np.int64)
        images = self.table.images(self._first_rows[rows])
        out = []
        offered = [c["name"] for c in self.colourings() if c["name"] != "labels"]
        shown = dict.fromkeys(offered[:2] + [c for c in ("defocus",) if c in offered])
        meta = {c: self.colouring(c)[0] for c in shown}
        for row, image in zip(rows, images):
            step = max(1, int(np.ceil(image.shape[0] / size)))
            small = image.reshape(image.shape[0] // step, step, -1, step).mean((1, 3)) if image.shape[0] % step == 0 \
                else image[::step, ::step]
            out.append({"row": int(row), "input_row": int(self.rows[row]),
                        "png": png_data_uri(scale_to_unit(small)),
                        "meta": {c: float(v[row]) for c, v in meta.items()}})
        return out

    # ---- maps -------------------------------------------------------------------------------

    def request_map(self, z: np.ndarray | None, label: str) -> MapJob:
        """Queue the map at latent ``z`` (zdim,) (None for a homogeneous run); maps render one at a time."""
        if self.zdim:
            z = np.asarray(z, np.float32).reshape(-1)
            if z.shape != (self.zdim,) or not np.isfinite(z).all():
                raise ValueError(f"a latent of {self.zdim} finite numbers is needed")
        return self._queue(z, label, self._render, z)

    def _queue(self, z: np.ndarray | None, label: str, work, argument) -> MapJob:
        """Number a map job and queue ``work(number, argument)`` on the one worker."""
        with self._lock:
            number = len(self._jobs) + 1
            job = MapJob(number, z, label, Future())
            job.future = self._worker.submit(work, number, argument)
            self._jobs[number] = job
        return job

    def _cache(self, number: int, volume: np.ndarray) -> None:
        """Keep map ``number`` in memory, the oldest dropped beyond ``cached_maps``."""
        with self._lock:
            self._volumes[number] = volume
            while len(self._volumes) > self._cached_maps:
                self._volumes.popitem(last=False)

    def map_at_particle(self, row: int) -> MapJob:
        """Queue the map at one particle's latent (latent row)."""
        if not 0 <= int(row) < self.n:
            raise ValueError(f"particle {row} is not in [0, {self.n})")
        return self.request_map(self.z[int(row)], f"particle {int(row)} (input row {int(self.rows[int(row)])})")

    def map_at_selection(self, name: str) -> MapJob:
        """Queue the map at a stored selection's mean latent."""
        rows = self.selection(name)
        if rows.size == 0:
            raise ValueError(f"selection {name} holds no particles")
        return self.request_map(self.z[rows].mean(0), f"mean of {name} ({rows.size} particles)")

    def job(self, number: int) -> MapJob:
        """A map job by its number."""
        try:
            return self._jobs[int(number)]
        except KeyError:
            raise KeyError(f"no map {number}") from None

    def queue_position(self, job: MapJob) -> int:
        """Maps before ``job`` still waiting or rendering (0 when it renders or is done)."""
        if job.state != "queued":
            return 0
        return sum(1 for other in self._jobs.values() if other.id < job.id and other.state in ("queued", "running"))

    def _render(self, number: int, z: np.ndarray | None) -> Path:
        """Render, write and cache map ``number``; the future keeps only its path (memory stays bounded)."""
        volume = np.asarray(self.run.volume(z), np.float32)
        path = self.map_path(number)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_map(path, volume, self.run.pixel_size)
        self._cache(number, volume)
        return path

    def volume(self, number: int) -> np.ndarray:
        """A rendered map (D, D, D) float32: waits for it; read back from its file once out of the cache."""
        from cryofield.io import read_map

        path = self.job(number).future.result()
        with self._lock:
            if number in self._volumes:
                self._volumes.move_to_end(number)
                return self._volumes[number]
        return read_map(path)[0]

    def map_path(self, number: int) -> Path:
        """The file of map ``number``: ``explore/maps/map_XXXX.mrc``, or the saved map it shows."""
        job = self._jobs.get(int(number))
        if job is not None and job.future.done() and job.future.exception() is None:
            return Path(job.future.result())
        return self.folder / "maps" / f"map_{int(number):04d}.mrc"

    def path_latents(self, start: int, end: int, frames: int = 8) -> tuple[np.ndarray, np.ndarray, str]:
        """``(rows, z, how)``: ``frames`` latents from particle ``start`` to ``end`` (latent rows).

        The path is the shortest on the neighbour graph of the latents
        (:func:`cryofield.analysis.traversal.graph_path`, on at most :data:`PATH_GRAPH_POINTS`
        of them: a random subset with both ends), ``frames`` particles evenly along it; the
        seed's graph first, then a denser one (:data:`PATH_GRAPHS`). Where neither connects the
        two (separate clusters), the path is the straight line
        between their latents and ``rows`` are the particles nearest each point; ``how`` says
        which.
        """
        from cryofield.analysis.latent import nearest_particles
        from cryofield.analysis.traversal import direct_path, graph_path

        for row in (start, end):
            if not 0 <= int(row) < self.n:
                raise ValueError(f"particle {row} is not in [0, {self.n})")
        if frames < 2:
            raise ValueError("a path needs at least 2 frames")
        points = np.arange(self.n)
        if self.n > PATH_GRAPH_POINTS:
            rng = np.random.default_rng(0)
            points = np.union1d(rng.choice(self.n, PATH_GRAPH_POINTS, replace=False), [start, end])
        local = {int(p): i for i, p in enumerate(points)}
        for neighbours in PATH_GRAPHS:
            try:
                path = points[graph_path(self.z[points], [local[int(start)], local[int(end)]],
                                         avg_neighbours=neighbours[0], max_neighbours=neighbours[1])]
            except ValueError:  # this graph does not join them
                continue
            picks = path[np.round(np.linspace(0, len(path) - 1, frames)).astype(int)]
            return picks, self.z[picks], f"along the data ({len(path)} particles on the graph's path)"
        line = direct_path(self.z[[int(start), int(end)]], frames - 1).astype(np.float32)
        return nearest_particles(self.z, line), line, "a straight line (the data's graph does not join them)"

    def chimerax_script(self, numbers: list[int], name: str, level: float | None = None) -> Path:
        """Write ``explore/NAME.cxc``: the maps ``numbers`` opened as one volume series, at a common level.

        The level defaults to the 99th percentile of the first map (the explorer's initial one).
        The maps are referred to by paths relative to the script, so the run folder can move.
        """
        _check_name(name)
        if not numbers:
            raise ValueError("no maps to write a script for")
        volumes = [self.volume(n) for n in numbers]  # every map rendered, and its file written
        if level is None:
            level = float(np.percentile(volumes[0], 99))
        files = " ".join(Path(os.path.relpath(self.map_path(n), self.folder)).as_posix() for n in numbers)
        series = " vseries true" if len(numbers) > 1 else ""
        lines = [f"# cryofield explore: {len(numbers)} maps of {self.root}",
                 f"open {files}{series}",
                 f"volume #1 style surface level {level:.6g}",
                 "view"]
        if len(numbers) > 1:
            lines.append("vseries play #1 loop true maxFrameRate 4")
        target = self.folder / f"{name}.cxc"
        self.folder.mkdir(parents=True, exist_ok=True)
        save_text(target, "\n".join(lines) + "\n")
        return target

    def saved_maps(self) -> dict[str, list[str]]:
        """The maps the run's analyses wrote, by group: paths relative to the run folder.

        ``kmeansK centres`` and ``pcI path`` (``analyze``), ``landscape states`` and ``volume
        PCi`` (``landscape``), in that order; groups without maps are left out.
        """
        from cryofield.io.results import numbered_maps

        groups: dict[str, list[Path]] = {}
        if self.analysis is not None:
            folder = self.run.workdir.analysis
            for name in self.analysis.clusters:
                groups[f"{name} centres"] = numbered_maps(folder / name)
            for name in self.analysis.paths:
                groups[f"{name} path"] = numbered_maps(folder / name)
        if self.landscape is not None:
            folder = self.run.workdir.landscape
            groups["landscape states"] = self.landscape.state_maps(folder)
            for i in range(len(self.landscape.explained_variance_ratio)):
                groups[f"volume PC{i + 1}"] = numbered_maps(self.landscape.pc_folder(folder, i + 1))
        return {name: [p.resolve().relative_to(self.root).as_posix() for p in paths]
                for name, paths in groups.items() if paths}

    def open_map(self, relative: str) -> MapJob:
        """Queue reading one of :meth:`saved_maps` (a path relative to the run) into the map viewer."""
        listed = {path for paths in self.saved_maps().values() for path in paths}
        if relative not in listed:
            raise KeyError(f"{relative!r} is not one of the run's saved maps")
        return self._queue(None, relative, self._read_saved, self.root / relative)

    def _read_saved(self, number: int, path: Path) -> Path:
        from cryofield.io import read_map

        self._cache(number, read_map(path)[0].astype(np.float32))
        return path

    def close(self) -> None:
        """Stop the map worker (maps queued but not started are dropped)."""
        self._worker.shutdown(wait=False, cancel_futures=True)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ValueError(f"{name!r} is not a usable name: letters, digits, _, - and . (not first), up to 64")


def _numeric(series) -> np.ndarray | None:
    """A STAR column as float64 when every value is a finite number, else None."""
    import pandas as pd

    values = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
    return values if np.isfinite(values).all() else None


def compare(a: Explorer, b: Explorer, k: int = 20, seed: int = 0) -> dict:
    """Cluster correspondence of two runs of the same particles, as ``cryofield compare-runs`` reports it.

    k-means with ``k`` clusters in each run's latent space, matched one to one by the largest
    overlap (:func:`cryofield.analysis.selection.match_clusters`).

    Returns
    -------
    dict
        ``k``, ``agreement`` (fraction of particles in matched clusters), ``mapping`` (A's
        cluster -> B's, (k,)), ``confusion`` (k, k) counts, and each run's labels (N,).

    Raises
    ------
    ValueError
        The runs were trained on different particles, or ``k`` is out of range.
    """
    from cryofield.analysis import kmeans_clusters
    from cryofield.analysis.selection import match_clusters

    if a.z is None or b.z is None:
        raise ValueError("both runs need latents")
    if a.n != b.n or not np.array_equal(a.rows, b.rows):
        raise ValueError(f"{b.name} was trained on other particles than {a.name} ({b.n} vs {a.n})")
    if not 2 <= k <= a.n:
        raise ValueError(f"k must lie between 2 and the {a.n} particles")
    labels_a = kmeans_clusters(a.z, k, seed=seed).labels
    labels_b = kmeans_clusters(b.z, k, seed=seed).labels
    mapping, agreement, confusion = match_clusters(labels_a, labels_b)
    return {"k": k, "agreement": float(agreement), "mapping": np.asarray(mapping).tolist(),
            "confusion": np.asarray(confusion).tolist(), "labels_a": labels_a, "labels_b": labels_b}
