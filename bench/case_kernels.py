"""Benchmark cases of the numeric core: the Fourier grid (projector, back-projector, reconstruction, and
auto-refine's pixel-list front end)."""

from __future__ import annotations

import numpy as np

from bench.cases import register
from polishplugin.core.geometry import random_rotation_matrices

BOTH = ("numpy", "opencl")


def _rotations(n, seed=0):
    return random_rotation_matrices(n, np.random.default_rng(seed))


def _phantom(n, seed=0):
    rng = np.random.default_rng(seed)
    ax = np.arange(n) - n // 2
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij", sparse=True)
    vol = np.zeros((n, n, n))
    for _ in range(40):
        c = rng.uniform(-n / 5, n / 5, 3)
        s = rng.uniform(0.6, 1.2)  # pixels: power up to Nyquist at every box size
        vol += np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * s * s))
    return vol


N_IMAGES = 200


@register("projector.project", sizes=(32,), full_sizes=(64, 128), backends=BOTH)
def project(size, backend):
    """Project 200 views of a size^3 map (pad 2, trilinear)."""
    from polishplugin.core.projector import FourierProjector
    proj = FourierProjector(_phantom(size))
    rots = _rotations(N_IMAGES)
    return lambda: (proj.project(rots, backend=backend), None)[1]


@register("backprojector.insert", sizes=(32,), full_sizes=(64, 128), backends=BOTH)
def insert(size, backend):
    """Insert 200 weighted slices into a padded (2 size)^3 grid and read the accumulators back."""
    from polishplugin.core.projector import FourierBackprojector, FourierProjector
    rots = _rotations(N_IMAGES)
    imgs = FourierProjector(_phantom(size)).project(rots)
    w = np.ones(imgs.shape, np.float32)

    def run():
        bp = FourierBackprojector(size)
        bp.insert(imgs, rots, w, backend=backend)
        _ = bp.data  # device -> host
    return run


@register("reconstruct.round_trip", sizes=(32,), full_sizes=(64, 128), backends=BOTH, repeats=1)
def round_trip(size, backend):
    """Project then reconstruct 1000 views (insert + reconstruct timed); notes give FSC at 0.9 Nyquist."""
    from polishplugin.core import fsc
    from polishplugin.core.projector import FourierBackprojector, FourierProjector
    vol = _phantom(size)
    rots = _rotations(1000)
    imgs = FourierProjector(vol).project(rots, backend=backend)

    def run():
        bp = FourierBackprojector(size)
        bp.insert(imgs, rots, backend=backend)
        rec = bp.reconstruct()
        curve = fsc.fsc(rec, vol)
        return {"fsc_min_to_0.9Nyq": float(curve[1:int(0.9 * size / 2) + 1].min())}
    return run


@register("fourier3d.round_trip", sizes=(32,), full_sizes=(64,), backends=("numpy",), repeats=1)
def refine_round_trip(size, backend):
    """Refine's grid: project 500 views (pixel list to N/2), back-project, finalise (D2), regularise, map."""
    from polishplugin.core.geometry import symmetry_matrices
    from polishplugin.core.refine import fourier3d as f3
    vol = _phantom(size)
    rots = _rotations(500)
    _, _, k = f3.pixel_list(size, size / 2)
    ops = symmetry_matrices("D2")

    def run():
        grid = f3.map_to_grid(vol)
        proj = f3.project_pixels(grid, rots, k)
        bp = f3.Backprojector(size)
        bp.insert(proj, np.ones(proj.shape, np.float32), rots, k)
        d, w = bp.finalised(ops)
        f3.grid_to_map(f3.regularised_grid(d, w, None, 2, size), size)
    return run
