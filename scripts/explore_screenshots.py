"""Screenshots of `cryofield explore` for the docs: latent space, a lasso selection, a map, a path.

    .venv/bin/python scripts/explore_screenshots.py RUN docs/explore/ [RUN_B]

Drives the page in headless Chromium (Debian's, through Playwright) the way a user would:
colour by cluster, lasso the left part of the plot, click a particle for its map, make a path
between two far-apart particles and play it. Writes latent.png, selection.png, map.png and
path.png into the folder; with a second run of the same particles also compare.png (the two
runs side by side, 6 clusters).
"""

import sys
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

from cryofield.explore import Explorer, ExplorerServer

TO_SCREEN = """([x, y]) => {
    const gd = document.getElementById("scatter"), full = gd._fullLayout;
    const box = gd.querySelector(".nsewdrag").getBoundingClientRect();
    return [box.left + full.xaxis.l2p(x), box.top + full.yaxis.l2p(y)];
}"""


def main(run: str, folder: str, run_b: str | None = None) -> None:
    """Write the screenshots of RUN (and of the comparison with RUN_B) into FOLDER."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    explorer = Explorer(run)
    server = ExplorerServer([explorer] + ([Explorer(run_b)] if run_b else [])).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=["--no-sandbox", "--enable-unsafe-swiftshader"])
            page = browser.new_page(viewport={"width": 1400, "height": 1150})
            page.goto(server.url)
            page.wait_for_selector(f"#scatter[data-points='{explorer.n}']", timeout=60000)
            x_axis, y_axis = page.input_value("#axis-x"), page.input_value("#axis-y")
            x, y = explorer.axis(x_axis), explorer.axis(y_axis)
            page.wait_for_timeout(500)
            page.screenshot(path=str(out / "latent.png"), full_page=True)

            def screen(row):
                return page.evaluate(TO_SCREEN, [float(x[row]), float(y[row])])

            def click(row):
                a, b = screen(row)
                page.mouse.move(a - 4, b - 4)
                page.mouse.move(a, b, steps=4)
                page.wait_for_timeout(300)
                page.mouse.down()
                page.mouse.up()

            cut = np.percentile(x, 35)
            corners = [(x.min(), y.min()), (cut, y.min()), (cut, y.max()), (x.min(), y.max())]
            pad = 0.02 * np.array([np.ptp(x), np.ptp(y)])
            corners = [np.array(c) + pad * s for c, s in zip(corners, [(-1, -1), (0, -1), (0, 1), (-1, 1)])]
            points = np.array([page.evaluate(TO_SCREEN, [float(a), float(b)]) for a, b in corners])
            page.mouse.move(*points[0])
            page.mouse.down()
            for start, end in zip(points, np.roll(points, -1, axis=0)):
                for t in np.linspace(0, 1, 8)[1:]:
                    page.mouse.move(*(start + t * (end - start)))
            page.mouse.up()
            page.wait_for_selector("#thumbnails img", timeout=30000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(out / "selection.png"), full_page=True)

            first, last = int(np.argmin(x)), int(np.argmax(x))
            click(first)
            page.wait_for_selector("#map-status[data-state='done']", timeout=120000)
            page.wait_for_timeout(800)
            page.screenshot(path=str(out / "map.png"), full_page=True)

            page.select_option("#click-mode", "start")
            click(first)
            page.wait_for_function("document.getElementById('click-mode').value === 'end'")
            click(last)
            page.wait_for_selector("#make-path:enabled")
            page.fill("#frames", "6")
            page.click("#make-path")
            page.wait_for_selector("#frame[data-frame='0']", timeout=300000)
            page.click("#play")
            page.wait_for_selector("#frame[data-frame='3']", timeout=60000)
            page.click("#play")
            page.wait_for_timeout(800)
            page.screenshot(path=str(out / "path.png"), full_page=True)
            if run_b:
                page.fill("#compare-k", "6")
                page.click("#compare")
                page.wait_for_selector("#compare-result:not([data-agreement=''])", timeout=120000)
                page.wait_for_timeout(800)
                page.locator("#compare-panel").screenshot(path=str(out / "compare.png"))
            browser.close()
    finally:
        server.close()
    print(f"wrote {out}/latent.png, selection.png, map.png, path.png" + (", compare.png" if run_b else ""))


if __name__ == "__main__":
    main(*sys.argv[1:4])
