"""OpenCL twins of :mod:`polishplugin.core.kernels.frame_ops` (kernels in ``frame_ops.cl``).

Inputs arrive flattened: ``a``/``x`` ``(P, F, K)``, ``b`` ``(P, K)``, ``w`` ``(F, K)``; float32 on the device.
"""

from __future__ import annotations

import numpy as np

from polishplugin.core.opencl import runtime

__all__ = ["frame_cross_sum", "weighted_frame_sum"]

_FILE = "frame_ops.cl"


def _buf(cl, ctx, arr):
    return cl.Buffer(ctx, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=arr)


def frame_cross_sum(a: np.ndarray, b: np.ndarray, w: np.ndarray, device=None) -> np.ndarray:
    import pyopencl as cl
    rt = runtime.get_runtime(_FILE, device)
    p, f, k = a.shape
    a32 = np.ascontiguousarray(a, dtype=np.complex64)
    b32 = np.ascontiguousarray(b, dtype=np.complex64)
    w32 = np.ascontiguousarray(w, dtype=np.float32)
    out = np.empty((p, k), dtype=np.complex64)
    obuf = cl.Buffer(rt.context, cl.mem_flags.WRITE_ONLY, max(out.nbytes, 8))
    rt.kernel("frame_cross_sum")(rt.queue, (p * k,), None, _buf(cl, rt.context, a32), _buf(cl, rt.context, b32),
                                 _buf(cl, rt.context, w32), np.int32(p), np.int32(f), np.int32(k), obuf)
    cl.enqueue_copy(rt.queue, out, obuf)
    rt.queue.finish()
    return out


def weighted_frame_sum(x: np.ndarray, w: np.ndarray, device=None) -> np.ndarray:
    import pyopencl as cl
    rt = runtime.get_runtime(_FILE, device)
    p, f, k = x.shape
    cplx = np.iscomplexobj(x)
    x32 = np.ascontiguousarray(x, dtype=np.complex64 if cplx else np.float32)
    w32 = np.ascontiguousarray(w, dtype=np.float32)
    out = np.empty((p, k), dtype=x32.dtype)
    obuf = cl.Buffer(rt.context, cl.mem_flags.WRITE_ONLY, max(out.nbytes, 8))
    name = "weighted_frame_sum_c" if cplx else "weighted_frame_sum_r"
    rt.kernel(name)(rt.queue, (p * k,), None, _buf(cl, rt.context, x32), _buf(cl, rt.context, w32),
                    np.int32(p), np.int32(f), np.int32(k), obuf)
    cl.enqueue_copy(rt.queue, out, obuf)
    rt.queue.finish()
    return out
