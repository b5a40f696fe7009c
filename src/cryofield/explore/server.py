"""The explorer's web server: a Starlette app over one or more :class:`~cryofield.explore.session.Explorer`.

Every page asset is served from installed packages (the page, its script and style from
``cryofield/explore/static/``, plotly.js from the ``plotly`` package): nothing is fetched from
the network, so the explorer works offline. Bound to 127.0.0.1 by default; bound anywhere else
it asks for an access token (``?token=`` once, then a cookie). Endpoints (``R`` is the run's
number, from 0):

- ``GET /api/runs``: each run's particles, axes, colourings, selections, exports, saved maps and notes
- ``GET /api/compare?a=0&b=1&k=10``: two runs' cluster correspondence (``compare-runs``)
- ``GET /api/R/axis/NAME``, ``GET /api/R/colour/NAME``: values as little-endian float32 bytes
- ``POST /api/R/select`` (polygon or box), ``POST /api/R/combine``, ``GET /api/R/selection/NAME``
- ``POST /api/R/export``, ``GET /api/R/files/NAME`` (what ``RUN/explore/`` holds)
- ``GET /api/R/thumbnails``: a page of a selection's images; ``GET /api/R/commands``: the command
  lines that continue from a selection, a map or a path
- ``POST /api/R/map`` (a particle, a selection's mean, a latent, or a map the analyses saved),
  ``GET /api/R/map/ID``,
  ``GET /api/R/map/ID/mesh``, ``GET /api/R/map/ID/mrc``; ``POST /api/R/path``, ``POST /api/R/chimerax``

Every endpoint's work runs in Starlette's thread pool (the event loop only reads requests) and
maps on each explorer's one worker, so the page stays responsive and map requests queue rather
than compete for the CPU.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from importlib import resources
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cryofield.errors import InputError
from cryofield.explore.session import Explorer, compare

#: Largest box a mesh is computed on (larger maps are binned first).
MESH_BOX = 96
#: Thumbnails per page, at most.
MAX_PAGE = 100


def plotly_js() -> Path:
    """plotly.js as the installed ``plotly`` package ships it."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def static_folder() -> Path:
    """The explorer page's own files."""
    return Path(str(resources.files("cryofield.explore") / "static"))


