"""The explorer's HTTP API (issue 27): runs, binary axes, selections, export, maps, meshes, tokens, offline assets."""

import base64
import time

import numpy as np
import pytest
from starlette.testclient import TestClient

from cryofield.cli.main import main
from cryofield.explore import Explorer, create_app
from cryofield.explore.server import ExplorerServer, bind, map_view, plotly_js


@pytest.fixture
def client(toy_run):
    e = Explorer(toy_run)
    with TestClient(create_app([e])) as c:
        c.explorer = e
        yield c
    e.close()


def _wait(client, job):
    while job["state"] in ("queued", "running"):
        time.sleep(0.05)
        job = client.get(f"/api/0/map/{job['id']}").json()
    return job


def test_page_and_assets_are_served_from_installed_packages(client):
    page = client.get("/")
    assert page.status_code == 200 and 'src="vendor/plotly.min.js"' in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    script = client.get("/vendor/plotly.min.js")
    assert script.status_code == 200 and len(script.content) == plotly_js().stat().st_size
    assert client.get("/static/explorer.js").status_code == 200


def test_runs_axes_selection_and_export(client, toy_run):
    runs = client.get("/api/runs").json()
    assert runs[0]["particles"] == 300 and runs[0]["default_axes"] == ["pc1", "pc2"]
    x = np.frombuffer(client.get("/api/0/axis/pc1").content, "<f4")
    np.testing.assert_allclose(x, client.explorer.axis("pc1"))
    colour = client.get("/api/0/colour/cluster:kmeans3")
    assert colour.headers["X-Kind"] == "category" and len(colour.content) == 4 * 300
    polygon = [[-9, -9], [0, -9], [0, 9], [-9, 9]]
    chosen = client.post("/api/0/select", json={"x": "pc1", "y": "pc2", "polygon": polygon}).json()
    expected = client.explorer.select_polygon("pc1", "pc2", polygon)
    assert chosen["count"] == len(expected) > 0
    rows = np.frombuffer(client.get(f"/api/0/selection/{chosen['name']}").content, "<i4")
    np.testing.assert_array_equal(rows, expected)
    written = client.post("/api/0/export", json={"selection": chosen["name"], "name": "api", "format": "star"})
    assert written.status_code == 200 and written.json()["files"] == ["api.star"]
    assert client.get("/api/0/files/api.star").text == (toy_run / "explore/api.star").read_text()
    bad = client.post("/api/0/export", json={"selection": chosen["name"], "name": "../../x", "format": "txt"})
    assert bad.status_code == 400 and "not a usable name" in bad.json()["error"]
    assert client.get("/api/0/files/..%2Fconfig.json").status_code == 404
    assert client.get("/api/0/axis/nonsense").status_code == 404
    assert client.post("/api/0/select", content=b"not json").status_code == 400
    pages = client.get(f"/api/0/thumbnails?selection={chosen['name']}&page=0&per=5").json()
    assert pages["total"] == len(expected) and len(pages["items"]) == min(5, len(expected))


def test_maps_meshes_and_downloads(client, toy_run):
    job = _wait(client, client.post("/api/0/map", json={"row": 12}).json())
    assert job["state"] == "done" and "particle 12" in job["label"]
    view = client.get(f"/api/0/map/{job['id']}/mesh").json()
    vertices = np.frombuffer(base64.b64decode(view["vertices"]), "<f4").reshape(-1, 3)
    faces = np.frombuffer(base64.b64decode(view["faces"]), "<i4").reshape(-1, 3)
    assert len(faces) > 50 and faces.max() < len(vertices) and 0 <= vertices.min() and vertices.max() <= 24 * 4.0
    assert view["level"] == pytest.approx(view["levels"]["99"]) and len(view["slices"]) == 3
    lower = client.get(f"/api/0/map/{job['id']}/mesh?level={view['levels']['90']}").json()
    assert len(base64.b64decode(lower["faces"])) > len(base64.b64decode(view["faces"]))  # more surface
    mrc = client.get(f"/api/0/map/{job['id']}/mrc")
    assert mrc.status_code == 200 and mrc.content == client.explorer.map_path(job["id"]).read_bytes()
    path = client.post("/api/0/path", json={"start": 0, "end": 5, "frames": 3}).json()
    assert len(path["maps"]) == 3 and path["rows"][0] == 0
    ids = [_wait(client, j)["id"] for j in path["maps"]]
    script = client.post("/api/0/chimerax", json={"maps": ids, "name": "movie"}).json()
    assert script["file"] == "movie.cxc" and "movie.cxc" in script["exports"]
    assert client.get("/api/0/map/999").status_code == 404


