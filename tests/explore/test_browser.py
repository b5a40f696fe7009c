"""The explorer end to end in headless Chromium (issue 27, item 8): load, colour, lasso, export, map, path.

Chromium is Debian's package (``make browser`` installs it), driven by Playwright (a dev
dependency) through its own executable, so nothing is downloaded. Set
``CRYOFIELD_SCREENSHOTS=DIR`` to keep a screenshot of each view (``docs/explore/`` holds them).
"""

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from cryofield.explore import Explorer, ExplorerServer
from cryofield.io import read_particles


def _chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium on PATH: `make browser` installs Debian's package, and CI must run this test")
        pytest.skip("no chromium or chromium-browser on PATH (`make browser` installs it)")
    return browser


@contextlib.contextmanager
def _explorer_page(*runs):
    """A headless Chromium tab on an explorer of ``runs``; fails on any script error in the page."""
    from playwright.sync_api import sync_playwright

    server = ExplorerServer([Explorer(run) for run in runs]).start()
    errors = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=_chromium(),
                                                 args=["--no-sandbox", "--enable-unsafe-swiftshader"])
            tab = browser.new_page(viewport={"width": 1400, "height": 1150})
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.goto(server.url)
            tab.server = server
            yield tab
            browser.close()
    finally:
        server.close()
    assert not errors, errors


@pytest.fixture
def page(toy_run):
    with _explorer_page(toy_run) as tab:
        yield tab


