"""``cryofield explore``: a run's latent space, particles and maps, interactively in the browser.

:class:`Explorer` is the model of one run (selections, exports, thumbnails, maps at any latent,
paths, ChimeraX scripts), usable from Python; :class:`ExplorerServer` serves one or more over
HTTP to the page in ``static/`` (plotly.js from the installed ``plotly`` package, never a CDN);
:func:`show` puts that page in a Jupyter output cell::

    from cryofield.explore import Explorer, show
    show("run/")                                  # the explorer, in the notebook
    e = Explorer("run/")                          # or its model, from Python
    rows = e.select_box("pc1", "pc2", [-1, 0], [-2, 2])
    volume = e.volume(e.map_at_particle(int(rows[0])).id)
"""

from cryofield.explore.server import ExplorerServer, create_app, show
from cryofield.explore.session import Explorer, MapJob

__all__ = ["Explorer", "ExplorerServer", "MapJob", "create_app", "show"]
