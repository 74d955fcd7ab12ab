"""docs/bad_input.rst cannot rot: every row names a pytest node id that exists.

A row of the list-table is ``* - where`` / ``- bad input`` / ``- message`` / ``- test``; the test cell
holds ``path::[Class::]function[param]``.  The check is static (no import of the test modules): the
file exists, the function (inside the class when given) is defined in it, and a parametrised id's
first component appears as a literal in that file.  Strict xfail rows must be tagged KNOWN GAP and
vice versa, so the table says which rows are not handled yet.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TABLE = ROOT / "docs" / "bad_input.rst"
NODE = re.compile(r"``(polishplugin/tests/[\w/]+\.py)::([\w:]+)(?:\[([^\]]+)\])?``")


def parse_rows(text: str) -> list[list[str]]:
    """The list-table rows (header row dropped) as lists of cell texts."""
    rows: list[list[str]] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith(".. list-table::"):
            in_table = True
            continue
        if in_table and line and not line.startswith(" "):
            in_table = False
        if not in_table:
            continue
        s = line.strip()
        if s.startswith("* - "):
            rows.append([s[4:]])
        elif s.startswith("- ") and rows:
            rows[-1].append(s[2:])
        elif s and rows and not s.startswith(":"):
            rows[-1][-1] += " " + s
    return rows[1:]


def _defined(tree: ast.Module, names: list[str]) -> ast.AST | None:
    scope: list[ast.stmt] = tree.body
    node = None
    for name in names:
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name), None)
        if node is None:
            return None
        scope = node.body
    return node


def _is_strict_xfail(func: ast.AST, param: str | None = None) -> bool:
    """A strict xfail decorator on the function, or (for ``param``) in its ``pytest.param(..., marks=...)``."""
    first = param.split("-")[0] if param else None
    for dec in getattr(func, "decorator_list", []):
        src = ast.unparse(dec)
        if "parametrize" in src:
            for call in ast.walk(dec):
                if (isinstance(call, ast.Call) and ast.unparse(call.func).endswith("param") and call.args
                        and isinstance(call.args[0], ast.Constant) and str(call.args[0].value) == first):
                    psrc = ast.unparse(call)
                    if "xfail" in psrc and "strict=True" in psrc:
                        return True
        elif "xfail" in src and "strict=True" in src:
            return True
    return False


def check_node(node_text: str) -> tuple[bool, bool, str]:
    """(exists, is strict xfail, why not) for one ``path::names[param]`` cell."""
    m = NODE.search(node_text)
    if not m:
        return False, False, f"no test node id in {node_text!r}"
    path, names, param = m.group(1), m.group(2).split("::"), m.group(3)
    file = ROOT / path
    if not file.is_file():
        return False, False, f"{path} does not exist"
    source = file.read_text()
    func = _defined(ast.parse(source), names)
    if func is None:
        return False, False, f"{'::'.join(names)} is not defined in {path}"
    if param is not None:
        first = param.split("-")[0]
        if f'"{first}"' not in source and f"'{first}'" not in source and first not in re.findall(r"[\w.]+", source):
            return False, False, f"parameter {param!r} of {names[-1]} not found in {path}"
    return True, _is_strict_xfail(func, param), ""


def test_table_parses_into_many_rows():
    rows = parse_rows(TABLE.read_text())
    assert len(rows) >= 40
    assert all(len(r) == 4 for r in rows), [r for r in rows if len(r) != 4]


def test_every_row_names_an_existing_test():
    problems = []
    for row in parse_rows(TABLE.read_text()):
        ok, _, why = check_node(row[3])
        if not ok:
            problems.append(f"{row[0]} / {row[1]}: {why}")
    assert not problems, "\n".join(problems)


def test_known_gaps_are_strict_xfails_and_vice_versa():
    problems = []
    for row in parse_rows(TABLE.read_text()):
        ok, xfail, _ = check_node(row[3])
        gap = "KNOWN GAP" in row[1]
        if ok and xfail != gap:
            problems.append(f"{row[3]}: strict xfail={xfail} but row {'is' if gap else 'is not'} a KNOWN GAP")
    assert not problems, "\n".join(problems)


def test_issue_11_categories_are_covered():
    """The issue's minimum list of bad inputs each has at least one row."""
    text = " ".join(" ".join(r[:2]) for r in parse_rows(TABLE.read_text())).lower()
    for needle in ("pixel", "different shapes", "outside [0, 1]", "nan", "truncated", "corrupt", "tiff",
                   "missing on disk", "has no movie", "fewer frames", "empty particle set", "unknown symmetry",
                   "not increasing", "not writable", "disk full"):
        assert needle in text, needle


@pytest.mark.parametrize("cell, ok", [
    ("``polishplugin/tests/reliability/test_bad_input_table.py::test_every_row_names_an_existing_test``", True),
    ("``polishplugin/tests/reliability/test_bad_input_table.py::test_no_such_test``", False),
    ("``polishplugin/tests/reliability/no_such_file.py::test_x``", False),
    ("``polishplugin/tests/reliability/test_atomic_outputs.py::test_disk_full_keeps_earlier_outputs[refine9d]``",
     False),
    ("no id at all", False),
])
def test_checker_catches_rot(cell, ok):
    assert check_node(cell)[0] is ok
