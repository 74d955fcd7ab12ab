"""OpenCL twin of :func:`.cross_correlation.cc_maps` (same signature and layout).

The weighted cross-power spectrum ``obs * w * conj(pred)`` is formed on the device
(``cross_correlation.cl``, float32); the inverse FFT, the ``N^2`` scale and the crop run on the host
with numpy (DESIGN: device FFTs only where measurements show they pay).  Particles go in batches so that
device buffers stay small.
"""

from __future__ import annotations

import os

import numpy as np

from ..opencl import runtime
from .cross_correlation import crop_centre

__all__ = ["cc_maps_cl"]

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cross_correlation.cl")


def _program(device=None):
    ctx, queue, _ = runtime.get_context(device)
    with open(_SOURCE) as fh:
        prg = runtime.build_program(ctx, fh.read())
    return ctx, queue, prg


def cc_maps_cl(obs_rfft: np.ndarray, pred_rfft: np.ndarray, frame_weights: np.ndarray,
               crop_px: int | None = None, device=None, batch: int = 32) -> np.ndarray:
    """See :func:`.cross_correlation.cc_maps`; raises ``OpenCLUnavailable`` without a platform."""
    import pyopencl as cl

    obs_rfft = np.asarray(obs_rfft)
    n_p, n_f, n, nh = obs_rfft.shape
    if pred_rfft.shape != (n_p, n, nh) or frame_weights.shape != (n_f, n, nh):
        raise ValueError(f"shape mismatch: obs {obs_rfft.shape}, pred {pred_rfft.shape}, "
                         f"weights {frame_weights.shape}")
    ctx, queue, prg = _program(device)
    kernel = cl.Kernel(prg, "cc_product")
    k = n * nh
    mf = cl.mem_flags
    w_buf = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR,
                      hostbuf=np.ascontiguousarray(frame_weights, np.float32).reshape(n_f, k))
    m = n if crop_px is None else int(crop_px)
    out = np.empty((n_p, n_f, m, m), np.float32)
    scale = float(n) ** 4  # as the numpy reference: N^2 (RELION) * N^2 (numpy's inverse divides by N^2)
    for a in range(0, n_p, batch):
        b = min(a + batch, n_p)
        o = np.ascontiguousarray(obs_rfft[a:b], np.complex64).reshape(b - a, n_f, k)
        p = np.ascontiguousarray(pred_rfft[a:b], np.complex64).reshape(b - a, k)
        res = np.empty_like(o)
        o_buf = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=o)
        p_buf = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=p)
        r_buf = cl.Buffer(ctx, mf.WRITE_ONLY, res.nbytes)
        kernel(queue, (o.size,), None, o_buf, p_buf, w_buf, np.int32(b - a), np.int32(n_f), np.int32(k), r_buf)
        cl.enqueue_copy(queue, res, r_buf)
        queue.finish()
        maps = np.fft.irfft2(res.reshape(b - a, n_f, n, nh), s=(n, n)) * scale
        out[a:b] = maps if crop_px is None else crop_centre(maps, m)
    return out
