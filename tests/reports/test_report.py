import base64
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from cryofield.cli.main import main
from cryofield.errors import InputError
from cryofield.io import write_map
from cryofield.reports import views
from cryofield.reports.html import build_report, fsc_crossing, read_fsc

N = 300
BOX = 16


def _blob_map(centre, box=BOX, width=2.0):
    grid = np.arange(box) - box // 2
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    return np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) / (2 * width ** 2))


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A work directory as train-vae and analyze leave it, faked: 300 particles in 3 clusters, 2-D latents."""
    rng = np.random.default_rng(0)
    run = tmp_path_factory.mktemp("report") / "run"
    analysis = run / "analysis"
    (analysis / "kmeans3").mkdir(parents=True)
    (analysis / "pc1").mkdir()
    labels = np.arange(N) % 3
    z = rng.normal(size=(N, 2)) * 0.3 + np.array([[-2, 0], [2, 0.5], [0, 2.5]])[labels]
    np.save(run / "z.npy", z)
    config = {"particles": "particles.star", "outdir": str(run), "zdim": 2, "epochs": 3, "batch_size": 16,
              "lr": 0.0001, "ind": None, "box": BOX, "data_pixel_size": 4.25, "versions": {"cryofield": "0.1.0"}}
    (run / "config.json").write_text(json.dumps(config, indent=2))
    (run / "log.jsonl").write_text("".join(json.dumps({"epoch": e, "mse": 1.0 / (e + 1), "kl": 0.1 * e, "seconds": 1.5,
                                                       "images_per_second": 200.0 + e}) + "\n" for e in range(3)))
    mean = z.mean(0)
    _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
    np.save(analysis / "z_pca.npy", (z - mean) @ vt.T)
    np.save(analysis / "z_umap.npy", (z * [1.5, -0.7] + 3).astype(np.float32))
    np.save(analysis / "z_norm.npy", np.linalg.norm(z, axis=1))
    (analysis / "pca.json").write_text(json.dumps({"explained_variance_ratio": (s ** 2 / (s ** 2).sum()).tolist(),
                                                   "components": vt.tolist(), "mean": mean.tolist()}))
    centres = [int(np.flatnonzero(labels == k)[0]) for k in range(3)]
    np.save(analysis / "kmeans3/labels.npy", labels)
    np.savetxt(analysis / "kmeans3/counts.txt", np.bincount(labels), fmt="%d")
    for k in range(3):
        write_map(analysis / f"kmeans3/vol_{k:03d}.mrc", _blob_map((3 * k - 3, 0, 0)), 4.25)
    np.savetxt(analysis / "pc1/z_path.txt", np.linspace(z.min(0), z.max(0), 4))
    for j in range(4):
        write_map(analysis / f"pc1/vol_{j:03d}.mrc", _blob_map((0, 2 * j - 3, 0)), 4.25)
    (analysis / "summary.json").write_text(json.dumps({
        "particles": N, "zdim": 2, "seed": 0, "explained_variance_ratio": (s ** 2 / (s ** 2).sum()).tolist(),
        "kmeans3": {"counts": np.bincount(labels).tolist(), "centers_row": centres, "centers_ind": centres},
        "pc1": {"points": 4, "percentiles": [5, 95]}}))
    freqs = np.arange(1, 9) / (BOX * 4.25)
    np.savetxt(run / "fsc.txt", np.column_stack([freqs, np.linspace(1, -0.1, 8)]), fmt="%.6f",
               header="freq_1/A  fsc")
    return run


def _latent_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="latent-data">(.*?)</script>', page, re.S)
    assert match, "no latent data in the page"
    return json.loads(match.group(1))


def test_report_page_is_complete_and_self_contained(fake_run, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(fake_run), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    page = out.read_text()
    assert not list(tmp_path.glob(".*part*"))
    # nothing fetched at view time: no script or style sheet by address, no external image or import in the
    # markup (the scripts' own text, plotly.js, holds link strings for map tiles that this page never draws)
    assert not re.search(r"<script[^>]*\ssrc\s*=|<link[\s>]", page, re.I)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S | re.I)
    assert "<script" not in markup and "</script>" not in markup
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", markup, re.I)
    assert not re.search(r"""@import|url\(\s*["']?\s*(?:https?:)?//""", markup, re.I)
    assert "plotly.js v" in page and len(page) > 3_000_000  # plotly.js inline
    # the settings and the training log
    assert '<td class="key">batch_size</td><td class="value">16</td>' in page
    assert "cryofield 0.1.0" in page and "3 epochs" in page
    # the scatter data: every particle, exact coordinates, the k-means labels
    data = _latent_data(page)
    assert [s["space"] for s in data["spaces"]] == ["pca", "umap"] and data["particles"] == N
    z_pca, z_umap = np.load(fake_run / "analysis/z_pca.npy"), np.load(fake_run / "analysis/z_umap.npy")
    labels = np.load(fake_run / "analysis/kmeans3/labels.npy")
    for space, xy in zip(data["spaces"], (z_pca, z_umap)):
        assert len(space["x"]) == len(space["y"]) == N
        np.testing.assert_array_equal(np.array([space["x"], space["y"]]).T, xy.astype(np.float64))
        np.testing.assert_array_equal(space["cluster"], labels)
    assert 'id="download-pca"' in page and "Download selection polygon" in page
    assert f"cryofield filter {fake_run} --polygon selection.json -o selected.ind.txt" in page
    # the FSC curve and its crossing
    assert "fsc.txt (fsc): FSC 0.143:" in page
    # 3 centre maps + 4 traversal maps (one picture each) + the traversal's 4 strips
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', markup)
    assert len(images) == 3 + 4 + 4
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "kmeans3/vol_002.mrc: cluster 2, 100 particles, centre particle 2" in page
    assert "PC1 = " in page and "99th percentile" in page
    # each map set also as surfaces to turn: one mesh per map, a slider to choose
    assert len(re.findall(r'id="surface-[0-9a-f]{10}"', markup)) == 2
    assert page.count('"color":"#9fb7d4"') == 3 + 4  # the surfaces' colour


def test_isosurface_mesh_lies_on_the_blob():
    """Vertices in A, x/y/z from the box corner, on the level's sphere around the blob; binning keeps the frame."""
    volume = _blob_map((3, -2, 1), box=32)  # x, y, z offsets from the centre voxel 16
    level = float(np.exp(-2.0))  # exp(-r^2 / 8) there: the sphere of radius 4 voxels
    for max_size, tolerance in ((32, 0.15), (16, 0.8)):
        vertices, faces = views.isosurface_mesh(volume, level, max_size, apix=1.5)
        assert faces.max() < len(vertices) and len(faces) > 20
        centre = np.array([16 + 3, 16 - 2, 16 + 1]) * 1.5
        np.testing.assert_allclose(vertices.mean(0), centre, atol=tolerance * 1.5)
        radii = np.linalg.norm(vertices - centre, axis=1) / 1.5
        assert abs(np.median(radii) - 4.0) < 0.3 + tolerance
    empty, none = views.isosurface_mesh(volume, 2.0)
    assert empty.shape == (0, 3) and none.shape == (0, 3)


def test_report_subsamples_with_exact_coordinates(fake_run):
    page, contents = build_report(fake_run, max_points=50, seed=3)
    assert contents["points"] == 50 and contents["particles"] == N and contents["maps"] == 7
    space = _latent_data(page)["spaces"][0]
    rows = np.asarray(space["row"])
    assert len(rows) == 50 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(space["x"], np.load(fake_run / "analysis/z_pca.npy")[rows, 0])
    assert _latent_data(build_report(fake_run, max_points=50, seed=3)[0])["spaces"][0]["row"] == rows.tolist()
    assert "50 shown" in page


def test_report_of_a_run_without_analysis(fake_run, tmp_path):
    run = tmp_path / "homogeneous"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"particles": "p.star", "outdir": str(run), "zdim": 0}))
    write_map(run / "volume.mrc", _blob_map((0, 0, 0)), 2.0)
    traversal = shutil.copytree(fake_run / "analysis/pc1", tmp_path / "elsewhere")
    page, contents = build_report(run, traversals=[traversal])
    assert contents == {"particles": 0, "points": 0, "spaces": [], "maps": 1 + 4, "fsc": 0, "epochs": 0}
    assert "No analysis folder" in page and "No log.jsonl" in page and 'id="latent-data"' not in page
    assert "volume.mrc" in page and f"trajectory {traversal}" in page and "sum along z" in page
    with pytest.raises(InputError, match="not a traversal folder"):
        build_report(run, traversals=[tmp_path])
    # an analysis folder outside the run: its traversals are found, the filter command names it
    analysis = shutil.copytree(fake_run / "analysis", tmp_path / "analysis_refined")
    page, contents = build_report(run, analysis=analysis)
    assert contents["points"] == N and contents["maps"] == 1 + 3 + 4
    assert f"--analysis {analysis} --polygon selection.json" in page and f"trajectory {analysis / 'pc1'}" in page


