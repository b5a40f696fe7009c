"""``cryofield explore``: the interactive explorer of runs, in the browser, served from this machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cryofield.cli._common import command_parser

NAME = "explore"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Serve an interactive explorer of one or more runs to the browser: "
                            "the latent space as a WebGL scatter (PCA, UMAP or any two latent dimensions; coloured by "
                            "cluster, |z|, per-image loss, defocus, optics group, any numeric column of the input or "
                            "a label file), lasso and box selections with set operations and export as .txt, .star "
                            "or .cs (written into RUN/explore/), the images of a selection, the map at any clicked "
                            "particle or selection's mean rendered live as an isosurface with central slices (and "
                            "its .mrc), paths between two particles played as a movie, ChimeraX scripts. Listens on "
                            "127.0.0.1 unless told otherwise (then with an access token); works offline.", """
        cryofield explore run/                       # prints http://127.0.0.1:PORT/
        cryofield explore run/ --port 8050
        cryofield explore run_a/ run_b/              # two runs, one page
        cryofield explore run/ --labels states.txt   # colour by your own labels (one per particle)
        cryofield explore run/ --host 0.0.0.0        # from other machines: the printed URL has a token
        # on a cluster node: ssh -L 8050:127.0.0.1:8050 node, then open http://127.0.0.1:8050/ here
        """)
    parser.add_argument("workdirs", type=Path, nargs="+", metavar="RUN", help="run folders (train-vae, train-nn, ...)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--token", help="access token (default: none on 127.0.0.1, a random one elsewhere)")
    parser.add_argument("--labels", type=Path, help="one label or value per particle of the first run (.txt, .npy)")
    parser.add_argument("--no-browser", action="store_true",
                        help="do not open a browser (none is opened without a display anyway)")
    return parser


def run(args) -> None:
    from cryofield.explore import Explorer, ExplorerServer

    explorers = [Explorer(path, labels=args.labels if i == 0 else None) for i, path in enumerate(args.workdirs)]
    server = ExplorerServer(explorers, host=args.host, port=args.port, token=args.token)
    names = ", ".join(e.name for e in explorers)
    print(f"cryofield explore: {names} at {server.url}  (Ctrl-C to stop)", flush=True)
    if not args.no_browser and _has_display():
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def _has_display() -> bool:
    """A desktop to open a browser on (macOS, Windows, or an X11/Wayland display)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
