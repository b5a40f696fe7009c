"""Example data shipped with cryofield.

Adenylate kinase, closed (PDB 1AKE chain A) and open (4AKE chain A, superposed on 1AKE):
public-domain PDB entries, used by ``make demo``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

ADK_CLOSED = "1ake_closed.pdb"
ADK_OPEN = "4ake_open_chainA_aligned.pdb"


def example_path(name: str) -> Path:
    """Path of a shipped example file (``ADK_CLOSED`` or ``ADK_OPEN``)."""
    path = Path(str(resources.files(__name__) / name))
    if not path.is_file():
        raise FileNotFoundError(f"no example file {name!r} in {path.parent}")
    return path
