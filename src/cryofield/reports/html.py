"""``report``: one self-contained HTML page of a run, made from its saved results only.

The page embeds everything it shows (plotly.js, the data, the map pictures as PNG data
URIs), so it opens offline and can be mailed around. It reads, from a work directory:

- ``config.json`` (the settings, as a table) and ``log.jsonl`` (losses and throughput per epoch);
- ``analysis/`` as written by :func:`cryofield.analysis.analyze_latents`: interactive PCA and
  UMAP scatter plots coloured by k-means cluster, with a lasso whose polygon downloads in
  the format of ``cryofield filter --polygon``; cluster populations, explained variance,
  ``|z|``; the maps of each cluster set (``kmeans*/``, ``gmm*/``) and of each traversal
  (a folder with ``z_path.txt`` and ``vol_XXX.mrc``, ``pc{i}/`` included);
- FSC curves: every ``fsc*.txt`` under the work directory (``cryofield backproject`` writes
  ``fsc.txt``, ``cryofield fsc -o`` a two-column file) and any named explicitly;
- ``*.mrc`` maps at the top of the work directory (``train-nn``'s ``volume.mrc``);
- ``landscape/`` as written by ``cryofield landscape``: its figures, the state centroid maps
  and the maps along the volume PCs.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io import Landscape, LatentAnalysis, WorkDir
from cryofield.reports import views
from cryofield.reports._assets import CSS, ERROR_CAPTURE_JS, LATENT_JS

#: Cluster colours (matplotlib's tab20, dark shades first), shared by the scatter plots and the bar chart.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5"]

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_MAP_NAME = re.compile(r"vol_(\d+)\.mrc$")


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


def numbered_maps(folder: str | os.PathLike) -> list[Path]:
    """``vol_XXX.mrc`` files of a folder, in the order of their numbers."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob("vol_*.mrc") if (m := _MAP_NAME.search(p.name))]
    return [p for _, p in sorted(found)]


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
    found = {p.parent.resolve(): p.parent for p in workdir.rglob("z_path.txt")
             if numbered_maps(p.parent) and not any(part.startswith(".") for part in p.relative_to(workdir).parts)}
    folders = sorted(found.values(), key=order)
    for folder in map(Path, extra):
        if not (folder / "z_path.txt").is_file() or not numbered_maps(folder):
            raise InputError(folder, "not a traversal folder (z_path.txt and vol_XXX.mrc)")
        if folder.resolve() not in found:
            found[folder.resolve()] = folder
            folders.append(folder)
    return folders


def _figure_html(fig, div_id: str) -> str:
    import plotly.io as pio

    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 40, "b": 50})
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=_PLOT_CONFIG,
                       default_height="360px")


def _settings_section(config: dict) -> str:
    def show(value) -> str:
        if isinstance(value, dict):
            return "; ".join(f"{k} {show(v)}" for k, v in value.items()) or "-"
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.6g}"
        return str(value)

    rows = "\n".join(f'<tr><td class="key">{html.escape(str(k))}</td><td class="value">{html.escape(show(v))}</td>'
                     f"</tr>" for k, v in config.items())
    return ('<h2 id="settings">Settings</h2>\n<p class="caption">config.json</p>\n'
            f'<table class="settings">{rows}</table>')