def create_app(explorers: list[Explorer], *, token: str | None = None) -> Starlette:
    """The explorer's ASGI app.

    Parameters
    ----------
    explorers : list of Explorer
        The runs to serve, numbered from 0 in the URLs.
    token : str, optional
        Required of every request (``?token=`` or the cookie it sets) when given.

    Returns
    -------
    Starlette
    """

    def explorer(request: Request) -> Explorer:
        index = int(request.path_params["run"])
        if not 0 <= index < len(explorers):
            raise KeyError(f"no run {index}")
        return explorers[index]

    def posted(work):
        """A POST endpoint: its JSON body read on the event loop, ``work(request, data)`` in the thread pool."""

        async def endpoint(request: Request) -> Response:
            try:
                data = json.loads(await request.body() or b"{}")
            except json.JSONDecodeError as error:
                raise ValueError(f"the request is not JSON: {error}") from None
            if not isinstance(data, dict):
                raise ValueError("the request must be a JSON object")
            return await run_in_threadpool(work, request, data)

        return endpoint

    def index(request: Request) -> Response:
        return FileResponse(static_folder() / "index.html")

    def favicon(request: Request) -> Response:
        return Response(status_code=204)

    def plotly(request: Request) -> Response:
        return FileResponse(plotly_js(), media_type="text/javascript")

    def runs(request: Request) -> Response:
        return JSONResponse([_describe(i, e) for i, e in enumerate(explorers)])

    def axis(request: Request) -> Response:
        values = explorer(request).axis(request.path_params["name"])
        return Response(np.asarray(values, "<f4").tobytes(), media_type="application/octet-stream")

    def colour(request: Request) -> Response:
        values, kind = explorer(request).colouring(request.path_params["name"])
        return Response(np.asarray(values, "<f4").tobytes(), media_type="application/octet-stream",
                        headers={"X-Kind": kind})

    def select(request: Request, data: dict) -> Response:
        e = explorer(request)
        if "polygon" in data:
            rows = e.select_polygon(data["x"], data["y"], data["polygon"])
        elif "x_range" in data:
            rows = e.select_box(data["x"], data["y"], data["x_range"], data["y_range"])
        elif "rows" in data:
            rows = np.asarray(data["rows"], np.int64)
        else:
            raise ValueError("a selection needs a polygon, a box (x_range, y_range) or rows")
        name = e.store_selection(rows, data.get("name"))
        return JSONResponse({"name": name, "count": len(e.selection(name)), "selections": e.selections()})

    def combine(request: Request, data: dict) -> Response:
        e = explorer(request)
        name = e.store_selection(e.combine(data["a"], data["b"], data["operation"]), data.get("name"))
        return JSONResponse({"name": name, "count": len(e.selection(name)), "selections": e.selections()})

    def selection(request: Request) -> Response:
        rows = explorer(request).selection(request.path_params["name"])
        return Response(np.asarray(rows, "<i4").tobytes(), media_type="application/octet-stream")

    def export(request: Request, data: dict) -> Response:
        e = explorer(request)
        files = e.export(data["selection"], data["name"], data["format"])
        return JSONResponse({"files": [f.name for f in files], "exports": e.exports()})

    def files(request: Request) -> Response:
        e = explorer(request)
        name = request.path_params["name"]
        path = (e.folder / name).resolve()
        if path.parent != e.folder.resolve() or not path.is_file():
            raise KeyError(f"no file {name!r} in {e.folder}")
        return FileResponse(path, filename=path.name)

    def thumbnails(request: Request) -> Response:
        e = explorer(request)
        rows = e.selection(request.query_params["selection"])
        page = max(0, int(request.query_params.get("page", 0)))
        per = min(MAX_PAGE, max(1, int(request.query_params.get("per", 24))))
        chosen = rows[page * per:(page + 1) * per]
        return JSONResponse({"total": len(rows), "page": page, "per": per, "items": e.thumbnails(chosen)})

    def request_map(request: Request, data: dict) -> Response:
        e = explorer(request)
        if "row" in data:
            job = e.map_at_particle(int(data["row"]))
        elif "file" in data:
            job = e.open_map(str(data["file"]))
        elif "selection" in data:
            job = e.map_at_selection(data["selection"])
        else:
            job = e.request_map(data.get("z"), data.get("label", "latent"))
        return JSONResponse(_job(e, job))

    def map_state(request: Request) -> Response:
        e = explorer(request)
        return JSONResponse(_job(e, e.job(int(request.path_params["id"]))))

    def mesh(request: Request) -> Response:
        e = explorer(request)
        number = int(request.path_params["id"])
        level = request.query_params.get("level")
        return JSONResponse(map_view(e.volume(number), None if level is None else float(level),
                                     e.run.pixel_size))

    def mrc(request: Request) -> Response:
        e = explorer(request)
        number = int(request.path_params["id"])
        e.volume(number)  # rendered, and written
        return FileResponse(e.map_path(number), filename=f"{e.name}_map_{number:04d}.mrc",
                            media_type="application/octet-stream")

    def path(request: Request, data: dict) -> Response:
        e = explorer(request)
        rows, zs, how = e.path_latents(int(data["start"]), int(data["end"]), int(data.get("frames", 8)))
        jobs = [e.request_map(z, f"path {i + 1}/{len(rows)}: near particle {int(r)}") for i, (r, z) in
                enumerate(zip(rows, zs))]
        return JSONResponse({"rows": rows.tolist(), "how": how, "maps": [_job(e, j) for j in jobs]})

    def commands(request: Request) -> Response:
        query = request.query_params
        path = tuple(int(query[key]) for key in ("start", "end")) if "start" in query and "end" in query else None
        return JSONResponse(explorer(request).commands(query.get("selection") or None,
                                                       int(query["map"]) if query.get("map") else None, path))

    def comparison(request: Request) -> Response:
        query = request.query_params
        a, b = (int(query.get(key, default)) for key, default in (("a", 0), ("b", 1)))
        if not (0 <= a < len(explorers) and 0 <= b < len(explorers)) or a == b:
            raise ValueError(f"compare two different runs of the {len(explorers)} served")
        result = compare(explorers[a], explorers[b], int(query.get("k", 10)))
        for key in ("labels_a", "labels_b"):
            result[key] = base64.b64encode(np.asarray(result[key], "<i4").tobytes()).decode()
        return JSONResponse(result)

    def chimerax(request: Request, data: dict) -> Response:
        e = explorer(request)
        level = data.get("level")
        script = e.chimerax_script([int(n) for n in data["maps"]], data["name"],
                                   None if level is None else float(level))
        return JSONResponse({"file": script.name, "exports": e.exports()})

    routes = [
        Route("/", index),
        Route("/favicon.ico", favicon),
        Route("/vendor/plotly.min.js", plotly),
        Mount("/static", app=StaticFiles(directory=static_folder()), name="static"),
        Route("/api/runs", runs),
        Route("/api/compare", comparison),
        Route("/api/{run:int}/axis/{name:path}", axis),
        Route("/api/{run:int}/colour/{name:path}", colour),
        Route("/api/{run:int}/select", posted(select), methods=["POST"]),
        Route("/api/{run:int}/combine", posted(combine), methods=["POST"]),
        Route("/api/{run:int}/selection/{name}", selection),
        Route("/api/{run:int}/export", posted(export), methods=["POST"]),
        Route("/api/{run:int}/files/{name}", files),
        Route("/api/{run:int}/thumbnails", thumbnails),
        Route("/api/{run:int}/commands", commands),
        Route("/api/{run:int}/map", posted(request_map), methods=["POST"]),
        Route("/api/{run:int}/map/{id:int}", map_state),
        Route("/api/{run:int}/map/{id:int}/mesh", mesh),
        Route("/api/{run:int}/map/{id:int}/mrc", mrc),
        Route("/api/{run:int}/path", posted(path), methods=["POST"]),
        Route("/api/{run:int}/chimerax", posted(chimerax), methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={
        KeyError: _error(404), ValueError: _error(400), InputError: _error(400), TypeError: _error(400),
        OSError: _error(400)})
    if token is not None:
        app.add_middleware(_TokenMiddleware, token=token)
    return app


def _error(status: int):
    async def handler(request: Request, error: Exception) -> Response:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        return JSONResponse({"error": str(message)}, status_code=status)

    return handler


class _TokenMiddleware:
    """Refuse requests without the access token (``?token=`` sets a cookie for the ones after)."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        given = request.query_params.get("token") or request.cookies.get("cryofield_token") or ""
        if not hmac.compare_digest(given, self.token):
            return await JSONResponse({"error": "this explorer needs its access token (?token=...)"},
                                      status_code=403)(scope, receive, send)

        async def with_cookie(message):
            if message["type"] == "http.response.start" and "token" in request.query_params:
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", f"cryofield_token={self.token}; HttpOnly; SameSite=Strict; "
                                               "Path=/".encode()))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, with_cookie)


def new_token() -> str:
    """A random access token."""
    return secrets.token_urlsafe(18)


def _describe(index: int, e: Explorer) -> dict:
    """What the page needs to lay out a run."""
    axes = e.axes()
    out = {"index": index, "name": e.name, "path": str(e.root), "particles": e.n, "zdim": e.zdim,
           "axes": axes, "default_axes": list(e.default_axes()) if axes else [],
           "colourings": e.colourings() if e.z is not None else [], "selections": e.selections(),
           "exports": e.exports(), "box": int(e.config.box), "apix": float(e.run.pixel_size),
           "tilt_series": bool(getattr(e.config, "tilt_series", False)),
           "saved_maps": e.saved_maps() if e.z is not None else {}}
    out["notes"] = dict(e.notes)
    return out


def _job(e: Explorer, job) -> dict:
    out = {"id": job.id, "state": job.state, "label": job.label, "ahead": e.queue_position(job)}
    if job.state == "failed":
        out["error"] = str(job.future.exception())
    return out


def map_view(volume: np.ndarray, level: float | None, apix: float) -> dict:
    """A map's isosurface (vertices in A, faces) at ``level`` and its three central slices, for the page.

    Parameters
    ----------
    volume : ndarray, shape (D, D, D)
    level : float, optional
        Iso-level; default the 99th percentile of the map.
    apix : float
        Pixel size, A.

    Returns
    -------
    dict
        ``level``, ``levels`` (the 90th to 99.9th percentiles, for the slider), ``vertices``
        (base64 float32, (V, 3) x/y/z in A), ``faces`` (base64 int32, (F, 3)), ``slices`` (three
        PNG data URIs: z, y, x), ``box``.
    """
    from cryofield.reports.views import bin_volume, central_slices, isosurface_mesh, png_data_uri, scale_to_unit

    percentiles = [90, 95, 98, 99, 99.5, 99.9]
    values = np.percentile(volume, percentiles)
    level = float(values[3]) if level is None else float(level)
    xyz, faces = isosurface_mesh(volume, level, MESH_BOX, apix)
    small = bin_volume(volume, MESH_BOX)
    return {"level": level, "levels": dict(zip(map(str, percentiles), map(float, values))),
            "vertices": base64.b64encode(np.asarray(xyz, "<f4").tobytes()).decode(),
            "faces": base64.b64encode(np.asarray(faces, "<i4").tobytes()).decode(),
            "slices": [png_data_uri(scale_to_unit(s)) for s in central_slices(small)],
            "box": int(volume.shape[0]), "range": [float(volume.min()), float(volume.max())]}


def bind(host: str = "127.0.0.1", port: int = 0):
    """A listening socket on ``host:port`` (port 0: a free one), refused with a one-line error when taken.

    Returns
    -------
    socket.socket
    """
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise InputError(f"{host}:{port}", f"cannot listen there: {error.strerror or error}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class ExplorerServer:
    """The explorer served from a background thread (notebooks, tests) or the foreground (the CLI).

    Parameters
    ----------
    explorers : list of Explorer
    host : str
        Address to listen on (default 127.0.0.1: this machine only).
    port : int
        0 for a free one.
    token : str, optional
        Access token; default one is made when ``host`` is not a loopback address.
    """

    def __init__(self, explorers: list[Explorer], host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None):
        import uvicorn

        if token is None and host not in ("127.0.0.1", "localhost", "::1"):
            token = new_token()
        self.explorers, self.host, self.token = explorers, host, token
        self.socket = bind(host, port)
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(create_app(explorers, token=token), log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = None

    @property
    def url(self) -> str:
        """The page's address (with the token when there is one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def serve_forever(self) -> None:
        """Serve until interrupted (Ctrl-C)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.close()

    def start(self) -> ExplorerServer:
        """Serve from a daemon thread; returns at once, ready for requests."""
        import threading
        import time

        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True,
                                        name="cryofield-explore")
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def close(self) -> None:
        """Stop serving, and every explorer's map worker."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        for e in self.explorers:
            e.close()
        self.socket.close()


_NOTEBOOK_SERVERS: dict[tuple[str, ...], ExplorerServer] = {}


def show(*workdirs, height: int = 1000, labels=None):
    """The explorer of ``workdirs`` inside a Jupyter notebook: the same page, in an output cell.

    The first call for a set of runs starts a server on 127.0.0.1 in a background thread (kept
    for the kernel's life); later calls show it again.

    Parameters
    ----------
    *workdirs : str or PathLike
        Run folders.
    height : int
        Height of the frame, px.
    labels : str or PathLike, optional
        As ``cryofield explore --labels`` (for the first run).

    Returns
    -------
    IPython.display.IFrame
    """
    from IPython.display import IFrame

    key = tuple(str(Path(w).resolve()) for w in workdirs)
    server = _NOTEBOOK_SERVERS.get(key)
    if server is None:
        explorers = [Explorer(w, labels=labels if i == 0 else None) for i, w in enumerate(workdirs)]
        server = _NOTEBOOK_SERVERS[key] = ExplorerServer(explorers).start()
    return IFrame(server.url, width="100%", height=height)