def test_report_bad_input_exits_2_and_writes_nothing(fake_run, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "-o", str(out)]) == 2
    assert "no config.json" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(fake_run, broken)
    with open(broken / "log.jsonl", "a") as fh:
        fh.write("{not json\n")
    assert main(["report", str(broken), "-o", str(out)]) == 2
    assert "line 4 is not JSON" in capsys.readouterr().err
    (broken / "log.jsonl").unlink()
    np.save(broken / "analysis/kmeans3/labels.npy", np.zeros(10, np.int64))
    assert main(["report", str(broken), "-o", str(out)]) == 2
    assert "10 cluster labels for 300 particles" in capsys.readouterr().err
    np.save(broken / "analysis/kmeans3/labels.npy", np.load(fake_run / "analysis/kmeans3/labels.npy"))
    (broken / "analysis/pc1/vol_001.mrc").write_bytes(b"not a map")
    assert main(["report", str(broken), "-o", str(out)]) == 2
    assert "vol_001.mrc" in capsys.readouterr().err
    assert main(["report", str(fake_run), "--fsc", str(tmp_path / "nofsc.txt"), "-o", str(out)]) == 2
    assert main(["report", str(fake_run), "-o", str(fake_run / "config.json")]) == 2
    assert "give a name ending in .html" in capsys.readouterr().err
    assert main(["report", str(fake_run), "-o", str(tmp_path / "nofolder/r.html")]) == 2
    assert "output folder does not exist" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".*part*"))


