"""Write outputs under temporary names and rename them into place only when all succeeded."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``paths``; rename them onto ``paths`` on success.

    On any exception every temporary file is removed and no final path is touched, so a
    failed command leaves nothing half-written.

    Parameters
    ----------
    *paths : str or PathLike
        The final output paths. Their folders must exist.

    Yields
    ------
    list of Path
        One temporary path per output, in the same folder (so the rename is atomic).
    """
    finals = [Path(p) for p in paths]
    tag = uuid.uuid4().hex[:8]
    # keep the extension last: writers choose the format by it
    temps = [p.with_name(f".{p.stem}.{tag}.part{p.suffix}") for p in finals]
    try:
        yield temps
    except BaseException:
        for t in temps:
            t.unlink(missing_ok=True)
        raise
    for t, p in zip(temps, finals):
        if t.exists():
            os.replace(t, p)
