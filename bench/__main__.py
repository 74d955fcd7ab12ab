"""``python -m bench [--quick] [--only NAME ...] [--backend B] [--list]``: time the registered cases.

Results are merged into ``bench/results.json`` (keyed by case, backend, size) and the whole table is
rendered to ``bench/results.md``.  Peak memory is the tracemalloc peak of the timed call (numpy and
Python allocations; OpenCL device buffers are not counted) and the process's maximum RSS so far.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib
import json
import logging
import os
import platform
import resource
import sys
import time
import tracemalloc

from bench.cases import CASES

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_JSON = os.path.join(HERE, "results.json")
RESULTS_MD = os.path.join(HERE, "results.md")


def import_cases() -> list[str]:
    """Import every ``bench/case_*.py``; a module that fails to import is reported and skipped."""
    failed = []
    for path in sorted(glob.glob(os.path.join(HERE, "case_*.py"))):
        mod = "bench." + os.path.splitext(os.path.basename(path))[0]
        try:
            importlib.import_module(mod)
        except Exception as exc:  # one broken case file must not stop the others
            failed.append(f"{mod}: {type(exc).__name__}: {exc}")
    return failed


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.system()} {cpu}, {os.cpu_count()} cpu"


def opencl_device() -> str:
    try:
        from polishplugin.core.opencl import runtime
        return runtime.get_context()[2].label
    except Exception:
        return "none"


def time_case(case, size, backend, quick: bool) -> dict:
    setup = lambda: case.func(size, backend)  # noqa: E731
    runner = setup()
    timed = runner if callable(runner) else setup
    notes = {}
    if case.warmup:
        out = timed()
        if isinstance(out, dict):
            notes = out
        if not callable(runner):
            pass
    repeats = 1 if quick else max(1, case.repeats)
    best = float("inf")
    peak = 0
    for _ in range(repeats):
        tracemalloc.start()
        t0 = time.perf_counter()
        out = timed()
        dt = time.perf_counter() - t0
        _, pk = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        best = min(best, dt)
        peak = max(peak, pk)
        if isinstance(out, dict):
            notes = out
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"time_s": best, "peak_mb": peak / 2 ** 20, "rss_mb": rss, "notes": notes, "repeats": repeats}


def fmt_notes(notes) -> str:
    parts = []
    for k, v in (notes or {}).items():
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def render(results: dict) -> str:
    lines = ["# Benchmark results", "",
             "Written by `python -m bench` (merged over runs; see bench/README.md). "
             "time = best of `repeats` timed calls; peak MB = tracemalloc peak of the timed call "
             "(host numpy/Python memory only); RSS MB = process maximum resident size at that point.", "",
             "| case | backend | size | time (s) | peak MB | RSS MB | notes | machine | OpenCL device | command "
             "| date |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(results):
        r = results[key]
        lines.append(f"| {r['case']} | {r['backend']} | {r['size']} | {r['time_s']:.4g} | {r['peak_mb']:.1f} | "
                     f"{r['rss_mb']:.0f} | {fmt_notes(r.get('notes'))} | {r['machine']} | {r['device']} | "
                     f"`{r['command']}` | {r['date']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one timed run per case")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these cases (prefix match)")
    ap.add_argument("--backend", choices=("numpy", "opencl"), help="run only this backend")
    ap.add_argument("--list", action="store_true", help="list the registered cases and exit")
    ap.add_argument("--no-save", action="store_true", help="print only; do not update results.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    failed = import_cases()
    for f in failed:
        print(f"warning: could not import {f}", file=sys.stderr)
    if args.list:
        for c in CASES.values():
            print(f"{c.name:32s} backends={','.join(c.backends):14s} quick={c.sizes} full={c.full_sizes}  "
                  f"{c.description}")
        return 0
    selected = [c for c in CASES.values()
                if not args.only or any(c.name.startswith(o) for o in args.only)]
    if not selected:
        print("no benchmark case matches", file=sys.stderr)
        return 2
    results = {}
    if os.path.exists(RESULTS_JSON):
        with open(RESULTS_JSON) as fh:
            results = json.load(fh)
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mach = machine()
    status = 0
    for case in selected:
        for size in (case.sizes if args.quick else case.full_sizes):
            for backend in case.backends:
                if args.backend and backend != args.backend:
                    continue
                dev = opencl_device() if backend == "opencl" else "-"
                if backend == "opencl" and dev == "none":
                    print(f"{case.name:28s} {backend:7s} {size!s:>8s}   skipped (no OpenCL)")
                    continue
                try:
                    r = time_case(case, size, backend, args.quick)
                except Exception as exc:
                    print(f"{case.name:28s} {backend:7s} {size!s:>8s}   FAILED: {type(exc).__name__}: {exc}")
                    status = 1
                    continue
                print(f"{case.name:28s} {backend:7s} {size!s:>8s} {r['time_s']:10.4f} s {r['peak_mb']:9.1f} MB"
                      f"  {fmt_notes(r['notes'])}", flush=True)
                key = f"{case.name}|{backend}|{size}"
                results[key] = dict(case=case.name, backend=backend, size=str(size), machine=mach, device=dev,
                                    command=command, date=date, **r)
    if not args.no_save:
        tmp = RESULTS_JSON + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(results, fh, indent=1, sort_keys=True)
        os.replace(tmp, RESULTS_JSON)
        tmp = RESULTS_MD + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(render(results))
        os.replace(tmp, RESULTS_MD)
    return status


if __name__ == "__main__":
    sys.exit(main())
