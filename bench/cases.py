"""Registry of benchmark cases.

A case is a function ``f(size, backend)`` decorated with :func:`register`.  It may do its setup and
then return a zero-argument callable: only that callable is timed (and its peak memory measured).
If it returns anything else, the whole call is timed.  The timed callable may return a ``dict`` of
extra numbers (e.g. an accuracy) that end up in the "notes" column.

Example (in ``bench/case_<step>.py``, auto-imported by the harness)::

    from bench.cases import register

    @register("postprocess", sizes=(64,), full_sizes=(64, 128, 256), backends=("numpy",))
    def postprocess(size, backend):
        half1, half2 = make_maps(size)               # setup: not timed
        def run():
            result = run_postprocess(half1, half2)  # timed
            return {"res_A": result.resolution}
        return run

``sizes`` are used with ``--quick``, ``full_sizes`` (default: ``sizes``) otherwise.  A size may be
any short printable value (an int box, or a string such as ``"tiny"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Case", "CASES", "register"]


@dataclass
class Case:
    name: str
    func: Callable[[Any, str], Any]
    sizes: tuple = ()
    full_sizes: tuple = ()
    backends: tuple = ("numpy",)
    description: str = ""
    warmup: bool = True          # call once untimed first (kernel builds, caches); off for slow cases
    repeats: int = 3             # best of this many timed runs (1 with --quick)
    tags: tuple = field(default_factory=tuple)


#: name -> Case, in registration order
CASES: dict[str, Case] = {}


def register(name: str, sizes: tuple = (None,), full_sizes: tuple | None = None,
             backends: tuple = ("numpy",), description: str = "", warmup: bool = True,
             repeats: int = 3, tags: tuple = ()):
    """Decorator registering ``func(size, backend)`` as benchmark case ``name`` (unique)."""
    def deco(func):
        if name in CASES:
            raise ValueError(f"benchmark case {name!r} registered twice")
        doc = description or (func.__doc__ or "").strip().splitlines()[0:1]
        CASES[name] = Case(name, func, tuple(sizes), tuple(full_sizes or sizes), tuple(backends),
                           doc if isinstance(doc, str) else (doc[0] if doc else ""), warmup, repeats,
                           tuple(tags))
        return func
    return deco
