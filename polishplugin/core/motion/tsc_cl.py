"""OpenCL twin of :func:`.tsc.tsc_terms` with the ring data resident on the device.

:class:`TscCL` uploads ``x = dmg * pred * conj(obs)`` and the ring's row table ``[ky, first kx, start,
length]`` once; each call sends the tracks (integer parts modulo N and fractional parts, so the device
phases are exact modulo N) and returns ``[num, d1, d2]``.  The kernel (``tsc.cl``) walks each particle-frame's
contiguous row of ``x`` with one phase evaluation per ring row and a complex recurrence along it; per
particle-frame partial sums are float32 with Kahan compensation across rows, summed in float64 on the host.
"""

from __future__ import annotations

import os

import numpy as np

from ..opencl import runtime
from .tsc import EvalRing

__all__ = ["TscCL", "split_tracks"]

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tsc.cl")


def split_tracks(tracks_px: np.ndarray, box: int) -> np.ndarray:
    """``(n, 4)`` float32 ``(tx_int mod N, ty_int mod N, tx_frac, ty_frac)`` of tracks ``(..., 2)`` (float64 split)."""
    t = np.asarray(tracks_px, np.float64).reshape(-1, 2)
    ti = np.rint(t)
    out = np.empty((t.shape[0], 4), np.float32)
    out[:, :2] = np.mod(ti, box)
    out[:, 2:] = t - ti
    return out


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
        self.kernel = cl.Kernel(prg, "tsc_num_rows")
        mf = cl.mem_flags

        def upload(a):
            a = np.ascontiguousarray(a)
            return cl.Buffer(self.ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=a) if a.size else \
                cl.Buffer(self.ctx, mf.READ_ONLY, 16)

        self.x_buf = upload(ring.x.astype(np.complex64, copy=False))
        rows = np.ascontiguousarray(ring.rows, np.int32).reshape(-1, 4)
        self.n_rows = rows.shape[0]
        self.rows_buf = upload(rows)
        n_pf = self.n_p * self.n_f
        self.t_buf = cl.Buffer(self.ctx, mf.READ_ONLY, max(16 * n_pf, 16))
        self.num_buf = cl.Buffer(self.ctx, mf.WRITE_ONLY, max(4 * n_pf, 4))
        self.num = np.empty(n_pf, np.float32)

    def __call__(self, tracks_px: np.ndarray) -> np.ndarray:
        cl = self.cl
        n_pf = self.n_p * self.n_f
        if n_pf == 0:
            return np.array([0.0, self.d1, self.d2])
        cl.enqueue_copy(self.queue, self.t_buf, split_tracks(np.asarray(tracks_px).reshape(n_pf, 2), self.box))
        self.kernel(self.queue, (n_pf,), None, self.x_buf, self.rows_buf, np.int32(self.n_rows), np.int32(self.n_r),
                    self.t_buf, np.int32(n_pf), np.int32(self.box), self.num_buf)
        cl.enqueue_copy(self.queue, self.num, self.num_buf)
        self.queue.finish()
        return np.array([float(self.num.sum(dtype=np.float64)), self.d1, self.d2])
