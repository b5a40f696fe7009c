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
import os
from pathlib import Path

from cryofield.errors import InputError
from cryofield.io import LatentPath, WorkDir
from cryofield.reports._assets import CSS, ERROR_CAPTURE_JS, FIT_FIGURES_JS, LATENT_JS
from cryofield.reports.sections import (
    _fsc_section,
    _landscape_section,
    _latent_section,
    _render_group,
    _settings_section,
    _training_section,
)
from cryofield.reports.sources import (
    _groups,
    _landscape_groups,
    _load_latents,
    find_fsc_files,
    find_traversals,
    fsc_crossing,
    read_fsc,
)

__all__ = ["build_report", "fsc_crossing", "read_fsc", "write_report"]


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
    workdir = Path(workdir)
    run = _checked(workdir, max_points, iso_percentile, max_map_size)
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
        extra = [p.parent for p in sorted(analysis_dir.rglob("z_path.txt")) if LatentPath.found_in(p.parent)] + extra
    groups = _groups(workdir, latents, find_traversals(workdir, extra))
    has_landscape = (run.landscape / "summary.json").is_file()
    if has_landscape:
        groups += _landscape_groups(run.landscape)

    source = "cryoDRGN's config.yaml, under cryofield's names" if run.is_cryodrgn() else "config.json"
    sections = [("settings", "Settings", _settings_section(run.read_settings(), source)),
                ("training", "Training", _training_section(records))]
    shown = 0 if latents is None else min(latents.n, max_points)
    if latents is not None:
        analysis_option = "" if analysis is None else f" --analysis {analysis_dir}"
        sections.append(("latent", "Latent space", _latent_section(latents, str(workdir), analysis_option, shown)))
    else:
        sections.append((None, None, '<h2 id="latent">Latent space</h2>\n<p class="muted">No analysis folder: run '
                                     f"<code>cryofield analyze {html.escape(str(workdir))}</code> first.</p>"))
    if has_landscape:
        sections.append(("landscape", "Landscape", _landscape_section(run.landscape)))
    if fsc:
        sections.append(("fsc", "FSC", _fsc_section(fsc, workdir)))
    map_sections, n_maps = _map_sections(groups, iso_percentile, max_map_size)
    page = _page(workdir, sections + map_sections)
    contents = {"particles": 0 if latents is None else latents.n, "points": shown,
                "spaces": [] if latents is None else [s["space"] for s in latents.spaces],
                "maps": n_maps, "fsc": len(fsc), "epochs": len(records)}
    return page, contents


def _checked(workdir: Path, max_points: int, iso_percentile: float, max_map_size: int) -> WorkDir:
    """The run's work directory, or an :class:`InputError` for it or for an option out of range."""
    if not workdir.is_dir():
        raise InputError(workdir, "not a folder: give a run's work directory")
    if not WorkDir(workdir).config.is_file() and not WorkDir(workdir).is_cryodrgn():
        raise InputError(workdir, "not a work directory (no config.json, nor cryoDRGN's config.yaml)")
    if max_points < 1:
        raise InputError(None, f"--max-points must be at least 1, got {max_points}")
    if not 0 <= iso_percentile <= 100:
        raise InputError(None, f"--iso-percentile must be in [0, 100], got {iso_percentile}")
    if max_map_size < 8:
        raise InputError(None, f"--max-map-size must be at least 8, got {max_map_size}")
    return WorkDir(workdir)


def _map_sections(groups: list, iso_percentile: float, max_map_size: int) -> tuple[list[tuple], int]:
    """The "Maps" and "Trajectories" sections, ``(anchor, title, html)`` each, and the number of maps shown."""
    n_maps, sections = 0, []
    for anchor, title, trajectory in (("maps", "Maps", False), ("trajectories", "Trajectories", True)):
        chosen = [g for g in groups if (g.kind == "trajectory") == trajectory]
        if not chosen:
            continue
        rendered = []
        for group in chosen:
            text, count = _render_group(group, iso_percentile, max_map_size)
            rendered.append(text)
            n_maps += count
        sections.append((anchor, title, f'<h2 id="{anchor}">{title}</h2>\n' + "\n".join(rendered)))
    return sections, n_maps


def _page(workdir: Path, sections: list[tuple[str | None, str | None, str]]) -> str:
    """The HTML document: the sections ``(anchor, title, html)``, linked from the navigation where titled."""
    from plotly.offline import get_plotlyjs

    from cryofield import __version__

    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    title = f"cryofield report: {workdir.resolve().name}"
    return "\n".join([
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
        "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t, _ in sections if a) + "</nav>",
        *(text for _, _, text in sections),
        '<pre class="selftest" id="selftest-status" hidden></pre><pre class="selftest" id="selftest-errors" hidden>'
        "</pre>",
        f"<script>{LATENT_JS}</script>",
        f"<script>{FIT_FIGURES_JS}</script>",
        "</body></html>",
    ])


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
