"""Wall time of whole console commands (start-up, imports, reading, compute, writing, figures).

Times ``polishplugin postprocess`` at 160^3 and 256^3 (half maps + mask + MTF, ``--auto_bfac``) and
``polishplugin local_resolution`` at 128^3 (RELION's default --locres settings: 25 Å sampling, B -100, MTF
and mask), each run as a child process ``<python> -m polishplugin ...`` with ``PYTHONPATH`` set to one
checkout, best of ``--repeats`` wall times.  Several checkouts (``--checkout label=path``, e.g. a
``git worktree`` of main beside this one) are timed in the same run, interleaved repeat by repeat, so
that their rows share the machine's load; the table also gives the child's CPU time (user + system) of the
best run and the numbers the command wrote (resolution, B-factor, median local resolution), which
must agree between checkouts.

Targets (issue 21, RELION 5 on this 2-core VM): postprocess 160^3 <= 1.2 s (RELION 1.16 s), 256^3
<= 4 s (RELION 10 s); local_resolution 128^3 <= 2.5 s (RELION 23 s on 2 ranks).

  .venv/bin/python bench/whole_command_times.py --checkout before=/work/wt/h11base --checkout after=.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOCRES_ANGPIX = 1.244


def make_locres_inputs(size: int, folder: Path) -> dict:
    """Planted 4 Å / 8 Å half maps (:func:`two_resolution_half_maps`), a soft spherical mask and a linear MTF."""
    from polishplugin.core.filters import raised_cosine_sphere
    from polishplugin.io.mrc import write_mrc
    from polishplugin.testing.planted_maps import two_resolution_half_maps

    half1, half2, _ = two_resolution_half_maps(size, LOCRES_ANGPIX, (4.0, 8.0), noise=0.3, seed=1)
    files = {"half1": str(folder / "run_half1_class001_unfil.mrc"),
             "half2": str(folder / "run_half2_class001_unfil.mrc"),
             "mask": str(folder / "mask.mrc"), "mtf": str(folder / "mtf.star")}
    write_mrc(files["half1"], half1, LOCRES_ANGPIX)
    write_mrc(files["half2"], half2, LOCRES_ANGPIX)
    write_mrc(files["mask"], raised_cosine_sphere(half1.shape, 0.38 * size, 0.05 * size).astype(np.float32),
              LOCRES_ANGPIX)
    rows = "".join(f"{x:.5f} {1.0 - 0.6 * x:.6f}\n" for x in np.linspace(0, 0.5, 201))
    Path(files["mtf"]).write_text("data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n" + rows)
    return files


def cases(work: Path, threads: int) -> list[dict]:
    """The timed commands: name, argv after ``polishplugin``, output root and how to read its numbers."""
    from bench.case_postprocess import _argv as postprocess_argv
    from bench.case_postprocess import make_inputs as make_postprocess_inputs

    out = []
    for size in (160, 256):
        folder = work / f"pp{size}"
        folder.mkdir(parents=True, exist_ok=True)
        files = make_postprocess_inputs(size, str(folder))
        out.append({"name": f"postprocess {size}^3", "cmd": "postprocess",
                    "argv": lambda o, f=files: ["postprocess", *postprocess_argv(f, o)], "read": _postprocess_numbers})
    folder = work / "lr128"
    folder.mkdir(parents=True, exist_ok=True)
    files = make_locres_inputs(128, folder)
    out.append({"name": f"local_resolution 128^3 --j {threads}", "cmd": "local_resolution",
                "argv": lambda o, f=files: ["local_resolution", "--i", f["half1"], "--o", o, "--mask", f["mask"],
                                            "--mtf", f["mtf"], "--j", str(threads)],
                "read": _locres_numbers})
    return out


def _postprocess_numbers(root: str) -> str:
    from polishplugin.io.postprocess import read_postprocess

    post = read_postprocess(root + ".star")
    return f"{post.final_resolution_a:.3f} Å, B {post.bfactor_a2:.2f}"


def _locres_numbers(root: str) -> str:
    from polishplugin.io.mrc import read_mrc

    locres, _ = read_mrc(root + "_locres.mrc")
    inside = locres[locres > 0]
    return f"median {np.median(inside):.3f} Å"


def run_once(python: str, checkout: str, argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child process ``python -m polishplugin argv``."""
    env = dict(os.environ, PYTHONPATH=checkout, MPLBACKEND="Agg")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run([python, "-m", "polishplugin", *argv], env=env, cwd=checkout, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:1])} in {checkout} failed:\n{res.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", default=[],
                        help="label=path of a checkout to time (default: this one as 'this')")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="--j of local_resolution (RELION's run: 2 ranks)")
    parser.add_argument("--only", nargs="*", default=None, help="case names starting with these words")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    checkouts = [tuple(c.split("=", 1)) for c in args.checkout] or [("this", str(ROOT))]
    checkouts = [(label, str(Path(path).resolve())) for label, path in checkouts]
    work = Path(tempfile.mkdtemp(prefix="whole_cmd_"))
    todo = [c for c in cases(work, args.threads) if not args.only or any(c["name"].startswith(o) for o in args.only)]
    load = os.getloadavg()
    best: dict = {}
    for case in todo:
        for _rep in range(args.repeats):
            for label, path in checkouts:
                root = str(work / "out" / label / case["cmd"] / "run")
                Path(root).parent.mkdir(parents=True, exist_ok=True)
                wall, cpu = run_once(args.python, path, case["argv"](root))
                key = (case["name"], label)
                if key not in best or wall < best[key][0]:
                    best[key] = (wall, cpu, case["read"](root))
    print(f"\nmachine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cpu; "
          f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average at start "
          f"{load[0]:.2f} / end {os.getloadavg()[0]:.2f}; best of {args.repeats} (wall), CPU of that run\n")
    print("| command | " + " | ".join(f"{label} wall (s) | {label} CPU (s) | {label} numbers" for label, _ in checkouts)
          + " |")
    print("|---|" + "---|---|---|" * len(checkouts))
    for case in todo:
        cells = []
        for label, _ in checkouts:
            wall, cpu, numbers = best[(case["name"], label)]
            cells.append(f"{wall:.2f} | {cpu:.2f} | {numbers}")
        print(f"| {case['name']} | " + " | ".join(cells) + " |")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
