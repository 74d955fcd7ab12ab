"""Layering (DESIGN.md "Layers"): a module imports only from layers below it.

    core < io < plots < programs < convert < protocols < viewers < stage

``core`` imports no pyworkflow, pwem or mpi4py and no other layer; ``io`` and ``plots`` import no Scipion
either; protocols and viewers import no program; no production module imports ``polishplugin.tests`` or
``polishplugin.testing`` (test helpers and synthetic-data makers).  The top-level modules ``constants`` and
``bibtex`` sit below everything; ``polishplugin/__init__.py`` (the Scipion ``Plugin``) is read by Scipion
only.  :func:`upward_imports` is the checker; the tests below also plant an upward import to show that it
fails.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import polishplugin

PACKAGE = Path(polishplugin.__file__).parent
SCIPION_OR_MPI = ("pyworkflow", "pwem", "mpi4py")

#: rank of each layer: a module may import a layer of lower or equal rank only
LAYERS = {"constants": 0, "bibtex": 0, "core": 1, "io": 2, "plots": 3, "programs": 4, "convert": 5,
          "protocols": 6, "viewers": 7, "stage": 8}
#: packages production code must never import
TEST_ONLY = ("tests", "testing")
#: layers that run programs only through their command line (Scipion's runJob), never by importing them
NO_PROGRAMS = ("convert", "protocols", "viewers")
#: layers that must run without Scipion (and, but for programs' lazy mpi4py, without MPI)
NO_SCIPION = ("core", "io", "plots", "programs", "constants", "bibtex")


def _layer_of(relative: Path) -> str | None:
    """The layer of a file given relative to the package root (None for the package's own __init__)."""
    head = relative.parts[0]
    name = head[:-3] if head.endswith(".py") else head
    return None if name in ("__init__", "__main__") else name


def _imported_polishplugin_modules(path: Path, relative: Path) -> list[tuple[int, str]]:
    """``(line, first component below polishplugin)`` of every import of a polishplugin module in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = ["polishplugin", *relative.parts[:-1]]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                names = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
                if node.module == "polishplugin":
                    names = [f"polishplugin.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "polishplugin" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def _third_party(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def upward_imports(package: Path = PACKAGE) -> list[str]:
    """Every import that points up the layers, into test code, or (in a Scipion-free layer) into Scipion/MPI."""
    offenders = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        layer = _layer_of(relative)
        if layer is None or layer in TEST_ONLY:
            continue
        rank = LAYERS.get(layer)
        if rank is None:
            offenders.append(f"{relative}: '{layer}' is not a known layer (add it to LAYERS)")
            continue
        for line, target in _imported_polishplugin_modules(path, relative):
            if target in TEST_ONLY:
                offenders.append(f"{relative}:{line}: {layer} imports polishplugin.{target} (test code)")
            elif LAYERS.get(target, -1) > rank:
                offenders.append(f"{relative}:{line}: {layer} imports polishplugin.{target} (a layer above it)")
            elif target == "programs" and layer in NO_PROGRAMS:
                offenders.append(f"{relative}:{line}: {layer} imports polishplugin.programs (run it with runJob)")
        if layer in NO_SCIPION:
            banned = SCIPION_OR_MPI if layer != "programs" else ("pyworkflow", "pwem")
            for name in sorted(_third_party(path) & set(banned)):
                offenders.append(f"{relative}: {layer} imports {name}")
    return offenders


def test_no_module_imports_a_layer_above_it():
    offenders = upward_imports()
    assert not offenders, "imports against the layering:\n" + "\n".join(offenders)
    assert len(list((PACKAGE / "core").rglob("*.py"))) >= 5


def test_checker_fails_on_a_planted_upward_import(tmp_path):
    """A copy of the package with one planted import per kind of offence: each is reported."""
    import shutil

    copy = tmp_path / "polishplugin"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    plants = {
        "core/fourier.py": "from ..programs import _cli\n",
        "io/star.py": "from polishplugin.plots import postprocess\n",
        "programs/mask_create.py": "from ..stage import workflow\n",
        "protocols/protocol_mask_create.py": "from ..programs import mask_create\n",
        "viewers/viewer_polish.py": "from polishplugin.programs.motion_refine import main\n",
        "plots/postprocess.py": "from ..testing import tiny_project\n",
        "core/mask.py": "import pwem\n",
    }
    for name, line in plants.items():
        target = copy / name
        target.write_text(target.read_text() + "\n" + line)
    report = "\n".join(upward_imports(copy))
    for name in plants:
        assert name in report, f"planted import in {name} not reported:\n{report}"


_BLOCKED_IMPORT = """
import sys
for name in {forbidden!r}:
    sys.modules[name] = None          # any 'import name' now raises ImportError
import importlib, pkgutil
import polishplugin
for sub in ("core", "io", "plots"):
    package = importlib.import_module("polishplugin." + sub)
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
import polishplugin.programs._cli
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


def test_core_io_plots_programs_import_without_scipion_or_mpi():
    code = _BLOCKED_IMPORT.format(forbidden=SCIPION_OR_MPI)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LOADED []" in result.stdout
    assert "NOPLUGIN polishplugin.Plugin needs Scipion" in result.stdout