def _shot(page, name: str) -> None:
    folder = os.environ.get("CRYOFIELD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _to_screen(page, x: float, y: float) -> tuple[float, float]:
    """Page pixels of data coordinates (x, y) on the scatter."""
    return tuple(page.evaluate("""([x, y]) => {
        const gd = document.getElementById("scatter"), full = gd._fullLayout;
        const box = gd.querySelector(".nsewdrag").getBoundingClientRect();
        return [box.left + full.xaxis.l2p(x), box.top + full.yaxis.l2p(y)];
    }""", [x, y]))


def _click(page, x: float, y: float) -> None:
    """Hover a particle until plotly has it under the pointer, then click it."""
    a, b = _to_screen(page, x, y)
    page.mouse.move(a - 4, b - 4)
    page.mouse.move(a, b, steps=4)
    page.wait_for_timeout(300)
    page.mouse.down()
    page.mouse.up()


def test_load_colour_lasso_export_map_and_path(page, toy_run, star_of):
    explorer = page.server.explorers[0]
    page.wait_for_selector("#scatter[data-points='300']", timeout=30000)
    assert page.input_value("#colour") == "cluster:kmeans3"
    page.select_option("#colour", "defocus")
    page.wait_for_selector("#scatter[data-colour='defocus']")
    page.select_option("#colour", "cluster:kmeans3")
    page.wait_for_selector("#scatter[data-colour='cluster:kmeans3']")
    _shot(page, "latent")

    # a lasso drawn with the mouse around the left half of the PCA plot
    x, y = explorer.axis("pc1"), explorer.axis("pc2")
    corners = [(x.min() - 0.01, y.min() - 0.01), (np.median(x), y.min() - 0.01), (np.median(x), y.max() + 0.01),
               (x.min() - 0.01, y.max() + 0.01)]
    points = np.array([_to_screen(page, float(a), float(b)) for a, b in corners])
    page.mouse.move(*points[0])
    page.mouse.down()
    for start, end in zip(points, np.roll(points, -1, axis=0)):
        for t in np.linspace(0, 1, 6)[1:]:
            page.mouse.move(*(start + t * (end - start)))
    assert page.inner_text("#selection-count").startswith("selecting: ")  # counted live, before the release
    page.mouse.up()
    page.wait_for_selector("#selection-count[data-name='sel1']", timeout=20000)
    count = int(page.get_attribute("#selection-count", "data-count"))
    chosen = explorer.selection("sel1")
    assert count == len(chosen) and 100 < count < 200  # about half of them
    assert set(chosen) <= set(np.flatnonzero(x <= np.median(x) + 1e-6))
    page.wait_for_selector("#thumbnails img")
    _shot(page, "selection")

    # export as .star: the rows of the selection, as `select` writes them
    page.fill("#export-name", "lassoed")
    page.click("#export")
    page.wait_for_selector("#exports a:text('lassoed.star')")
    exported = read_particles(toy_run / "explore/lassoed.star")
    table = read_particles(star_of)
    np.testing.assert_array_equal(exported.record.star_rows()["rlnImageName"].to_numpy(),
                                  table.record.star_rows()["rlnImageName"].to_numpy()[chosen])

    # a click on a particle: its map as an isosurface (a drawn WebGL canvas) and three slices
    row = int(chosen[0])
    _click(page, float(x[row]), float(y[row]))
    page.wait_for_selector("#map-status[data-state='done']", timeout=60000)
    assert int(page.get_attribute("#mesh", "data-faces")) > 50
    assert page.evaluate("""() => {
        const canvas = document.querySelector("#mesh canvas");
        const gl = canvas && (canvas.getContext("webgl") || canvas.getContext("experimental-webgl"));
        return !!canvas && canvas.width > 100 && !!gl;
    }""")
    assert page.locator("#slices img").count() == 3
    assert page.get_attribute("#download", "href").endswith("/mrc")
    _shot(page, "map")

    # a path between two particles, played as a movie
    page.select_option("#click-mode", "start")
    far = int(np.argmax((x - x[row]) ** 2 + (y - y[row]) ** 2))
    _click(page, float(x[row]), float(y[row]))
    page.wait_for_function("document.getElementById('click-mode').value === 'end'")
    _click(page, float(x[far]), float(y[far]))
    page.wait_for_selector("#make-path:enabled")
    page.fill("#frames", "4")
    page.click("#make-path")
    page.wait_for_selector("#frame[data-frame='0']", timeout=90000)
    page.click("#play")
    page.wait_for_selector("#frame[data-frame='2']", timeout=30000)
    page.click("#play")
    page.click("#chimerax")
    page.wait_for_selector("#exports a:text('maps.cxc')")
    assert "vseries true" in (toy_run / "explore/maps.cxc").read_text()
    _shot(page, "path")

    # the commands that go on from here, once the selection is exported as indices
    page.select_option("#export-format", "txt")
    page.click("#export")
    page.wait_for_selector("#exports a:text('lassoed.txt')")
    page.wait_for_function("document.getElementById('commands').textContent.includes('lassoed.txt')")
    commands = page.inner_text("#commands")
    assert f"cryofield select {star_of} --ind {toy_run}/explore/lassoed.txt -o lassoed.star" in commands
    assert "export the selection as .txt first" not in commands and "graph-traversal" in commands

    # a 3-D view of three axes, and every pair of latent dimensions
    page.select_option("#axis-z", "|z|")
    page.wait_for_selector("#scatter[data-view='3d'] canvas")
    page.select_option("#click-mode", "map")
    page.evaluate("() => document.getElementById('scatter').emit('plotly_click', "
                  "{points: [{curveNumber: 0, pointNumber: 7}]})")  # what plotly sends for a picked point
    page.wait_for_function("document.getElementById('map-status').textContent.startsWith('particle 7 ')")
    page.click("#pairs")
    page.wait_for_selector("#pairs-plot[data-panels='1']")


def test_two_runs_side_by_side_and_saved_maps(toy_run, toy_run_b):
    from cryofield.explore.session import compare

    with _explorer_page(toy_run, toy_run_b) as page:
        page.wait_for_selector("#scatter[data-points='300']", timeout=30000)
        assert page.is_visible("#compare-panel")
        page.fill("#compare-k", "4")
        page.click("#compare")
        page.wait_for_selector("#compare-result:not([data-agreement=''])", timeout=30000)
        shown = float(page.get_attribute("#compare-result", "data-agreement"))
        a, b = page.server.explorers
        assert shown == pytest.approx(compare(a, b, k=4)["agreement"])
        matrix = page.evaluate("() => document.getElementById('compare-matrix').data[0]")
        assert matrix["type"] == "heatmap" and sum(map(sum, matrix["z"])) == 300
        assert page.locator("#compare-matrix svg .hm image").count() == 1  # the heatmap drawn
        assert page.locator("#compare-scatter-b canvas").count() > 0
        # a landscape state from the saved maps, then the volume PC's maps played as a movie
        page.select_option("#saved-group", "landscape states")
        page.click("#saved-maps button:text('2')")
        page.wait_for_selector("#map-status[data-state='done']", timeout=30000)
        assert int(page.get_attribute("#mesh", "data-faces")) > 0
        page.select_option("#saved-group", "volume PC1")
        page.click("#play-saved")
        page.wait_for_selector("#frame[data-frame='2']", timeout=30000)
        page.click("#play")
        _shot(page, "compare")
        # the other run: its own scatter, nothing of the first run's path or selection left
        page.select_option("#run", index=1)
        page.wait_for_function("document.getElementById('run-summary').textContent.includes('run_b')")
        page.wait_for_selector("#scatter[data-points='300']")
        assert page.is_disabled("#play") and page.inner_text("#path-ends") == "start: – end: –"
        assert "no analysis yet" in page.inner_text("#notes")
