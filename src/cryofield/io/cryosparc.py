"""cryoSPARC result groups: the ``.csg`` files that tie a job's ``.cs`` tables together.

A ``.csg`` is YAML: a ``group`` (``name``, ``type: particle``, ``title``, ``description``)
and ``results``, one entry per result of the group (``blob``, ``ctf``, ``alignments3D``,
``location``, ``pick_stats`` ...), each naming the ``.cs`` that holds its fields
(``metafile``, with a leading ``>`` for a path relative to the ``.csg``), the number of
rows (``num_items``) and its type (``particle.blob``). A job's own fields are in its
particle ``.cs``; fields it passed through from earlier jobs in a ``*_passthrough_*.cs``
with the same ``uid`` column. cryoSPARC's "Import Result Group" job reads a ``.csg`` back.

Reading: :func:`passthrough_tables` finds the ``.csg`` that names a particle ``.cs`` and
loads the other tables it lists, rows matched by ``uid``. Writing: :func:`group_yaml`.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io.arrays import load_npy


def read_group(path: str | os.PathLike) -> dict[str, Path]:
    """The ``.cs`` file of each result of a ``.csg`` file: ``{result name: path}``.

    Parameters
    ----------
    path : str or PathLike
        A ``.csg``; metafiles with a leading ``>`` are relative to its folder.

    Returns
    -------
    dict of str to Path

    Raises
    ------
    InputError
        Not YAML, no ``results`` mapping, or a result without a ``metafile`` text.
    """
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_bytes())
    except (OSError, yaml.YAMLError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(path, f"not a cryoSPARC result group ({type(exc).__name__})") from None
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, dict) or not results:
        raise InputError(path, "no 'results' in this cryoSPARC result group")
    files = {}
    for name, result in results.items():
        metafile = result.get("metafile") if isinstance(result, dict) else None
        if not isinstance(metafile, str) or not metafile.strip(">"):
            raise InputError(path, f"result {name!r} names no metafile")
        relative = metafile.startswith(">")
        files[str(name)] = path.parent / metafile[1:] if relative else Path(metafile)
    return files


def find_group(cs_path: Path) -> Path | None:
    """The ``.csg`` beside a particle ``.cs`` that lists it (the one of the same name first), or None.

    Result groups that cannot be read are passed over: they are not the input.

    Parameters
    ----------
    cs_path : Path

    Returns
    -------
    Path or None
    """
    candidates = sorted(cs_path.parent.glob("*.csg"), key=lambda p: (p.stem != cs_path.stem, p.name))
    for candidate in candidates:
        try:
            files = read_group(candidate)
        except InputError:
            continue
        if any(f.name == cs_path.name for f in files.values()):
            return candidate
    return None


def passthrough_tables(cs_path: Path, cs: np.ndarray) -> dict[str, np.ndarray]:
    """The other tables of ``cs_path``'s result group, each row matched to ``cs``'s by ``uid``.

    Parameters
    ----------
    cs_path : Path
        A particle ``.cs``.
    cs : structured ndarray, shape (N,)
        Its table.

    Returns
    -------
    dict of str to structured ndarray, each (N,)
        ``{file name: rows in cs's order}``; empty without a result group or a ``uid`` field.

    Raises
    ------
    InputError
        A listed table that cannot be read, has no ``uid``, or lacks one of ``cs``'s uids.
    """
    group = find_group(cs_path)
    if group is None or "uid" not in cs.dtype.names:
        return {}
    tables = {}
    for other in sorted({f for f in read_group(group).values() if f.name != cs_path.name}):
        table = load_npy(other, "cryoSPARC .cs")
        if (not isinstance(table, np.ndarray) or table.dtype.names is None or "uid" not in table.dtype.names
                or table.ndim != 1 or len(table) == 0):
            raise InputError(other, f"listed by {group.name} but not a cryoSPARC table with uids")
        order = np.argsort(table["uid"], kind="stable")
        found = order[np.minimum(np.searchsorted(table["uid"], cs["uid"], sorter=order), len(table) - 1)]
        missing = np.flatnonzero(table["uid"][found] != cs["uid"])
        if len(missing):
            raise InputError(other, f"no row for uid {int(cs['uid'][missing[0]])} (row {missing[0] + 1} of "
                                    f"{cs_path.name})")
        tables[other.name] = table[found]
    return tables


def merged_fields(cs: np.ndarray, passthrough: dict[str, np.ndarray]) -> np.ndarray:
    """One structured table (N,) with ``cs``'s fields and the passthrough tables' others (``cs``'s win).

    Parameters
    ----------
    cs : structured ndarray, shape (N,)
    passthrough : dict of str to structured ndarray, each (N,)
        As :func:`passthrough_tables` returns them.

    Returns
    -------
    structured ndarray, shape (N,)
    """
    if not passthrough:
        return cs
    columns = {name: cs[name] for name in cs.dtype.names}
    for table in passthrough.values():
        for name in table.dtype.names:
            columns.setdefault(name, table[name])
    out = np.empty(len(cs), dtype=[(name, values.dtype, values.shape[1:]) for name, values in columns.items()])
    for name, values in columns.items():
        out[name] = values
    return out


def result_names(table: np.ndarray) -> list[str]:
    """The results a table holds: its fields' prefixes before ``/`` (``uid`` aside), in order.

    Parameters
    ----------
    table : structured ndarray

    Returns
    -------
    list of str
    """
    names: list[str] = []
    for field in table.dtype.names:
        prefix = field.split("/", 1)[0]
        if "/" in field and prefix not in names:
            names.append(prefix)
    return names


def group_yaml(tables: dict[str, np.ndarray], title: str) -> str:
    """A ``.csg`` for particle tables ``{file name beside it: table}``; each result in the first table that has it.

    Parameters
    ----------
    tables : dict of str to structured ndarray
        The tables, by their file names in the ``.csg``'s folder.
    title : str
        The group's title and description.

    Returns
    -------
    str
        YAML text (``created``, ``group``, ``results``, as cryoSPARC writes them).
    """
    import yaml

    results = {}
    for name, table in tables.items():
        for result in result_names(table):
            results.setdefault(result, {"metafile": f">{name}", "num_items": int(len(table)),
                                        "type": f"particle.{result}"})
    document = {"created": datetime.datetime.now().isoformat(sep=" ", timespec="microseconds"),
                "group": {"description": title, "name": "particles", "title": title, "type": "particle"},
                "results": results}
    return yaml.safe_dump(document, sort_keys=False)
