"""Time the explorer's requests on a run (issue 27): opening, axes, colourings, a lasso, thumbnails, maps, a path.

    .venv/bin/python benchmarks/bench_explore.py RUN [--browser] [--maps 3]

Starts an ExplorerServer on RUN and times each request over HTTP as the page makes it; with
--browser also the page in headless Chromium (Debian's; software WebGL) until every point is
drawn. Maps: the first few particles' maps and their isosurfaces (``map_view``) directly.
"""

import argparse
import json
import time
import urllib.request
from urllib.parse import quote

from cryofield.explore import Explorer, ExplorerServer
from cryofield.explore.server import map_view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--maps", type=int, default=3)
    args = parser.parse_args()
    explorer = Explorer(args.run)
    server = ExplorerServer([explorer]).start()

    def call(path, body=None):
        request = urllib.request.Request(server.url + path, method="POST" if body else "GET",
                                         data=None if body is None else json.dumps(body).encode())
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            data = response.read()
        return time.perf_counter() - start, data

    try:
        seconds, data = call("api/runs")
        info = json.loads(data)[0]
        print(f"{info['particles']} particles, zdim {info['zdim']}, {info['box']} px")
        print(f"/api/runs (first): {seconds:.2f} s")
        x, y = info["default_axes"]
        for path in [f"api/0/axis/{quote(x)}", f"api/0/axis/{quote(y)}"] + [f"api/0/colour/{quote(c['name'])}"
                                                                           for c in info["colourings"][:3]]:
            seconds, data = call(path)
            print(f"{path}: {seconds:.3f} s, {len(data) / 1e6:.1f} MB")
        xs, ys = explorer.axis(x), explorer.axis(y)
        cut = float((xs.min() + xs.max()) / 2)
        polygon = [[float(xs.min()) - 1, float(ys.min()) - 1], [cut, float(ys.min()) - 1],
                   [cut, float(ys.max()) + 1], [float(xs.min()) - 1, float(ys.max()) + 1]]
        seconds, data = call("api/0/select", {"x": x, "y": y, "polygon": polygon})
        chosen = json.loads(data)
        print(f"lasso: {seconds:.2f} s, {chosen['count']} particles")
        seconds, _ = call(f"api/0/thumbnails?selection={chosen['name']}&page=1&per=24")
        print(f"24 thumbnails: {seconds:.2f} s")
        for row in range(args.maps):
            start = time.perf_counter()
            volume = explorer.volume(explorer.map_at_particle(row).id)
            rendered = time.perf_counter() - start
            start = time.perf_counter()
            view = map_view(volume, None, explorer.run.pixel_size)
            print(f"map {volume.shape[0]}^3 at particle {row}: {rendered:.2f} s; surface and slices "
                  f"{time.perf_counter() - start:.2f} s, {(len(view['vertices']) + len(view['faces'])) / 1e3:.0f} KB")
        seconds, data = call("api/0/path", {"start": 0, "end": explorer.n - 1, "frames": 6})
        print(f"path: {seconds:.2f} s ({json.loads(data)['how']})")
        if args.browser:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                     args=["--no-sandbox", "--enable-unsafe-swiftshader"])
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                start = time.perf_counter()
                page.goto(server.url)
                page.wait_for_selector(f"#scatter[data-points='{explorer.n}']", timeout=600000)
                print(f"page with {explorer.n} points drawn: {time.perf_counter() - start:.1f} s")
                browser.close()
    finally:
        server.close()


if __name__ == "__main__":
    main()
