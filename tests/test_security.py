"""Security rules of issue 23, item 7, checked on every module of the package.

No pickle is ever executed: ``torch.load`` must pass ``weights_only=True``, ``numpy.load``
``allow_pickle=False``; ``pickle`` is unpickled only by the legacy loader, whose unpickler
refuses every class but numpy's array. No server listens beyond this machine by default:
no address that means "every interface" appears in the package (its servers bind 127.0.0.1).
"""

import ast
from pathlib import Path

import pytest

import cryofield

PACKAGE = Path(cryofield.__file__).parent
LEGACY = PACKAGE / "io" / "legacy.py"


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value,
                                                                                               ast.Name):
            yield node.func.value.id, node.func.attr, {k.arg: k.value for k in node.keywords}, node.lineno


def _is(value, constant) -> bool:
    return isinstance(value, ast.Constant) and value.value is constant


def _unsafe_loads(path: Path) -> list[str]:
    unsafe = []
    for module, name, keywords, line in _calls(path):
        if module == "torch" and name == "load" and not _is(keywords.get("weights_only"), True):
            unsafe.append(f"line {line}: torch.load without weights_only=True")
        if module == "np" and name == "load" and not _is(keywords.get("allow_pickle"), False):
            unsafe.append(f"line {line}: np.load without allow_pickle=False")
        if module == "pickle" and name in ("load", "loads", "Unpickler") and path != LEGACY:
            unsafe.append(f"line {line}: pickle.{name} outside the legacy loader")
    return unsafe


def test_the_check_sees_unsafe_loads(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import numpy as np, pickle, torch\nnp.load('a')\ntorch.load('b', weights_only=False)\n"
                      "pickle.loads(b'')\nnp.load('c', allow_pickle=False)\ntorch.load('d', weights_only=True)\n")
    assert [line.split(":")[0] for line in _unsafe_loads(sample)] == ["line 2", "line 3", "line 4"]


ALL_INTERFACES = ("0.0.0.0", "::", "")


def _wide_binds(path: Path) -> list[str]:
    """Lines that bind or serve on every interface: a ``host``/``address`` of 0.0.0.0, ``::`` or ``""``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            values = [k.value for k in node.keywords if k.arg in ("host", "address", "bind", "listen")]
            if name in ("bind", "create_server", "HTTPServer", "ThreadingHTTPServer", "TCPServer") and node.args:
                first = node.args[0]
                values += first.elts[:1] if isinstance(first, ast.Tuple) else [first]
            if any(isinstance(v, ast.Constant) and v.value in ALL_INTERFACES for v in values):
                found.append(f"line {node.lineno}: {name} on every interface")
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_loads_pickled_code_or_listens_on_every_interface(path):
    assert not _unsafe_loads(path)
    assert not _wide_binds(path)


def test_the_check_sees_a_wide_bind(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import socket, http.server as h\nsocket.socket().bind(('0.0.0.0', 80))\n"
                      "h.ThreadingHTTPServer(('', 8000), None)\nserve(app, host='::')\n"
                      "socket.socket().bind(('127.0.0.1', 80))\nrun(app, host='127.0.0.1')\n")
    assert [line.split(":")[0] for line in _wide_binds(sample)] == ["line 2", "line 3", "line 4"]