def test_read_fsc_both_formats(tmp_path):
    freqs = np.linspace(0.01, 0.2, 10)
    curve = np.linspace(1, 0, 10)
    np.savetxt(tmp_path / "a.txt", np.column_stack([freqs, curve]), fmt="%.6f", header="freq_1/A  fsc")
    np.savetxt(tmp_path / "b.txt", np.column_stack([np.arange(10), freqs, 1 / freqs, curve]),
               fmt=["%d", "%.6f", "%.3f", "%.6f"], header="shell  freq_1/A  resolution_A  fsc_half_maps")
    for name, column in (("a.txt", "fsc"), ("b.txt", "fsc_half_maps")):
        f, c, label = read_fsc(tmp_path / name)
        np.testing.assert_allclose(f, freqs, atol=1e-6)
        np.testing.assert_allclose(c, curve, atol=1e-6)
        assert label == column
    assert fsc_crossing(freqs, curve, 0.5) == pytest.approx(0.01 + 0.5 * 0.19)
    assert fsc_crossing(freqs, np.ones(10), 0.143) is None


def test_map_views():
    volume = _blob_map((3, 0, 0), box=16)  # a blob at +x
    slices, sums = views.central_slices(volume), views.projections(volume)
    assert [s.shape for s in slices] == [(16, 16)] * 3
    assert np.allclose([s.sum() for s in sums], volume.sum())
    assert np.argmax(sums[0].max(0)) == 8 + 3  # x to the right
    assert views.bin_volume(np.ones((40, 40, 40)), 16).shape == (13, 13, 13)
    image = views.render_isosurface(volume, 0.5, rotation=np.eye(3))
    assert image.shape == (16, 16, 3)
    hit = ~np.all(image == 1.0, axis=2)
    assert hit[16 - 1 - 8, 8 + 3] and not hit[0, 0] and 4 <= hit.sum() <= 40  # top row is y = +7
    assert views.png_data_uri(image).startswith("data:image/png;base64,")


def test_report_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--help"])
    assert exit_info.value.code == 0
    assert "cryofield filter run/ --polygon selection.json" in capsys.readouterr().out


def _chromium() -> str | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None and os.environ.get("CI"):
        pytest.fail("no chromium on PATH: `make browser` installs Debian's package, and CI must run the browser tests")
    return browser


def test_every_figure_fits_its_box(fake_run, tmp_path):
    """Figures drawn side by side fit their column (the demo's kmeans6 chart showed 2 of 6 bars)."""
    from playwright.sync_api import sync_playwright

    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no chromium or chromium-browser on PATH: the headless browser test needs one")
    out = tmp_path / "report.html"
    assert main(["report", str(fake_run), "-o", str(out)]) == 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(out.resolve().as_uri())
        page.wait_for_load_state("load")
        page.wait_for_timeout(500)
        sizes = page.evaluate("""() => Array.from(document.querySelectorAll(".plotly-graph-div"),
            (div) => [div.id, div._fullLayout.width, div.parentElement.getBoundingClientRect().width])""")
        browser.close()
    assert {"cluster-counts", "explained-variance", "z-norm"} <= {name for name, _, _ in sizes}
    for name, drawn, box in sizes:
        assert drawn <= box + 1, (name, drawn, box)


