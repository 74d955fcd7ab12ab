"""OpenCL twins of :class:`polishplugin.core.projector.FourierProjector.project` and
:meth:`FourierBackprojector.insert` (kernels in ``projector.cl``; float32 on the device).

Called through ``backend="opencl"`` of the numpy classes; the padded transform is uploaded once
per projector, the back-projection accumulates on the device and is added to the host arrays the
next time ``data``/``weight`` are read (see ``FourierBackprojector._sync``).
"""

from __future__ import annotations

import numpy as np

from polishplugin.core.opencl import runtime

__all__ = ["project", "insert", "flush"]

_FILE = "projector.cl"
_BATCH = 256  # images per launch


def _rt(device=None):
    return runtime.get_runtime(_FILE, device)


def project(projector, rotations: np.ndarray, device=None) -> np.ndarray:
    """Same contract as ``FourierProjector.project`` (complex64 output)."""
    import pyopencl as cl
    rt = _rt(device)
    n = projector.box
    hxi = n // 2 + 1
    cache = getattr(projector, "_cl_grid", None)
    if cache is None or cache[0] is not rt.context:
        grid = np.ascontiguousarray(projector.fourier, dtype=np.complex64)
        buf = cl.Buffer(rt.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=grid)
        projector._cl_grid = cache = (rt.context, buf)
    grid_buf = cache[1]
    out = np.empty((len(rotations), n, hxi), dtype=np.complex64)
    for start in range(0, len(rotations), _BATCH):
        rot = np.ascontiguousarray(rotations[start:start + _BATCH], dtype=np.float32)
        nb = len(rot)
        rot_buf = cl.Buffer(rt.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=rot)
        res = np.empty((nb, n, hxi), dtype=np.complex64)
        out_buf = cl.Buffer(rt.context, cl.mem_flags.WRITE_ONLY, res.nbytes)
        total = nb * n * hxi
        rt.kernel("project_slices")(rt.queue, (total,), None, grid_buf, np.int32(projector.padded_size),
                                  rot_buf, np.int32(nb), np.int32(n), np.float32(projector.pad),
                                  np.float32(projector.r_max_px ** 2), out_buf)
        cl.enqueue_copy(rt.queue, res, out_buf)
        out[start:start + nb] = res
    return out


def insert(bp, images: np.ndarray, rotations: np.ndarray, weights: np.ndarray, device=None) -> None:
    """Same contract as ``FourierBackprojector.insert``; accumulates in device buffers held by ``bp``."""
    import pyopencl as cl
    rt = _rt(device)
    n = bp.box
    hxi = n // 2 + 1
    m = bp.padded_size
    acc = bp._cl_acc
    if acc is None or acc[0].context is not rt.context:
        flush(bp)
        size = m * m * (m // 2 + 1)
        dbuf = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, size * 8)
        wbuf = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, size * 4)
        zero = np.zeros(1, np.float32)  # the 4-byte fill pattern
        cl.enqueue_fill_buffer(rt.queue, dbuf, zero, 0, size * 8)
        cl.enqueue_fill_buffer(rt.queue, wbuf, zero, 0, size * 4)
        bp._cl_acc = acc = (rt, dbuf, wbuf)
    _, dbuf, wbuf = acc
    for start in range(0, len(rotations), _BATCH):
        sl = slice(start, start + _BATCH)
        rot = np.ascontiguousarray(rotations[sl], dtype=np.float32)
        img = np.ascontiguousarray(images[sl], dtype=np.complex64)
        wim = np.ascontiguousarray(weights[sl], dtype=np.float32)
        nb = len(rot)
        mf = cl.mem_flags
        rot_buf = cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=rot)
        img_buf = cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=img)
        w_buf = cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=wim)
        rt.kernel("insert_slices")(rt.queue, (nb * n * hxi,), None, dbuf, wbuf, np.int32(m), img_buf, w_buf,
                                 rot_buf, np.int32(nb), np.int32(n), np.float32(bp.pad),
                                 np.float32(bp.r_max_px ** 2))
    rt.queue.finish()


def flush(bp) -> None:
    """Add the device accumulators of ``bp`` to its host arrays and release them."""
    import pyopencl as cl
    acc = bp._cl_acc
    if acc is None:
        return
    rt, dbuf, wbuf = acc
    bp._cl_acc = None
    shape = bp._data.shape
    d = np.empty(shape, dtype=np.complex64)
    w = np.empty(shape, dtype=np.float32)
    cl.enqueue_copy(rt.queue, d, dbuf)
    cl.enqueue_copy(rt.queue, w, wbuf)
    rt.queue.finish()
    bp._data += d
    bp._weight += w
