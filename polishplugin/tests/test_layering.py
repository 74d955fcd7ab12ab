"""Layering: the numeric core, the programs and the STAR/MRC I/O import without Scipion or MPI,
and no file under polishplugin/core imports pyworkflow, pwem or mpi4py."""

import ast
import subprocess
import sys
from pathlib import Path

import polishplugin

PACKAGE = Path(polishplugin.__file__).parent
FORBIDDEN = ("pyworkflow", "pwem", "mpi4py")

_BLOCKED_IMPORT = """
import sys
for name in {forbidden!r}:
    sys.modules[name] = None          # any 'import name' now raises ImportError
import polishplugin, polishplugin.core, polishplugin.programs._cli
import polishplugin.io.star, polishplugin.io.mrc, polishplugin.io.labels
import polishplugin.io.particles, polishplugin.io.movies, polishplugin.io.postprocess, polishplugin.io.polish, polishplugin.io.refine
import polishplugin.io.mtf
import pkgutil, importlib
for info in pkgutil.walk_packages(polishplugin.core.__path__, "polishplugin.core."):
    importlib.import_module(info.name)
from polishplugin.programs import COMMANDS
for module in COMMANDS.values():   # every program runs without Scipion (mpi4py is imported lazily)
    importlib.import_module(module)
loaded = sorted(n for n in {forbidden!r} if sys.modules.get(n) is not None)
print("LOADED", loaded)
try:
    polishplugin.Plugin
except AttributeError as exc:
    print("NOPLUGIN", exc)
"""


def test_core_programs_convert_import_without_scipion_or_mpi():
    code = _BLOCKED_IMPORT.format(forbidden=FORBIDDEN)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LOADED []" in result.stdout
    assert "NOPLUGIN polishplugin.Plugin needs Scipion" in result.stdout


def _imported_modules(path: Path) -> set:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_core_file_imports_scipion_or_mpi():
    offenders = {str(p.relative_to(PACKAGE)): sorted(_imported_modules(p) & set(FORBIDDEN))
                 for p in (PACKAGE / "core").rglob("*.py")}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"core files importing Scipion/MPI: {offenders}"
    assert len(list((PACKAGE / "core").rglob("*.py"))) >= 5


def test_core_does_not_import_upper_layers():
    upper = ("polishplugin.protocols", "polishplugin.viewers", "polishplugin.programs", "polishplugin.convert")
    offenders = []
    for path in (PACKAGE / "core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                absolute = module if node.level == 0 else None
                if node.level >= 2 and module.split(".")[0] in ("protocols", "viewers", "programs", "convert"):
                    offenders.append(f"{path.name}: from {'.' * node.level}{module}")
                if absolute and absolute.startswith(upper):
                    offenders.append(f"{path.name}: from {absolute}")
    assert not offenders, offenders
