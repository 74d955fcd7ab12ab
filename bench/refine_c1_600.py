"""Whole 3D auto-refine of a 600-particle C1 set at box 96 (1.5 Å/px) against the truth.

The set: a C1 phantom of 160 Gaussian blobs inside a 40-px radius (box 96 at 1.5 Å/px), 600 particles at
uniformly random poses with CTF (defocus 1-2.5 µm), shifts up to 2 px and white noise (``--snr``); the reference
is the true map (the program low-passes it to ``--ini_high 30``).  The refine runs as the user runs it
(``python -m polishplugin refine3d``, a child process) with the GUI's defaults of the tutorial's step 27:
7.5° global searches (``--healpix_order 2``), local from 1.8° (``--auto_local_healpix_order 4``), offsets 5 px in
steps of 1 px (``--offset_range 5 --offset_step 2``), ``--norm --scale --zero_mask --flatten_solvent
--solvent_correct_fsc --low_resol_join_halves 40``, a particle diameter of 130 Å.

Prints one row: wall and CPU seconds (the child's), iterations (global ones), the last HEALPix order, the
median angle error against the truth, the FSC = 0.143 shell of the unfiltered half maps and the reported
resolution.  ``--code DIR`` runs the refine of another checkout (a git worktree of an older commit) on the
same set: the before/after rows of bench/README.md.

    .venv/bin/python bench/refine_c1_600.py --out /tmp/c1_600 [--code /work/wt/base] [--tag before]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polishplugin.core.fsc import fsc, resolution_shell  # noqa: E402
from polishplugin.io import labels as L  # noqa: E402
from polishplugin.io.mrc import read_mrc  # noqa: E402
from polishplugin.io.star import read_star  # noqa: E402
from polishplugin.testing.refine_synthetic import blob_phantom  # noqa: E402
from polishplugin.tests.programs.test_refine3d import _angle_errors, write_synthetic_project  # noqa: E402

BOX, ANGPIX, N = 96, 1.5, 600
REFINE_OPTIONS = ["--ini_high", "30", "--sym", "C1", "--ctf", "--particle_diameter", "130", "--zero_mask",
                  "--healpix_order", "2", "--auto_local_healpix_order", "4", "--offset_range", "5",
                  "--offset_step", "2", "--norm", "--scale", "--flatten_solvent", "--solvent_correct_fsc",
                  "--low_resol_join_halves", "40", "--random_seed", "1"]


def make_set(folder: Path, snr: float) -> dict:
    vol = blob_phantom(BOX, "C1", n_blobs=160, radius_px=40, blob_sigma_px=1.2, seed=3)
    return write_synthetic_project(folder, box=BOX, angpix=ANGPIX, n=N, sym="C1", snr=snr, volume=vol, seed=3)


def run(proj: dict, out: Path, code: Path, extra: list[str]) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(code))
    cmd = [sys.executable, "-m", "polishplugin", "refine3d", "--i", str(proj["star"]), "--o", str(out),
           "--ref", str(proj["ref"]), "--solvent_mask", str(proj["mask"]), *REFINE_OPTIONS, *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(out.parent / "refine.log", "w") as log:
        rc = subprocess.run(cmd, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"refine3d failed (exit {rc}); see {out.parent / 'refine.log'}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    models = sorted(out.parent.glob("run_it*_model.star"))
    general = [read_star(m)["model_general"].iloc[0] for m in models]
    h1, _ = read_mrc(f"{out}_half1_class001_unfil.mrc")
    h2, _ = read_mrc(f"{out}_half2_class001_unfil.mrc")
    sampling = read_star(f"{out}_sampling.star")["sampling_general"].iloc[0]
    return {"wall_s": wall, "cpu_s": cpu, "iterations": len(models),
            "global_iterations": sum(int(g[L.ORIENTATIONAL_PRIOR_MODE]) == 0 for g in general),
            "order": int(sampling[L.HEALPIX_ORDER]),
            "angle_err_deg": float(np.median(_angle_errors(Path(f"{out}_data.star"), proj))),
            "shell": resolution_shell(fsc(h1, h2), 0.143),
            "resolution_a": float(read_star(f"{out}_model.star")["model_general"].iloc[0][L.CURRENT_RESOLUTION])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="working folder (the simulated set and the refines)")
    ap.add_argument("--code", default=str(Path(__file__).resolve().parents[1]),
                    help="checkout whose refine3d runs (default: this one)")
    ap.add_argument("--tag", default="this checkout", help="name of the row")
    ap.add_argument("--snr", type=float, default=0.05, help="signal-to-noise ratio of the particles (0.05)")
    ap.add_argument("extra", nargs="*", help="further refine3d options (after --)")
    a = ap.parse_args()
    folder = Path(a.out)
    proj = make_set(folder / "set", a.snr)
    tag = "".join(c if c.isalnum() else "_" for c in a.tag)
    r = run(proj, folder / tag / "run", Path(a.code).resolve(), a.extra)
    load = os.getloadavg()
    print(f"machine: {platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} cpu), "
          f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; code: {a.code}")
    print("| run | wall (s) | CPU (s) | iterations (global) | last order | angle error | FSC 0.143 shell (unfil) "
          "| reported |")
    print(f"| {a.tag} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['iterations']} ({r['global_iterations']}) | "
          f"{r['order']} | {r['angle_err_deg']:.2f}° | {r['shell']} | {r['resolution_a']:.2f} Å |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
