"""The ``polishplugin`` console script: dispatch ``polishplugin <command> [options]``.

Every program module supplies ``add_args(parser)`` and ``main(args) -> int``; the module docstring
becomes the ``--help`` text (first line = description, the rest = epilog).  Expected failures
(:class:`ProgramError`, STAR/MRC errors) end the program with one clear sentence and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from . import COMMANDS

__all__ = ["ProgramError", "build_parser", "run", "run_module"]


class ProgramError(RuntimeError):
    """An expected failure (bad input, missing file): printed as one sentence, exit code 1."""


def _parser_for(module: ModuleType, prog: str) -> argparse.ArgumentParser:
    doc = (module.__doc__ or "").strip().splitlines()
    parser = argparse.ArgumentParser(
        prog=prog, description=doc[0] if doc else None,
        epilog="\n".join(doc[1:]).strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_args(parser)
    return parser


def build_parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of one sub-command (used by tests and by Scipion argument builders)."""
    return _parser_for(importlib.import_module(COMMANDS[command]), f"polishplugin {command}")


def no_hugepage_advice() -> None:
    """Stop numpy from asking the kernel for transparent huge pages on large arrays.

    With the common ``defrag=madvise`` setting every first touch of a huge page may compact memory
    synchronously: on the 2-core test VM writing a fresh 50 MB array took 140 ms with the advice and
    24 ms without (``bench/README.md``), and the programs allocate one such array per frame and
    particle batch.  The hook is private in numpy; when it is missing nothing changes.
    """
    import numpy as np

    core = getattr(np, "_core", None) or getattr(np, "core", None)
    setter = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if setter is not None:
        setter(False)


def run_module(module: ModuleType, argv: list[str], prog: str) -> int:
    """Parse ``argv`` for ``module`` and run its ``main``, turning expected errors into exit code 1."""
    from ..io.mrc import MrcError
    from ..io.star import StarError

    no_hugepage_advice()

    parser = _parser_for(module, prog)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stdout)
    try:
        return int(module.main(args) or 0)
    except (ProgramError, StarError, MrcError, FileNotFoundError) as exc:
        print(f"{prog}: ERROR: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, folder blocked by a file, no permission: name the file
        where = exc.filename if exc.filename is not None else "an output file"
        print(f"{prog}: ERROR: {where}: {exc.strerror or exc} (check the path, free disk space and "
              "permissions; earlier outputs are untouched)", file=sys.stderr)
        return 1


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: polishplugin <command> [options]\n\ncommands:\n  " + "\n  ".join(sorted(COMMANDS)))
        sys.exit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"polishplugin: unknown command '{command}'; commands: {', '.join(sorted(COMMANDS))}",
              file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(COMMANDS[command])
    sys.exit(run_module(module, rest, f"polishplugin {command}"))
