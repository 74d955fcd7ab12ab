"""Back-projection of refine's Fourier-pixel slices (``Backprojector``'s spreading) on each backend.

4M samples (slices of the pixels within a radius, 16 orientations clustered around each of many random
ones, as the children of a particle's significant orientations are) spread by ``fourier3d.spread_pixels``
(numpy) and ``estep_cl.OpenCLOps.spread`` with the slab kernel (CPU devices) and the atomic one (GPUs):
best of 3 wall seconds per call, and the largest difference of the folded sums from numpy's, relative
to their maximum.

    .venv/bin/python bench/backprojection.py
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polishplugin.core.geometry import euler_to_matrix  # noqa: E402
from polishplugin.core.refine.fourier3d import pixel_list, spread_pixels  # noqa: E402

SAMPLES = 1 << 22
CASES = ((32, 16.0), (96, 29.0), (96, 48.0))  # (box, pixel radius): test sets, a local iteration, the final one


def _best(fn, repeats: int = 3) -> tuple[float, tuple]:
    out, best = fn(), np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> int:
    from polishplugin.core.opencl.estep_cl import OpenCLOps
    rng = np.random.default_rng(0)
    backends = {"numpy": None, "OpenCL slab": OpenCLOps(spread="owned"), "OpenCL atomic": OpenCLOps(spread="atomic")}
    print(f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cpu), load "
          f"{os.getloadavg()[0]:.1f}; OpenCL device: {backends['OpenCL slab'].info.label}")
    print("| box | radius (px) | samples | " + " | ".join(f"{b} (s)" for b in backends) + " | max rel. diff |")
    print("|---|---|---|" + "---|" * len(backends) + "---|")
    for box, radius in CASES:
        _, _, k = pixel_list(box, radius)
        n_rot = SAMPLES // len(k)
        centres = rng.uniform(0, 360, (n_rot // 16 + 1, 3))
        ang = (np.repeat(centres, 16, 0) + rng.normal(scale=0.5, size=(len(centres) * 16, 3)))[:n_rot]
        rot = euler_to_matrix(*ang.T)
        vals = (rng.normal(size=(n_rot, len(k))) + 1j * rng.normal(size=(n_rot, len(k)))).astype(np.complex64)
        wts = rng.uniform(size=(n_rot, len(k))).astype(np.float32)
        times, folded = [], {}
        for name, ops in backends.items():
            spread = spread_pixels if ops is None else ops.spread
            t, (ext, *box_sums) = _best(functools.partial(spread, 2 * box, 2, rot, k, vals, wts))
            times.append(t)
            folded[name] = [ext.fold(a) for a in box_sums]
        ref = folded["numpy"]
        diff = max(float(np.abs(g - r).max() / np.abs(r).max()) for name in backends if name != "numpy"
                   for g, r in zip(folded[name], ref))
        print(f"| {box} | {radius:g} | {n_rot * len(k)} | " + " | ".join(f"{t:.3f}" for t in times)
              + f" | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