def _training_section(records: list[dict]) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not records:
        return '<h2 id="training">Training</h2>\n<p class="muted">No log.jsonl: the run did not log an epoch.</p>'
    epochs = [int(r["epoch"]) + 1 for r in records]
    fig = make_subplots(rows=1, cols=2, specs=[[{"secondary_y": True}, {}]],
                        subplot_titles=("losses per epoch", "throughput"))
    fig.add_trace(go.Scatter(x=epochs, y=[r.get("mse") for r in records], mode="lines+markers",
                             name="image loss (mse)"), row=1, col=1)
    if any(r.get("kl") for r in records):
        fig.add_trace(go.Scatter(x=epochs, y=[r.get("kl") for r in records], mode="lines+markers", name="KL",
                                 line={"dash": "dash"}), row=1, col=1, secondary_y=True)
        fig.update_yaxes(title_text="KL", row=1, col=1, secondary_y=True)
    fig.add_trace(go.Scatter(x=epochs, y=[r.get("images_per_second") for r in records], mode="lines+markers",
                             name="images/s"), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="mse", row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="images/s", row=1, col=2)
    seconds = sum(float(r.get("seconds", 0)) for r in records)
    last = records[-1]
    summary = (f"{len(records)} epochs in {seconds:.1f} s; last epoch: mse {last.get('mse', float('nan')):.6g}"
               + (f", KL {last['kl']:.6g}" if last.get("kl") else "")
               + (f", {last['images_per_second']:.0f} images/s" if last.get("images_per_second") else ""))
    return (f'<h2 id="training">Training</h2>\n<p class="caption">log.jsonl: {html.escape(summary)}</p>\n'
            + _figure_html(fig, "training-plot"))


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


