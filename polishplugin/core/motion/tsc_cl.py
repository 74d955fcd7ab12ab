"""OpenCL twin of :func:`.tsc.tsc_terms` with the ring data resident on the device.

:class:`TscCL` uploads ``x = dmg * pred * conj(obs)`` and the ring frequencies once; each call sends
the tracks and returns ``[num, d1, d2]`` (per particle-frame partial sums in float32 with Kahan
compensation, summed in float64 on the host).
"""

from __future__ import annotations

import os

import numpy as np

from ..opencl import runtime
from .tsc import EvalRing

__all__ = ["TscCL"]

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tsc.cl")


class TscCL:
    """``TscCL(ring)(tracks (n_p, n_f, 2)) -> [num, d1, d2]``."""

    def __init__(self, ring: EvalRing, device=None):
        import pyopencl as cl

        self.cl = cl
        self.n_p, self.n_f, self.n_r = ring.x.shape
        self.box, self.d1, self.d2 = ring.box, ring.d1, ring.d2
        self.ctx, self.queue, _ = runtime.get_context(device)
        with open(_SOURCE) as fh:
            prg = runtime.build_program(self.ctx, fh.read())
        self.kernel = cl.Kernel(prg, "tsc_num")
        mf = cl.mem_flags

        def upload(a):
            a = np.ascontiguousarray(a)
            return cl.Buffer(self.ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=a) if a.size else \
                cl.Buffer(self.ctx, mf.READ_ONLY, 8)

        self.x_buf = upload(ring.x.astype(np.complex64, copy=False))
        self.kx_buf = upload(ring.kx.astype(np.float32))
        self.ky_buf = upload(ring.ky.astype(np.float32))
        n_pf = self.n_p * self.n_f
        self.t_buf = cl.Buffer(self.ctx, mf.READ_ONLY, max(8 * n_pf, 8))
        self.num_buf = cl.Buffer(self.ctx, mf.WRITE_ONLY, max(4 * n_pf, 4))
        self.num = np.empty(n_pf, np.float32)

    def __call__(self, tracks_px: np.ndarray) -> np.ndarray:
        cl = self.cl
        n_pf = self.n_p * self.n_f
        t = np.ascontiguousarray(np.asarray(tracks_px, np.float64).reshape(n_pf, 2), np.float32)
        cl.enqueue_copy(self.queue, self.t_buf, t)
        self.kernel(self.queue, (n_pf,), None, self.x_buf, self.kx_buf, self.ky_buf, self.t_buf, np.int32(n_pf),
                    np.int32(self.n_r), np.float32(2 * np.pi / self.box), self.num_buf)
        cl.enqueue_copy(self.queue, self.num, self.num_buf)
        self.queue.finish()
        return np.array([float(self.num.sum(dtype=np.float64)), self.d1, self.d2])
