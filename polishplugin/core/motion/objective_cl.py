"""OpenCL twin of :func:`.objective.catmull_rom` with the maps resident on the device.

:class:`CatmullRomCL` uploads the ``(K, M, M)`` CC maps once; each call sends the ``K`` positions and
returns values and gradients (float32 on the device, float64 on the host), so an L-BFGS fit (hundreds of
calls) or a whole training search moves only a few kB per call.  Square maps only.
"""

from __future__ import annotations

import os

import numpy as np

from ..opencl import runtime

__all__ = ["CatmullRomCL"]

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "objective.cl")


class CatmullRomCL:
    """``interp(xy (K, 2), origin) -> (values (K,), grad (K, 2))`` for the maps given at construction."""

    def __init__(self, maps: np.ndarray, device=None):
        import pyopencl as cl

        self.cl = cl
        maps = np.ascontiguousarray(maps, np.float32)
        if maps.ndim != 3 or maps.shape[1] != maps.shape[2]:
            raise ValueError(f"expected square maps (K, M, M), got {maps.shape}")
        self.k, self.m = maps.shape[0], maps.shape[1]
        self.ctx, self.queue, _ = runtime.get_context(device)
        with open(_SOURCE) as fh:
            prg = runtime.build_program(self.ctx, fh.read())
        self.kernel = cl.Kernel(prg, "catmull_rom_grad")
        mf = cl.mem_flags
        self.maps_buf = cl.Buffer(self.ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=maps)
        self.xy_buf = cl.Buffer(self.ctx, mf.READ_ONLY, max(8 * self.k, 8))
        self.out_buf = cl.Buffer(self.ctx, mf.WRITE_ONLY, max(12 * self.k, 12))
        self.out = np.empty((self.k, 3), np.float32)

    def __call__(self, xy: np.ndarray, origin: int = 0) -> tuple[np.ndarray, np.ndarray]:
        cl = self.cl
        pos = np.ascontiguousarray(np.asarray(xy, np.float64).reshape(self.k, 2) + origin, np.float32)
        cl.enqueue_copy(self.queue, self.xy_buf, pos)
        self.kernel(self.queue, (self.k,), None, self.maps_buf, self.xy_buf, np.int32(self.k), np.int32(self.m),
                    self.out_buf)
        cl.enqueue_copy(self.queue, self.out, self.out_buf)
        self.queue.finish()
        out = self.out.astype(np.float64)
        return out[:, 0], out[:, 1:]
