"""Packages whose names are imported when first used (PEP 562), so that light imports stay light.

``import cryofield.train.config`` must not import torch (the command line builds every
parser from the configs, and ``cryofield info`` should start in a fraction of a second);
the packages that re-export heavy modules do it through :func:`lazy_exports`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]],
                                                              list[str]]:
    """``(__getattr__, __dir__, __all__)`` for a package exporting ``names`` from its modules.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : dict of str to str
        Each exported name and the module it lives in (absolute, or relative to ``package``).
    """

    def __getattr__(name: str) -> object:
        if name in names:
            return getattr(import_module(names[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__, sorted(names)