def test_map_view_of_a_flat_map_has_no_surface():
    view = map_view(np.zeros((8, 8, 8), np.float32), None, 2.0)
    assert view["faces"] == "" and len(view["slices"]) == 3


def test_token_is_required_when_given(toy_run):
    e = Explorer(toy_run)
    try:
        with TestClient(create_app([e], token="s3cret")) as c:
            assert c.get("/api/runs").status_code == 403
            assert c.get("/?token=wrong").status_code == 403
            first = c.get("/?token=s3cret")
            assert first.status_code == 200 and "cryofield_token" in first.headers["set-cookie"]
            assert c.get("/api/runs").status_code == 200  # the cookie from then on
    finally:
        e.close()


def test_server_in_a_thread_and_a_taken_port(toy_run, capsys):
    import json
    import urllib.request

    server = ExplorerServer([Explorer(toy_run)]).start()
    try:
        assert server.url.startswith("http://127.0.0.1:") and "token" not in server.url
        with urllib.request.urlopen(server.url + "api/runs", timeout=10) as response:
            assert json.load(response)[0]["particles"] == 300
        with pytest.raises(Exception, match="cannot listen there"):
            bind("127.0.0.1", server.port)
        assert main(["explore", str(toy_run), "--port", str(server.port), "--no-browser"]) == 2
        assert "cannot listen there" in capsys.readouterr().err
    finally:
        server.close()
    elsewhere = ExplorerServer([Explorer(toy_run)], host="0.0.0.0")
    try:
        assert "?token=" in elsewhere.url
    finally:
        elsewhere.close()


def test_explore_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["explore", str(tmp_path), "--no-browser"]) == 2
    assert "not a trained work directory" in capsys.readouterr().err


def test_explore_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["explore", "--help"])
    assert exit_info.value.code == 0
    assert "cryofield explore run/ --port 8050" in capsys.readouterr().out


def test_show_puts_the_explorer_in_a_notebook_frame(toy_run):
    import json
    import urllib.request

    from cryofield.explore import show
    from cryofield.explore.server import _NOTEBOOK_SERVERS

    frame = show(toy_run, height=700)
    try:
        assert frame.src.startswith("http://127.0.0.1:") and frame.height == 700
        assert show(toy_run).src == frame.src  # one server per set of runs
        with urllib.request.urlopen(frame.src + "api/runs", timeout=10) as response:
            assert json.load(response)[0]["name"] == "run"
        assert 'iframe' in frame._repr_html_() and frame.src in frame._repr_html_()
    finally:
        for server in _NOTEBOOK_SERVERS.values():
            server.close()
        _NOTEBOOK_SERVERS.clear()


def test_the_server_answers_while_a_map_renders(toy_run, monkeypatch):
    """Maps render on the explorer's worker: other requests are answered meanwhile, map requests wait their turn."""
    import json
    import urllib.request

    from cryofield.train import Run

    original = Run.volume

    def slow(self, z=None, **options):
        time.sleep(1.5)
        return original(self, z, **options)

    monkeypatch.setattr(Run, "volume", slow)
    server = ExplorerServer([Explorer(toy_run)]).start()

    def call(path, body=None):
        request = urllib.request.Request(server.url + path, method="POST" if body else "GET",
                                         data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    try:
        import threading

        first, second = call("api/0/map", {"row": 1}), call("api/0/map", {"row": 2})
        # a script of both maps waits for them, in the thread pool: the event loop goes on
        waiting = threading.Thread(target=call, args=("api/0/chimerax", {"maps": [first["id"], second["id"]],
                                                                          "name": "both"}))
        waiting.start()
        time.sleep(0.2)
        start = time.perf_counter()
        assert call("api/runs")[0]["particles"] == 300
        assert time.perf_counter() - start < 0.5  # not behind the maps
        state = call(f"api/0/map/{second['id']}")
        assert state["state"] == "queued" and state["ahead"] == 1
        while call(f"api/0/map/{second['id']}")["state"] != "done":
            time.sleep(0.1)
        assert call(f"api/0/map/{first['id']}")["state"] == "done"
        waiting.join(timeout=30)
        assert (toy_run / "explore/both.cxc").is_file()
    finally:
        server.close()
