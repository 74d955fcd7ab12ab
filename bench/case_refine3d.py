"""Benchmark: 3D auto-refine (``polishplugin refine3d``): one E-step against particles, box and
sampling, and the whole program on a synthetic set or the ``simulate --preset demo`` project.

Run alone: ``.venv/bin/python -m bench --only refine3d.estep refine3d.program`` or
``.venv/bin/python bench/case_refine3d.py`` (prints the E-step table).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    from bench.cases import register
except ImportError:  # run as a script
    def register(*_a, **_k):
        return lambda f: f


def _parse(size: str) -> dict:
    """``"n100_b32_o2"`` -> particles 100, box 32, HEALPix order 2 (``l`` instead of ``o``: local)."""
    parts = dict((p[0], p[1:]) for p in size.split("_"))
    order = parts.get("o") or parts.get("l")
    return {"n": int(parts["n"]), "box": int(parts["b"]), "order": int(order), "local": "l" in parts}


def _ops(backend: str):
    from polishplugin.core.refine.estep import NumpyOps

    if backend == "opencl":
        from polishplugin.core.opencl.estep_cl import OpenCLOps

        return OpenCLOps()
    return NumpyOps()


def estep_setup(n: int, box: int, order: int, local: bool, backend: str = "numpy"):
    """Synthetic D2 particles (SNR 1) and the true map; returns a callable running one E-step
    (``backend``: the E-step's projections/cross products in numpy or on the OpenCL device)."""
    from polishplugin.core.ctf import ctf_2d
    from polishplugin.core.geometry import euler_to_matrix, symmetry_matrices
    from polishplugin.core.refine.estep import EStepSettings, NoiseAccumulator, expectation, prepare_images
    from polishplugin.core.refine.fourier3d import Backprojector, map_to_grid, pixel_list
    from polishplugin.core.refine.sampling import OrientationGrid, angular_step_deg
    from polishplugin.core.refine.schedule import symmetry_aware_angle_deg
    from polishplugin.testing.refine_synthetic import blob_phantom, simulate_particles

    angpix = 96.0 / box
    vol = blob_phantom(box, "D2", n_blobs=16, blob_sigma_px=1.2 * box / 32)
    sim = simulate_particles(vol, n, angpix, snr=1.0, seed=1)
    ctf = np.stack([ctf_2d(p, box, angpix) for p in sim.ctf]).astype(np.float32)
    iy, ix, k = pixel_list(box, box / 2)
    shells = np.rint(np.sqrt((k ** 2).sum(1))).astype(int)
    old = sim.origins_px + np.random.default_rng(2).uniform(-0.5, 0.5, (n, 2))
    x, rounded = prepare_images(sim.images, old, 0.4 * box)
    sigma2 = np.full(len(k), 0.6 * sim.noise_sigma ** 2 / box ** 2 / 2)
    true = euler_to_matrix(*sim.angles_deg.T)
    ops = symmetry_matrices("D2")
    grid = map_to_grid(vol)
    fine = angular_step_deg(order, 1)
    settings = EStepSettings(box=box, angpix=angpix, coarse_radius=min(box / 2, 12), current_radius=box / 2,
                             offset_range_px=2 if local else 3, offset_step_px=1 if local else 2,
                             local_sigma_deg=2 * fine if local else None, ops=_ops(backend))
    orient = OrientationGrid(order, None if local else ops)

    def run():
        bp = Backprojector(box)
        res = expectation(grid, orient, x[:, iy, ix], ctf[:, iy, ix], sigma2, k, shells, old, rounded, true,
                          settings, bp, NoiseAccumulator(box // 2 + 1))
        bp.flush()
        est = euler_to_matrix(*np.array([r.angles for r in res]).T)
        err = symmetry_aware_angle_deg(est, true, ops)
        return {"median_err_deg": round(float(np.median(err)), 2), "fine_step_deg": fine,
                "n_orient": len(orient) if not local else "local"}
    return run


@register("refine3d.estep", sizes=("n50_b32_o2",),
          full_sizes=("n100_b32_o2", "n200_b32_o2", "n100_b64_o2", "n100_b32_o3", "n100_b32_l4", "n100_b64_l4"),
          backends=("numpy", "opencl"), warmup=False, repeats=1)
def refine3d_estep(size, backend):
    """One E-step + back-projection of one half: particles x box x HEALPix order (o: global, l: local)."""
    return estep_setup(**_parse(size), backend=backend)


@register("refine3d.program", sizes=("synthetic",), full_sizes=("synthetic", "demo"), backends=("numpy", "opencl"),
          warmup=False, repeats=1)
def refine3d_program(size, backend):
    """The whole ``polishplugin refine3d`` (all iterations): 100 synthetic D2 particles (box 32), or the
    simulated demo project (tutorial arguments); ``numpy`` runs with ``--device cpu``."""
    folder = tempfile.mkdtemp(prefix="bench_refine3d_")
    device = ["--device", "cpu"] if backend == "numpy" else []

    def run():
        from polishplugin.io.star import read_star
        from polishplugin.programs import refine3d
        from polishplugin.programs._cli import build_parser

        if size == "demo":
            from polishplugin.programs.simulate import simulate_project

            simulate_project(folder, preset="demo", seed=1)
            cwd = os.getcwd()
            os.chdir(folder)
            try:
                t0 = time.time()
                refine3d.main(build_parser("refine3d").parse_args([
                    "--i", "Refine3D/job021/run_data.star", "--o", "Refine3D/job027/run",
                    "--ref", "Refine3D/job021/run_class001.mrc", "--solvent_mask", "MaskCreate/job022/mask.mrc",
                    "--ini_high", "50", "--sym", "D2", "--ctf", "--ctf_corrected_ref", "--particle_diameter", "100",
                    "--zero_mask", "--flatten_solvent", "--solvent_correct_fsc", "--healpix_order", "2",
                    "--auto_local_healpix_order", "4", "--offset_range", "5", "--offset_step", "2",
                    "--low_resol_join_halves", "40", "--norm", "--scale", "--random_seed", "1", *device]))
                g = read_star("Refine3D/job027/run_model.star")["model_general"]
                n_it = len(list(Path("Refine3D/job027").glob("run_it*_data.star")))
            finally:
                os.chdir(cwd)
            return {"resolution_A": float(g["rlnCurrentResolution"].iloc[0]), "seconds": round(time.time() - t0, 1),
                    "iterations": n_it}
        from polishplugin.tests.programs.test_refine3d import run_refine, write_synthetic_project

        proj = write_synthetic_project(Path(folder) / "p", box=32, n=100, snr=1.0, angpix=3.0)
        run_refine(proj, Path(folder) / "r" / "run", ["--iter", "30", *device])
        g = read_star(Path(folder) / "r" / "run_model.star")["model_general"]
        return {"resolution_A": float(g["rlnCurrentResolution"].iloc[0])}
    return run


if __name__ == "__main__":
    sizes = sys.argv[1:] or ["n50_b32_o2", "n100_b32_o2", "n100_b64_o2", "n100_b32_l4"]
    for s in sizes:
        f = refine3d_estep(s, "numpy")
        t = time.time()
        notes = f()
        print(f"{s:16s} {time.time() - t:7.2f} s  {notes}", flush=True)
