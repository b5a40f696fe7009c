"""The sections of the HTML report, each from what :mod:`cryofield.reports.sources` read."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io import Landscape
from cryofield.reports import views
from cryofield.reports.sources import MapGroup, _Latents, fsc_crossing, read_fsc

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5"]


_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
#: Largest side of the maps whose surfaces the report embeds for turning (about 160 KB a map at 48).
SURFACE_SIZE = 48




def _figure_html(fig, div_id: str) -> str:
    import plotly.io as pio

    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 40, "b": 50})
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=_PLOT_CONFIG,
                       default_height="360px")


def _settings_section(config: dict, source: str = "config.json") -> str:
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
    return (f'<h2 id="settings">Settings</h2>\n<p class="caption">{html.escape(source)}</p>\n'
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
    parts.append(_surface_figure(volumes, group, level))
    return "\n".join(parts), len(volumes)


def _surface_figure(volumes: list[np.ndarray], group: MapGroup, level: float) -> str:
    """The group's maps as surfaces to turn and zoom (one shown at a time, a slider to choose), at ``level``."""
    import hashlib

    import plotly.graph_objects as go

    traces = []
    for i, (volume, caption) in enumerate(zip(volumes, group.captions)):
        xyz, faces = views.isosurface_mesh(volume, level, SURFACE_SIZE)
        index = faces.astype(np.uint16) if len(xyz) < 2**16 else faces
        traces.append(go.Mesh3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], i=index[:, 0], j=index[:, 1], k=index[:, 2],
                                color="#9fb7d4", lighting={"ambient": 0.45, "diffuse": 0.8, "specular": 0.2},
                                hoverinfo="skip", name=caption, visible=i == 0))
    side = float(volumes[0].shape[0])
    steps = [{"method": "update", "label": str(i), "args": [{"visible": [j == i for j in range(len(traces))]},
                                                          {"title.text": group.captions[i]}]}
             for i in range(len(traces))]
    fig = go.Figure(traces)
    axis = {"range": [0, side], "title": {"text": ""}}
    fig.update_layout(title=group.captions[0] if group.captions else "", height=480,
                      scene={"aspectmode": "cube", "xaxis": {**axis, "title": {"text": "x"}},
                             "yaxis": {**axis, "title": {"text": "y"}}, "zaxis": {**axis, "title": {"text": "z"}}},
                      sliders=[{"steps": steps, "currentvalue": {"prefix": "map "}, "pad": {"t": 10}}]
                      if len(traces) > 1 else [])
    slug = hashlib.sha1(group.title.encode()).hexdigest()[:10]
    return ('<p class="caption">The same surfaces to turn (drag) and zoom (scroll); the slider picks the map.</p>'
            + f'<div class="surface">{_figure_html(fig, f"surface-{slug}")}</div>')


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
