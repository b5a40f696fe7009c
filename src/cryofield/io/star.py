"""STAR files (RELION 3.0 to 5): every block, every column, values kept exactly.

Loops are parsed with pandas' C reader (numbers as int64/float64, everything else as
strings), so a million-row particle table reads in seconds; writing uses the shortest
representation that round-trips each float, so a read-write cycle changes no value.
"""

from __future__ import annotations

import io
import mmap
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cryofield.errors import InputError
from cryofield.io._atomic import whole


@dataclass
class StarBlock:
    """One ``data_NAME`` block: a loop (a table) or a list of ``_key value`` pairs.

    Attributes
    ----------
    name : str
        The block's name without ``data_`` (may be empty).
    table : DataFrame or None
        The loop, columns named without the leading underscore (``rlnImageName``).
    pairs : dict
        Key-value items of a block that is not a loop (keys without the underscore).
    comments : list of str
        Comment lines before the block (such as ``# version 30001``), re-emitted on write.
    """

    name: str
    table: pd.DataFrame | None = None
    pairs: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)


def read_star(path: str | os.PathLike) -> dict[str, StarBlock]:
    """Read every block of a STAR file.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    dict of str to StarBlock
        In file order, keyed by block name (``"optics"``, ``"particles"``, ``""`` ...).

    Raises
    ------
    InputError
        Missing file, no data block, or a loop row with the wrong number of values.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file")
    blocks: dict[str, StarBlock] = {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos, size, line_no = 0, len(mm), 0
        comments: list[str] = []
        block: StarBlock | None = None
        labels: list[str] | None = None
        while pos < size:
            end = mm.find(b"\n", pos)
            end = size if end < 0 else end
            raw = mm[pos:end]
            line = raw.decode("utf-8", "replace").strip()
            if labels is not None and line and not line.startswith(("_", "#")):
                # first data row of a loop: hand the whole body to the C parser
                body_end = mm.find(b"\ndata_", pos)  # a plain search: a regex here costs seconds
                body_stop = _trim_trailing_comments(mm, pos, body_end + 1 if body_end >= 0 else size)
                block.table = _parse_loop(path, mm, pos, body_stop, labels, line_no)
                labels = None
                line_no += mm[pos:body_stop].count(b"\n")
                pos = body_stop
                continue
            line_no += 1
            pos = end + 1
            if not line:
                continue
            if line.startswith("#"):
                if labels is None:
                    comments.append(line)
                continue
            if line.startswith("data_"):
                if labels is not None:  # loop with labels but no rows
                    block.table = pd.DataFrame({name: pd.Series(dtype=object) for name in labels})
                    labels = None
                block = StarBlock(line[5:], comments=comments)
                comments = []
                blocks[block.name] = block
            elif block is None:
                raise InputError(path, f"line {line_no}: content before the first data_ block")
            elif line.startswith("loop_"):
                labels = []
            elif line.startswith("_"):
                parts = line[1:].split(None, 1)
                if not parts:
                    raise InputError(path, f"line {line_no}: a label with no name")
                if labels is not None:
                    labels.append(parts[0])
                else:
                    block.pairs[parts[0]] = parts[1] if len(parts) > 1 else ""
            else:
                raise InputError(path, f"line {line_no}: unexpected text {line[:40]!r}")
        if labels is not None:
            block.table = pd.DataFrame({name: pd.Series(dtype=object) for name in labels})
    if not blocks:
        raise InputError(path, "no data_ block: not a STAR file")
    return blocks


def _trim_trailing_comments(mm: mmap.mmap, start: int, stop: int) -> int:
    """Move ``stop`` back over blank and comment lines that belong to the next block."""
    while stop > start:
        line_start = mm.rfind(b"\n", start, stop - 1) + 1
        line_start = max(line_start, start)
        text = mm[line_start:stop].strip()
        if text and not text.startswith(b"#"):
            break
        stop = line_start
    return stop


def _parse_loop(path: Path, mm: mmap.mmap, start: int, stop: int, labels: list[str],
                first_line: int) -> pd.DataFrame:
    if not labels:
        raise InputError(path, f"line {first_line + 1}: values in a loop that names no columns")
    repeated = sorted({name for name in labels if labels.count(name) > 1})
    if repeated:
        raise InputError(path, f"the loop before line {first_line + 1} names _{repeated[0]} more than once")
    source = io.BytesIO(mm[start:stop])
    try:  # bytes that are not UTF-8 become U+FFFD: the value is then refused as not a number, by row
        table = pd.read_csv(source, sep=r"\s+", header=None, names=labels, comment=None, na_filter=False,
                            engine="c", quotechar='"', skip_blank_lines=True, encoding_errors="replace")
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+)", str(exc))
        row = f"row {int(match.group(1))} of the loop at line {first_line + 1}" if match else \
            f"the loop at line {first_line + 1}"
        raise InputError(path, f"{row}: wrong number of values (expected {len(labels)})") from None
    if table.shape[1] != len(labels) or (len(table) and table.iloc[:, -1].eq("").any()):
        raise InputError(path, f"the loop at line {first_line + 1}: rows with fewer values "
                               f"than its {len(labels)} columns")
    if len(table) and table.isna().any().any():
        row = int(np.flatnonzero(table.isna().any(axis=1).to_numpy())[0]) + 1
        raise InputError(path, f"row {row} of the loop at line {first_line + 1}: fewer values "
                               f"than its {len(labels)} columns")
    return table


def _format_column(values: pd.Series) -> list[str]:
    """Text of one column: floats in their shortest exact form, strings quoted if they hold blanks."""
    if pd.api.types.is_float_dtype(values):
        return [repr(v) for v in values.to_numpy(np.float64).tolist()]
    text = values.astype(str)
    if not pd.api.types.is_numeric_dtype(values):
        blank = text.str.contains(" ", regex=False) | text.eq("")
        if blank.any():
            text = text.where(~blank, '"' + text + '"')
    return text.tolist()


def write_star(path: str | os.PathLike, blocks: dict[str, StarBlock]) -> None:
    """Write blocks to a STAR file (replaces ``path``, whole or not at all).

    Parameters
    ----------
    path : str or PathLike
    blocks : dict of str to StarBlock
        As returned by :func:`read_star`, possibly with edited tables.
    """
    with whole(path) as temp, open(temp, "w", encoding="utf-8") as fh:
        for block in blocks.values():
            fh.write("\n")
            for comment in block.comments:
                fh.write(comment + "\n")
            fh.write(f"\ndata_{block.name}\n\n")
            for key, value in block.pairs.items():
                fh.write(f"_{key} {value}\n")
            if block.table is None:
                continue
            fh.write("loop_\n")
            for i, name in enumerate(block.table.columns, start=1):
                fh.write(f"_{name} #{i}\n")
            if len(block.table):
                columns = [_format_column(block.table[c]) for c in block.table.columns]
                fh.write("\n".join(map(" ".join, zip(*columns))))
                fh.write("\n")
            fh.write("\n")


def numeric_column(path: Path, df, column: str) -> np.ndarray:
    """The STAR column ``column`` of ``df`` (a DataFrame or dict of Series) as float64, shape (N,).

    Raises
    ------
    InputError
        Naming ``path`` and the first row whose value is not a finite number.
    """
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = df[column].iloc[row]
        said = f"{value:g}" if isinstance(value, (int, float, np.number)) else repr(value)
        raise InputError(path, f"row {row + 1}: _{column} is {said}, not a finite number")
    return values