@pytest.mark.parametrize("webgl", [True, False], ids=["webgl", "svg"])
def test_report_selftest_in_headless_browser(fake_run, tmp_path, capsys, webgl):
    """The page's own #selftest fires a lasso on PCA and a box on UMAP through the user's handlers."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium or chromium-browser on PATH: the headless browser test needs one")
    from cryofield.analysis.selection import polygon_mask

    out = tmp_path / "report.html"
    assert main(["report", str(fake_run), "-o", str(out)]) == 0
    # WebGL in software (scattergl traces), or none at all (the page falls back to SVG scatter traces)
    graphics = ["--enable-unsafe-swiftshader"] if webgl else ["--disable-webgl"]
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", *graphics,
                             "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0",
                             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                             out.resolve().as_uri() + "#selftest"],
                            capture_output=True, text=True, timeout=120)
    dom = result.stdout
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not [line for line in console if re.search(r"Uncaught|error", line, re.I)], console
    status = re.search(r'<pre class="selftest" id="selftest-status"[^>]*data-trace="(\w+)"[^>]*>(.*?)</pre>', dom,
                       re.S)
    assert status and status.group(2) == "ok", (status and status.group(2), result.stderr[-2000:])
    assert status.group(1) == ("scattergl" if webgl else "scatter")
    errors = re.search(r'id="selftest-errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert errors and errors.group(1).strip() == ""
    z_pca, z_umap = np.load(fake_run / "analysis/z_pca.npy"), np.load(fake_run / "analysis/z_umap.npy")
    # a synthetic plotly_selected event (lasso on PCA, box on UMAP), then a lasso drawn with mouse events
    for kind, space, xy, n_vertices in (("output", "pca", z_pca, 8), ("output", "umap", z_umap, 4),
                                        ("drag", "pca", z_pca, None), ("drag", "umap", z_umap, None)):
        match = re.search(rf'id="selftest-{kind}-{space}"([^>]*)>(.*?)</pre>', dom, re.S)
        assert match, f"no self-test {kind} for {space}"
        attributes, text = dict(re.findall(r'data-(\w+)="(\d+)"', match.group(1))), match.group(2)
        count, shown = int(attributes["count"]), int(attributes["shown"])
        polygon = json.loads(text)
        assert set(polygon) == {"space", "vertices"} and polygon["space"] == space and shown == N
        assert len(polygon["vertices"]) == n_vertices if n_vertices else len(polygon["vertices"]) >= 8
        expected = np.flatnonzero(polygon_mask(xy, np.asarray(polygon["vertices"])))
        assert count == len(expected) and 0 < count < N
        # the file the button saves is what `cryofield filter --polygon` reads
        (tmp_path / f"{space}.json").write_text(text)
        chosen = tmp_path / f"{kind}-{space}.ind.txt"
        assert main(["filter", str(fake_run), "--polygon", str(tmp_path / f"{space}.json"), "-o", str(chosen)]) == 0
        np.testing.assert_array_equal(np.loadtxt(chosen, dtype=int, ndmin=1), expected)
        assert f"selected {len(expected)} of {N} particles" in capsys.readouterr().out


def test_names_that_look_like_markup_are_shown_as_text(tmp_path):
    """A run folder, settings and labels named like HTML stay text in the page (issue 23's security item)."""
    from cryofield.cli.main import main
    from cryofield.simulate.toy import make_toy_dataset

    hostile = "<img src=x onerror=alert(1)>"
    toy = make_toy_dataset(tmp_path / f"data{hostile}", n=40, box=16, apix=6.0, snr=20, seed=3)["star"]
    out = tmp_path / f"run{hostile}"
    assert main(["train-vae", str(toy), "-o", str(out), "--zdim", "2", "-n", "1", "--enc-dim", "16", "--dec-dim",
                 "16", "--enc-layers", "1", "--dec-layers", "1"]) == 0
    assert main(["analyze", str(out), "--ksample", "3", "--pc-points", "2", "--no-umap"]) == 0
    assert main(["report", str(out), "-o", str(tmp_path / "page.html")]) == 0
    page = (tmp_path / "page.html").read_text()
    assert hostile not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # shown, escaped