def _latent_section(latents: _Latents, workdir_text: str, analysis_option: str, shown: int) -> str:
    import plotly.graph_objects as go

    parts = ['<h2 id="latent">Latent space</h2>',
             f'<p class="caption">{html.escape(str(latents.analysis))}: {latents.n} particles'
             + (f", zdim {latents.result.summary['zdim']}" if "zdim" in latents.result.summary else "")
             + (f"; {shown} shown (a random subset, seed fixed; coordinates exact)" if shown < latents.n else "")
             + (f"; coloured by {html.escape(latents.clusters)} cluster, on-data centres numbered"
                if latents.clusters else "") + ".</p>"]
    if latents.spaces:
        command = f"cryofield filter {workdir_text}{analysis_option} --polygon selection.json -o selected.ind.txt"
        panels = []
        for space in latents.spaces:
            name = space["space"]
            panels.append(
                f'<div class="half"><div id="scatter-{name}" class="plot"></div>\n<div class="selection">'
                f'<span id="count-{name}"></span> <button id="download-{name}" disabled>Download selection polygon'
                f'</button></div>\n<p class="caption">Then: <code>{html.escape(command)}</code> (the file says '
                f"which space, {name}). The selection is every particle inside the line, in every cluster, "
                f'whatever the legend hides.</p>\n<pre class="selftest" id="selftest-output-{name}" hidden></pre>'
                f'<pre class="selftest" id="selftest-drag-{name}" hidden></pre></div>')
        parts.append('<div class="columns">' + "\n".join(panels) + "</div>")
        data = {"particles": latents.n, "clusters": latents.clusters or "", "palette": PALETTE,
                "spaces": latents.spaces}
        parts.append('<script type="application/json" id="latent-data">'
                     + json.dumps(data, allow_nan=False).replace("</", "<\\/") + "</script>")
    else:
        parts.append('<p class="muted">No 2-D embedding (a 1-D latent): select ranges with '
                     "<code>cryofield filter --z-range</code>.</p>")
    small = []
    if latents.counts:
        fig = go.Figure(go.Bar(x=list(range(len(latents.counts))), y=latents.counts,
                               marker_color=[PALETTE[k % len(PALETTE)] for k in range(len(latents.counts))]))
        fig.update_layout(title=f"{latents.clusters} populations", xaxis_title="cluster", yaxis_title="particles")
        small.append(_figure_html(fig, "cluster-counts"))
    variance = latents.result.explained_variance_ratio.tolist()
    if variance:
        pcs = [f"PC{i + 1}" for i in range(len(variance))]
        fig = go.Figure([go.Bar(x=pcs, y=variance, name="each"),
                         go.Scatter(x=pcs, y=np.cumsum(variance).tolist(), mode="lines+markers",
                                    name="cumulative")])
        fig.update_layout(title="explained variance", yaxis_title="fraction of the latent variance",
                          yaxis_range=[0, 1.05])
        small.append(_figure_html(fig, "explained-variance"))
    if latents.result.z_norm is not None:
        counts, edges = np.histogram(latents.result.z_norm, bins=min(100, max(10, latents.n // 10)))
        fig = go.Figure(go.Bar(x=(0.5 * (edges[1:] + edges[:-1])).tolist(), y=counts.tolist(),
                               width=float(edges[1] - edges[0]), marker_color="slategray"))
        fig.update_layout(title="|z| (outliers far right)", xaxis_title="|z|", yaxis_title="particles", bargap=0)
        small.append(_figure_html(fig, "z-norm"))
    if small:
        parts.append('<div class="columns">' + "".join(f'<div class="third">{s}</div>' for s in small) + "</div>")
    return "\n".join(parts)


def _fsc_section(files: list[Path], workdir: Path) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    notes = []
    top = 0.0
    for path in files:
        freqs, curve, name = read_fsc(path)
        try:
            label = str(path.relative_to(workdir))
        except ValueError:
            label = str(path)
        crossings = []
        for t in (0.143, 0.5):
            f = fsc_crossing(freqs, curve, t)
            crossings.append(f"{t}: {1 / f:.2f} A" if f is not None and f > 0 else f"{t}: beyond {1 / freqs[-1]:.2f} A")
        notes.append(f"{label} ({name}): FSC " + ", ".join(crossings))
        fig.add_trace(go.Scatter(x=freqs.tolist(), y=curve.tolist(), mode="lines", name=label,
                                 customdata=(1 / np.maximum(freqs, 1e-12)).tolist(),
                                 hovertemplate="%{x:.4f} 1/A (%{customdata:.2f} A): %{y:.3f}<extra></extra>"))
        top = max(top, float(freqs[-1]))
    for t in (0.143, 0.5):
        fig.add_hline(y=t, line_dash="dash", line_color="grey", annotation_text=str(t))
    fig.update_layout(xaxis_title="spatial frequency (1/A)", yaxis_title="FSC", yaxis_range=[-0.05, 1.05],
                      xaxis_range=[0, top], title="Fourier shell correlation")
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f'<h2 id="fsc">FSC</h2>\n<ul class="caption">{items}</ul>\n' + _figure_html(fig, "fsc-plot")


def _groups(workdir: Path, latents: _Latents | None, traversals: list[Path]) -> list[MapGroup]:
    groups = []
    top = sorted(p for p in workdir.glob("*.mrc") if p.is_file())
    if top:
        groups.append(MapGroup("maps of the run", "maps", top, [p.name for p in top]))
    if latents is not None:
        for folder in sorted(latents.analysis.iterdir()):
            if not (folder.is_dir() and re.fullmatch(r"(kmeans|gmm)\d+", folder.name)):
                continue
            paths = numbered_maps(folder)
            if not paths:
                continue
            info = latents.result.summary.get(folder.name, {})
            counts, centres = info.get("counts", []), info.get("centers_ind", [])
            captions = []
            for path in paths:
                j = int(_MAP_NAME.search(path.name).group(1))
                text = f"{folder.name}/{path.name}: cluster {j}"
                if j < len(counts):
                    text += f", {counts[j]} particles"
                if j < len(centres):
                    text += f", centre particle {centres[j]}"
                captions.append(text)
            groups.append(MapGroup(f"{folder.name}: maps at the on-data cluster centres", "clusters", paths,
                                   captions))
    for folder in traversals:
        paths = numbered_maps(folder)
        try:
            name = str(folder.relative_to(workdir))
        except ValueError:
            name = str(folder)
        captions = [f"{name}/{p.name}: point {i + 1} of {len(paths)}" for i, p in enumerate(paths)]
        pc = re.fullmatch(r"pc(\d+)", folder.name)
        if pc and latents is not None and len(latents.result.components) and (folder / "z_path.txt").is_file():
            try:
                path_z = np.loadtxt(folder / "z_path.txt", ndmin=2)
                component = latents.result.components[int(pc.group(1)) - 1]
                values = (path_z - latents.result.mean) @ component
                if len(values) == len(paths):
                    captions = [f"{c}, PC{pc.group(1)} = {v:.3g}" for c, v in zip(captions, values)]
            except (ValueError, IndexError, KeyError):
                pass  # the captions without PC values
        groups.append(MapGroup(f"trajectory {name}", "trajectory", paths, captions))
    return groups


def _render_group(group: MapGroup, iso_percentile: float, max_map_size: int) -> tuple[str, int]:
    from cryofield.io import read_map

    volumes, largest = [], 0
    for path in group.paths:
        volume, _ = read_map(path)
        if volume.ndim != 3 or len(set(volume.shape)) != 1:
            raise InputError(path, f"map is {volume.shape}; a cube is needed")
        largest = max(largest, volume.shape[0])
        volumes.append(views.bin_volume(volume, max_map_size))
    stride = max(1, int(np.ceil((sum(v.size for v in volumes) / 4e6) ** (1 / 3))))  # pool at most ~4M voxels
    level = float(np.percentile(np.concatenate([v[::stride, ::stride, ::stride].ravel() for v in volumes]),
                                iso_percentile))
    panels = [views.map_panels(v, level, max_map_size) for v in volumes]
    tile = max(v.shape[0] for v in volumes)
    upscale = max(1, int(np.ceil(72 / tile)))
    gap = 2
    labels = ["slice z", "slice y", "slice x", "sum z", "sum y", "sum x", "surface"]
    label_row = (f'<div class="tiles" style="grid-template-columns: repeat(7, {tile * upscale}px); '
                 f'column-gap: {gap * upscale}px">' + "".join(f"<span>{t}</span>" for t in labels) + "</div>")
    cards = []
    for caption, picture in zip(group.captions, panels):
        uri = views.png_data_uri(views.mosaic(picture, gap=gap), upscale)
        cards.append(f'<figure class="map">{label_row}<img src="{uri}" alt="{html.escape(caption)}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    note = (f"Each map: central slices normal to z, y and x (scaled between their 0.5th and 99.5th percentiles), "
            f"sums along z, y and x (scaled between their minimum and maximum), and the surface at level {level:.4g}: "
            f"the {iso_percentile:g}th percentile of the voxel values of the {len(volumes)} maps of this set "
            f"(one level for all), shaded depth map viewed after turning 35 degrees about y and tilting 25 degrees "
            f"about x. Vertical axes point up (y, or z for the y and x views)."
            + (f" Maps block-averaged to {tile} voxels a side." if tile < largest else ""))
    parts = [f"<h3>{html.escape(group.title)}</h3>", f'<p class="caption">{html.escape(note)}</p>']
    grid = '<div class="maps">' + "\n".join(cards) + "</div>"
    if group.kind == "trajectory":
        rows = []
        for index, label in ((3, "sum along z"), (4, "sum along y"), (5, "sum along x"), (6, "surface")):
            strip = views.mosaic([p[index] for p in panels], gap=gap)
            rows.append(f'<div class="label">{label}</div><img src="{views.png_data_uri(strip, upscale)}" '
                        f'alt="{html.escape(group.title)}: {label}">')
        parts.append('<p class="caption">In order, left to right: '
                     + html.escape(", ".join(p.name for p in group.paths)) + ".</p>")
        parts.append('<div class="strip">' + "\n".join(rows) + "</div>")
        parts.append(f"<details><summary>each map of the trajectory</summary>{grid}</details>")
    else:
        parts.append(grid)
    return "\n".join(parts), len(volumes)


_LANDSCAPE_FIGURES = [("landscape.png", "every particle on volume PC1-PC2 (through phi), states numbered"),
                      ("sketch_pc.png", "the sketched maps on volume PC1-PC2, coloured by state"),
                      ("states.png", "maps and particles per state"),
                      ("vol_pca_variance.png", "explained variance of the volume PCs"),
                      ("sketch_mds.png", "MDS of the sketched maps"), ("sketch_umap.png", "UMAP of the sketched maps"),
                      ("sketch_check.png", "distances between maps within sketched clusters and between sketched maps")]


def _landscape_section(folder: Path) -> str:
    """The figures of a ``cryofield landscape`` folder, embedded as PNG data URIs."""
    import base64

    landscape = Landscape.load(folder)
    states = landscape.states
    text = (f"{landscape.summary.get('particles', '?')} particles, a sketch of {len(landscape.sketch_pc)} maps, "
            f"{states.count} states ({html.escape(states.linkage)} linkage); "
            f"particle lists in <code>{html.escape(str(folder / states.folder))}/state_XXX.ind.txt</code>")
    figures = []
    for name, caption in _LANDSCAPE_FIGURES:
        if (folder / name).is_file():
            data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
            figures.append(f'<figure><img src="data:image/png;base64,{data}" alt="{name}">'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return (f'<h2 id="landscape">Landscape</h2>\n<p class="caption">{text}</p>\n'
            f'<div class="figures">{"".join(figures)}</div>')


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


def build_report(workdir: str | os.PathLike, *, analysis: str | os.PathLike | None = None,
                 fsc_files: list[str | os.PathLike] = (), traversals: list[str | os.PathLike] = (),
                 max_points: int = 20000, iso_percentile: float = 99.0, max_map_size: int = 128,
                 seed: int = 0) -> tuple[str, dict]:
    """The HTML page of a work directory, and what it holds.

    Parameters
    ----------
    workdir : str or PathLike
        A run's work directory (``config.json`` required).
    analysis : str or PathLike, optional
        Folder written by ``cryofield analyze`` (default ``WORKDIR/analysis`` when present).
    fsc_files : list of str or PathLike
        FSC text files besides the ``fsc*.txt`` found under ``workdir`` (see :func:`read_fsc`).
    traversals : list of str or PathLike
        Traversal folders besides those found under ``workdir`` (see :func:`find_traversals`).
    max_points : int
        At most this many particles in each scatter plot (a random subset, chosen by ``seed``).
    iso_percentile : float
        Iso-level of the map surfaces: this percentile (0-100) of the voxel values of all the
        maps of a set (one level per set).
    max_map_size : int
        Maps are block-averaged to at most this many voxels a side for their pictures.
    seed : int

    Returns
    -------
    page : str
        The HTML document.
    contents : dict
        ``particles`` (N, or 0 without an analysis), ``points`` (per scatter plot), ``spaces``,
        ``maps``, ``fsc`` (curves), ``epochs``.

    Raises
    ------
    InputError
        A missing work directory or ``config.json``; an input file that cannot be read or
        whose shape does not fit the others.
    """
    from plotly.offline import get_plotlyjs

    from cryofield import __version__

    workdir = Path(workdir)
    if not workdir.is_dir():
        raise InputError(workdir, "not a folder: give a run's work directory")
    if not WorkDir(workdir).config.is_file():
        raise InputError(workdir, "not a work directory (no config.json)")
    if max_points < 1:
        raise InputError(None, f"--max-points must be at least 1, got {max_points}")
    if not 0 <= iso_percentile <= 100:
        raise InputError(None, f"--iso-percentile must be in [0, 100], got {iso_percentile}")
    if max_map_size < 8:
        raise InputError(None, f"--max-map-size must be at least 8, got {max_map_size}")
    config = WorkDir(workdir).read_settings()
    run = WorkDir(workdir)
    records = run.read_log()
    analysis_dir = Path(analysis) if analysis is not None else run.analysis
    if analysis is not None and not analysis_dir.is_dir():
        raise InputError(analysis_dir, "not found")
    latents = _load_latents(analysis_dir, max_points, seed) if analysis_dir.is_dir() else None
    for path in map(Path, fsc_files):
        if not path.is_file():
            raise InputError(path, "not found")
    fsc = list(dict.fromkeys([*find_fsc_files(workdir), *map(Path, fsc_files)]))
    extra = list(traversals)
    if latents is not None and not analysis_dir.resolve().is_relative_to(workdir.resolve()):
        extra = [p.parent for p in sorted(analysis_dir.rglob("z_path.txt")) if numbered_maps(p.parent)] + extra
    groups = _groups(workdir, latents, find_traversals(workdir, extra))
    landscape_dir = run.landscape
    has_landscape = (landscape_dir / "summary.json").is_file()
    if has_landscape:
        groups += _landscape_groups(landscape_dir)

    sections = [_settings_section(config), _training_section(records)]
    nav = [("settings", "Settings"), ("training", "Training")]
    shown = 0
    if latents is not None:
        shown = min(latents.n, max_points)
        analysis_option = "" if analysis is None else f" --analysis {analysis_dir}"
        sections.append(_latent_section(latents, str(workdir), analysis_option, shown))
        nav.append(("latent", "Latent space"))
    else:
        sections.append('<h2 id="latent">Latent space</h2>\n<p class="muted">No analysis folder: run '
                        f"<code>cryofield analyze {html.escape(str(workdir))}</code> first.</p>")
    if has_landscape:
        sections.append(_landscape_section(landscape_dir))
        nav.append(("landscape", "Landscape"))
    if fsc:
        sections.append(_fsc_section(fsc, workdir))
        nav.append(("fsc", "FSC"))
    n_maps = 0
    map_parts = [g for g in groups if g.kind != "trajectory"]
    trajectory_parts = [g for g in groups if g.kind == "trajectory"]
    for anchor, title, chosen in (("maps", "Maps", map_parts), ("trajectories", "Trajectories", trajectory_parts)):
        if not chosen:
            continue
        rendered = []
        for group in chosen:
            text, count = _render_group(group, iso_percentile, max_map_size)
            rendered.append(text)
            n_maps += count
        sections.append(f'<h2 id="{anchor}">{title}</h2>\n' + "\n".join(rendered))
        nav.append((anchor, title))

    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    title = f"cryofield report: {workdir.resolve().name}"
    page = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        f"<script>{ERROR_CAPTURE_JS}</script>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">{html.escape(str(workdir))}; made {stamp} by cryofield {__version__} from the saved '
        "results. Self-contained: it needs no network.</p>",
        "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in nav) + "</nav>",
        *sections,
        '<pre class="selftest" id="selftest-status" hidden></pre><pre class="selftest" id="selftest-errors" hidden>'
        "</pre>",
        f"<script>{LATENT_JS}</script>",
        "</body></html>",
    ])
    contents = {"particles": 0 if latents is None else latents.n, "points": shown,
                "spaces": [] if latents is None else [s["space"] for s in latents.spaces],
                "maps": n_maps, "fsc": len(fsc), "epochs": len(records)}
    return page, contents


def write_report(workdir: str | os.PathLike, output: str | os.PathLike, **options) -> dict:
    """Write :func:`build_report`'s page to ``output`` atomically (a temporary file renamed at the end).

    Parameters
    ----------
    workdir : str or PathLike
    output : str or PathLike
        The ``.html`` file; its folder must exist.
    **options
        Passed to :func:`build_report`.

    Returns
    -------
    dict
        :func:`build_report`'s contents, plus ``bytes`` (the page's size).
    """
    from cryofield.io._atomic import atomic_outputs

    output = Path(output)
    if output.suffix.lower() not in (".html", ".htm"):
        raise InputError(output, "the report is an .html file; give a name ending in .html")
    if not output.parent.resolve().is_dir():
        raise InputError(output, "output folder does not exist")
    if output.is_dir():
        raise InputError(output, "is a folder; give the .html file to write")
    page, contents = build_report(workdir, **options)
    data = page.encode("utf-8")
    with atomic_outputs(output) as (temp,):
        temp.write_bytes(data)
    return {**contents, "bytes": len(data)}
