"""Read and write RELION-dialect STAR files (the one place for the STAR format).

Tables are pandas DataFrames; a single-row "list" block (``_rlnLabel value`` lines, no ``loop_``) is
read as a one-row DataFrame and written from a ``dict``.  Writing follows RELION 5
(``MetaDataTable::write``): a ``# version 50001`` line, ``data_<name>``, ``loop_``, ``_label #i`` and
values in width 10 followed by a space; floats ``%12.6f`` (``%12.5f`` if negative), exponent form when
``0 < |v| < 0.001`` or ``|v| > 100000``.  Files are written under a temporary name and renamed, so a
failed write never leaves a half file behind.

Readers accept RELION 3.0 files (no version line, no optics table), exponent-form numbers and both
padded and unpadded ``N@stack.mrcs`` names (see :func:`split_image_name`).
"""

from __future__ import annotations

import os
import re
import shlex
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "StarError", "read_star", "write_star", "format_value", "split_image_name", "join_image_name",
    "atomic_write_text", "star_version", "required_column",
]

STAR_VERSION = 50001


class StarError(ValueError):
    """A STAR file that cannot be read or lacks what the caller needs; the message names the file."""


def _convert_column(values: list[str]) -> np.ndarray | list[str]:
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return values


def _tokens(line: str, path: Path | None = None, line_no: int = 0) -> list[str]:
    if '"' in line or "'" in line:
        try:
            return shlex.split(line, posix=True)
        except ValueError as exc:  # "No closing quotation"
            raise StarError(f"STAR file {path}, line {line_no}: {exc}") from None
    return line.split()


def star_version(path: str | os.PathLike) -> int:
    """The ``# version N`` of a STAR file, 30000 when absent (RELION 3.0 style)."""
    with open(path, errors="replace") as fh:
        for line in fh:
            m = re.match(r"#\s*version\s+(\d+)", line.strip())
            if m:
                return int(m.group(1))
            if line.startswith("data_"):
                break
    return 30000


def read_star(path: str | os.PathLike) -> "OrderedDict[str, pd.DataFrame]":
    """Read every block of a STAR file into DataFrames keyed by block name (without ``data_``).

    Raises :class:`StarError` naming the file and line for a missing file, a loop row with the
    wrong number of values (a truncated file), or a file with no data block.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        raise StarError(f"STAR file {path} does not exist") from None
    except IsADirectoryError:
        raise StarError(f"STAR file {path} is a directory") from None
    blocks: "OrderedDict[str, pd.DataFrame]" = OrderedDict()
    lines = text.splitlines()
    i, n = 0, len(lines)
    while i < n:
        line = lines[i].strip()
        if not line.startswith("data_"):
            i += 1
            continue
        name = line[5:].strip()
        i += 1
        while i < n and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
            i += 1
        if i < n and lines[i].strip().startswith("loop_"):
            i += 1
            labels: list[str] = []
            while i < n:
                s = lines[i].strip()
                if s.startswith("_"):
                    labels.append(s.split()[0][1:])
                    i += 1
                elif not s or s.startswith("#"):
                    i += 1
                else:
                    break
            rows: list[list[str]] = []
            while i < n:
                s = lines[i].strip()
                if s.startswith("data_"):
                    break
                if s and not s.startswith("#"):
                    toks = _tokens(s, path, i + 1)
                    if s.startswith(("kk=",)):  # RELION's locres text lines inside FSC files
                        i += 1
                        continue
                    if len(toks) != len(labels):
                        raise StarError(
                            f"STAR file {path}, line {i + 1}: block data_{name} has {len(labels)} "
                            f"columns but the row has {len(toks)} values (truncated or corrupt file?)")
                    rows.append(toks)
                i += 1
            cols: list[Sequence[str]] = list(zip(*rows)) if rows else [[] for _ in labels]
            blocks[name] = pd.DataFrame(OrderedDict(
                (lab, _convert_column(list(col))) for lab, col in zip(labels, cols)))
        else:
            values: "OrderedDict[str, list]" = OrderedDict()
            while i < n:
                s = lines[i].strip()
                if s.startswith("data_"):
                    break
                if s.startswith("_"):
                    toks = _tokens(s, path, i + 1)
                    if len(toks) < 2:
                        raise StarError(f"STAR file {path}, line {i + 1}: label {toks[0]} has no value")
                    values[toks[0][1:]] = _convert_column([toks[1]])  # type: ignore[assignment]
                i += 1
            blocks[name] = pd.DataFrame(values)
    if not blocks:
        raise StarError(f"STAR file {path} contains no data_ block (empty or not a STAR file)")
    return blocks


def format_value(v: object) -> str:
    """One value as RELION writes it (width 10 then a space is added by the caller)."""
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        x = float(v)
        if not np.isfinite(x):
            return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")
        ax = abs(x)
        if (0 < ax < 0.001) or ax > 100000:
            return f"{x:12.5e}" if x < 0 else f"{x:12.6e}"
        return f"{x:12.5f}" if x < 0 else f"{x:12.6f}"
    s = str(v)
    if not s:
        return '""'
    if any(c.isspace() for c in s):
        return '"' + s + '"'
    return s


def _format_column(col: pd.Series) -> list[str]:
    return [f"{format_value(v):>10} " for v in col.tolist()] if col.dtype != object else \
        [f"{format_value(v):>10} " for v in col]


def _block_text(name: str, table: pd.DataFrame | Mapping[str, object]) -> str:
    out = [f"\n# version {STAR_VERSION}\n\ndata_{name}\n\n"]
    if isinstance(table, Mapping):
        for label, value in table.items():
            out.append(f"_{label} {format_value(value):>{max(1, 39 - len(label))}}\n")
        out.append("\n")
        return "".join(out)
    out.append("loop_ \n")
    for j, label in enumerate(table.columns):
        out.append(f"_{label} #{j + 1} \n")
    cols = [_format_column(table[c]) for c in table.columns]
    for row in zip(*cols):
        out.append("".join(row) + "\n")
    out.append(" \n")
    return "".join(out)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def write_star(path: str | os.PathLike, blocks: Mapping[str, pd.DataFrame | Mapping[str, object]],
               comments: Iterable[str] = ()) -> None:
    """Write blocks (DataFrame -> ``loop_``, dict -> list block) atomically, RELION 5 layout."""
    header = "".join(f"# {c}\n" for c in comments)
    text = header + "".join(_block_text(name, table) for name, table in blocks.items())
    atomic_write_text(path, text)


_IMAGE_NAME = re.compile(r"^\s*(\d+)@(.+)$")


def split_image_name(name: str) -> tuple[int, str]:
    """``'000012@Extract/a.mrcs'`` or ``'12@a.mrcs'`` -> ``(12, 'Extract/a.mrcs')`` (1-based index).

    A name without ``@`` is a single image: index 1.
    """
    m = _IMAGE_NAME.match(str(name))
    if m is None:
        return 1, str(name).strip()
    return int(m.group(1)), m.group(2).strip()


def join_image_name(index: int, stack: str, padding: int = 0) -> str:
    """``(12, 'a.mrcs')`` -> ``'12@a.mrcs'`` (RELION polishing style) or zero-padded to ``padding``."""
    return f"{index:0{padding}d}@{stack}" if padding else f"{index}@{stack}"


def required_column(table, label: str, path, block: str):
    """Column ``label`` of block ``data_<block>`` of the STAR file ``path`` as a numpy array; StarError naming
    the file, the block and the label when it is missing."""
    if label not in table.columns:
        raise StarError(f"STAR file {path}: data_{block} lacks column {label}")
    return table[label].to_numpy()
