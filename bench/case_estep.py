"""Benchmark: one auto-refine E-step (``core.refine.estep.expectation``) with the numpy backend
(``NumpyOps``) and the OpenCL one (``estep_cl.OpenCLOps`` with its defaults).

Size ``b64_c40_g2_n32``: box 64, current size 40 (623 pixels; the coarse pass uses the same pixels, as
``refine3d`` does at HEALPix order 2 for a 80 Å particle at 1.5 Å/px), 32 particles, C1.  ``g2``: global
search at HEALPix order 2 (4608 orientations) with offset range 5 / step 2 px (21 translations); ``l3``:
local search at order 3 (sigma 2 fine steps, offset range 2 / step 1 px: 13 translations) started from
the true poses.  Pass 2 and the back-projection and noise sums are included.  The notes give the seconds
spent inside ``ops.project`` and ``ops.cross`` and the median orientation error.

Run: ``.venv/bin/python -m bench --only estep``.  ``.venv/bin/python bench/case_estep.py`` prints the two
kernels alone on the pass-1 products (numpy vs OpenCL with everything on the device).
"""

from __future__ import annotations

import sys
import time

import numpy as np

try:
    from bench.cases import register
except ImportError:  # run as a script
    def register(*_a, **_k):
        return lambda f: f


class _Timed:
    """Wraps an ops object and adds up the seconds of its methods."""

    def __init__(self, ops):
        self.ops, self.name, self.seconds = ops, ops.name, {"project": 0.0, "cross": 0.0, "spread": 0.0}

    def _timed(self, what, *args):
        t0 = time.perf_counter()
        out = getattr(self.ops, what)(*args)
        self.seconds[what] += time.perf_counter() - t0
        return out

    def project(self, *args):
        return self._timed("project", *args)

    def cross(self, *args):
        return self._timed("cross", *args)

    def spread(self, *args):
        return self._timed("spread", *args)


def _parse(size: str) -> dict:
    """``"b64_c40_g2_n32"`` -> box 64, current size 40, global order 2 (``l``: local), 32 particles."""
    parts = dict((p[0], p[1:]) for p in size.split("_"))
    return {"box": int(parts["b"]), "current": int(parts["c"]), "order": int(parts.get("g") or parts["l"]),
            "local": "l" in parts, "n": int(parts["n"])}


def _ops(backend: str):
    if backend == "numpy":
        from polishplugin.core.refine.estep import NumpyOps
        return NumpyOps()
    from polishplugin.core.opencl.estep_cl import OpenCLOps
    return OpenCLOps()


def workload(box: int, current: int, order: int, local: bool, n: int, backend: str):
    """Synthetic particles (SNR 1) of a C1 blob map; returns a callable running one E-step."""
    from polishplugin.core.ctf import ctf_2d
    from polishplugin.core.geometry import euler_to_matrix
    from polishplugin.core.refine.estep import EStepSettings, NoiseAccumulator, expectation, prepare_images
    from polishplugin.core.refine.fourier3d import Backprojector, map_to_grid, pixel_list
    from polishplugin.core.refine.sampling import OrientationGrid, angular_step_deg, rotation_angle_deg
    from polishplugin.testing.refine_synthetic import blob_phantom, simulate_particles

    angpix = 1.5
    vol = blob_phantom(box, "C1", n_blobs=24, blob_sigma_px=1.5 * box / 32, seed=4)
    sim = simulate_particles(vol, n, angpix, snr=1.0, max_shift_px=3.0, seed=7)
    ctf = np.stack([ctf_2d(p, box, angpix) for p in sim.ctf]).astype(np.float32)
    iy, ix, k = pixel_list(box, current / 2)
    shells = np.rint(np.sqrt((k ** 2).sum(1))).astype(int)
    old = sim.origins_px + np.random.default_rng(3).uniform(-0.7, 0.7, (n, 2))
    x, rounded = prepare_images(sim.images, old, 0.4 * box)
    sigma2 = np.full(len(k), sim.noise_sigma ** 2 / box ** 2 / 2)
    true = euler_to_matrix(*sim.angles_deg.T)
    fine = angular_step_deg(order, 1)
    ops = _Timed(_ops(backend))
    settings = EStepSettings(box=box, angpix=angpix, coarse_radius=current / 2, current_radius=current / 2,
                             offset_range_px=2 if local else 5, offset_step_px=1 if local else 2,
                             local_sigma_deg=2 * fine if local else None, ops=ops)
    orient = OrientationGrid(order)
    grid = map_to_grid(vol)

    def run():
        ops.seconds = {"project": 0.0, "cross": 0.0, "spread": 0.0}
        bp = Backprojector(box, ops=ops)
        res = expectation(grid, orient, x[:, iy, ix], ctf[:, iy, ix], sigma2, k, shells, old, rounded, true,
                          settings, bp, NoiseAccumulator(box // 2 + 1))
        bp.flush()
        err = rotation_angle_deg(euler_to_matrix(*np.array([r.angles for r in res]).T), true)
        return {"project_s": round(ops.seconds["project"], 3), "cross_s": round(ops.seconds["cross"], 3),
                "spread_s": round(ops.seconds["spread"], 3), "median_err_deg": round(float(np.median(err)), 2),
                "fine_step_deg": fine}
    return run


@register("estep", sizes=("b32_c24_g2_n16", "b32_c24_l2_n16"), full_sizes=("b64_c40_g2_n32", "b64_c40_l3_n32"),
          backends=("numpy", "opencl"), repeats=3)
def estep(size, backend):
    """One E-step (pass 1 + 2, back-projection, noise): box, current size, order (g: global, l: local)."""
    return workload(**_parse(size), backend=backend)


def _kernel_table(box: int = 64, current: int = 40, n_rot: int = 4608, n_rows: int = 32 * 21) -> None:
    """The pass-1 products alone: numpy vs OpenCL (cross on the device), best of 3."""
    from polishplugin.core.geometry import random_rotation_matrices
    from polishplugin.core.opencl.estep_cl import OpenCLOps
    from polishplugin.core.refine.estep import NumpyOps
    from polishplugin.core.refine.fourier3d import map_to_grid, pixel_list

    rng = np.random.default_rng(0)
    grid = map_to_grid(rng.normal(size=(box,) * 3))
    _, _, k = pixel_list(box, current / 2)
    rots = random_rotation_matrices(n_rot, rng)
    x = (rng.normal(size=(32, len(k))) + 1j * rng.normal(size=(32, len(k)))).astype(np.complex64)
    w = rng.uniform(0.5, 2, x.shape).astype(np.float32)
    shifts = rng.uniform(-5, 5, (32, n_rows // 32, 2))
    proj = NumpyOps().project(grid, rots, k, 2)
    for ops in (NumpyOps(), OpenCLOps(cross="device", min_samples=0)):
        times = []
        # The default argument binds this iteration's ops (the calls run inside the same iteration anyway).
        for call in (lambda ops=ops: ops.project(grid, rots, k, 2),
                     lambda ops=ops: ops.cross(x, w, proj, shifts, k, box)):
            call()
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                call()
                best = min(best, time.perf_counter() - t0)
            times.append(best)
        print(f"{ops.name:7s} project {n_rot} x {len(k)}: {times[0]:.4f} s   cross {n_rows} x {n_rot} x {len(k)}: "
              f"{times[1]:.4f} s", flush=True)


if __name__ == "__main__":
    _kernel_table(*[int(a) for a in sys.argv[1:]])
