"""Benchmark cases of the numeric core: projector, back-projector, reconstruction, frame kernels."""

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


def _frames(size, p=32, f=24, seed=0):
    rng = np.random.default_rng(seed)
    k = (size, size // 2 + 1)
    a = (rng.normal(size=(p, f) + k) + 1j * rng.normal(size=(p, f) + k)).astype(np.complex64)
    b = (rng.normal(size=(p,) + k) + 1j * rng.normal(size=(p,) + k)).astype(np.complex64)
    w = rng.uniform(0, 1, size=(f,) + k).astype(np.float32)
    return a, b, w


@register("frame_ops.frame_cross_sum", sizes=(64,), full_sizes=(128, 256), backends=BOTH)
def frame_cross(size, backend):
    """sum_f w[f,k] a[p,f,k] conj(b[p,k]) for 32 particles x 24 frames of size^2 boxes."""
    from polishplugin.core.kernels.frame_ops import frame_cross_sum
    a, b, w = _frames(size)
    return lambda: (frame_cross_sum(a, b, w, backend=backend), None)[1]


@register("frame_ops.weighted_frame_sum", sizes=(64,), full_sizes=(128, 256), backends=BOTH)
def weighted_sum(size, backend):
    """sum_f W[f,k] X[p,f,k] for 32 particles x 24 frames of size^2 boxes (complex X)."""
    from polishplugin.core.kernels.frame_ops import weighted_frame_sum
    a, _, w = _frames(size)
    return lambda: (weighted_frame_sum(a, w, backend=backend), None)[1]
