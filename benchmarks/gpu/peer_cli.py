"""Run the cryodrgn CLI where some of its optional imports (notebooks, plotting, graphs) are absent.

Modules listed in STUB that cannot be imported are replaced by empty stand-ins whose attributes
are inert classes; cryodrgn's training and eval_vol paths never call them.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

STUB = {"IPython", "ipywidgets", "igraph", "healpy", "umap", "plotly", "nbformat", "jsonschema",
        "anywidget", "flask", "notebook", "jupyterlab", "pynndescent", "texttable", "seaborn"}


class _Inert(type):
    def __getattr__(cls, name):
        return _Inert(name, (), {})

    def __call__(cls, *a, **k):
        if len(a) == 1 and callable(a[0]) and not k:
            return a[0]  # used as a decorator
        return _Inert("instance", (), {})


class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert(name, (), {})


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        m = _Module(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in STUB:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            try:
                spec = finder.find_spec(name, path, target)
            except Exception:
                spec = None
            if spec is not None:
                return None  # the real one is there
        return importlib.machinery.ModuleSpec(name, _Loader(), is_package=True)


if __name__ == "__main__":
    import os
    if os.environ.get("PEER_STUB_ALL"):
        class _All(_Finder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in STUB:
                    return importlib.machinery.ModuleSpec(name, _Loader(), is_package=True)
        sys.meta_path.insert(0, _All())
    else:
        sys.meta_path.append(_Finder())
    from cryodrgn.command_line import main_commands
    sys.argv[0] = "cryodrgn"
    sys.exit(main_commands())
