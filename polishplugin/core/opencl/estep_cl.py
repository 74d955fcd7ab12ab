"""OpenCL twin of :class:`polishplugin.core.refine.estep.NumpyOps` (kernels in ``estep.cl``; float32).

:class:`OpenCLOps` has the same methods and the same contract:

* ``project(grid, rotations, k2d, pad)`` -> ``(n_rot, n_pix)`` complex64, trilinear samples of the padded
  half transform (one work item per pixel and rotation).  The grid goes to the device once and stays
  there while the caller keeps passing the same projector or array (see :meth:`OpenCLOps._grid_buffer`).
* ``cross(x, weight, proj, shifts_px, k2d, box)`` -> ``(n_part, n_trans, n_rot)`` float32: the shifted
  weighted images ``Y[p, t]`` in one kernel, then one tiled real matrix product ``Y P^T`` (complex rows
  read as interleaved floats, so ``Re Y . Re P + Im Y . Im P`` needs no repacking on the host).

Where each product runs (measured on the 2-core Xeon with PoCL, ``bench/README.md``, ``bench/case_estep.py``):

* projections of fewer than ``min_samples`` (4096) pixels x rotations stay on the host: below that the
  launch costs more than numpy (219 samples: numpy 0.07 ms, PoCL 0.20 ms; 4984: 0.42 vs 0.31 ms; 99680:
  10.1 vs 2.0 ms; 4608 rotations x 623 pixels: 562 vs 34 ms);
* ``cross="auto"`` (default) runs the cross products on the device only on a GPU or accelerator and only
  for products of at least :data:`CROSS_MIN_ROWS` particle x translation rows; elsewhere on the host
  (BLAS).  On PoCL the tiled kernel reaches 1-3 GFLOP/s against ~90-150 GFLOP/s for OpenBLAS's sgemm on
  the same two cores (672 rows x 4608 rotations x 623 pixels: 2.8 s vs 0.062 s, ``python
  bench/case_estep.py``).  The row limit is arithmetic, not a measurement (no GPU was at hand):
  the device must receive ``P`` (8 bytes per rotation and pixel) for ``4 n_rows`` flops on each of them, so
  the one-particle pass-2 products (4 rows) are cheaper with BLAS than one upload, and the batched pass-1
  products (32 particles x 21 translations = 672 rows) are where a GPU pays.
* ``cross="device"`` / ``"host"`` force either (the tests use ``"device"`` with ``min_samples=0``).
* ``spread(m, pad, rotations, k2d, values, weights)``: the back-projection of ``fourier3d.Backprojector``
  (``fourier3d.spread_pixels``) into float32 sums on the margin-extended box of the slices' reach (the
  back-projector adds them up in float64 and puts them on the half grid once).  On a GPU or accelerator
  one work item per sample with float compare-and-swap adds (the last digits depend on the order the
  adds land in, as on RELION's GPU back-projector); on a CPU device one work item per compute unit, each
  owning a slab of z rows and walking every sample in order: no atomics, the same sums on every run (a
  continued refine stays bit-identical to an uninterrupted one).  4M samples on the 2-core VM with PoCL
  (``python bench/backprojection.py``): numpy 0.72-1.22 s, slab kernel 0.09-0.14 s, atomic 0.25-0.60 s.

:func:`select_ops` is the ``refine3d --device/--gpu`` policy.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref

import numpy as np

from ..projector import extended_index
from ..refine.estep import NumpyOps
from ..refine.fourier3d import slice_reach
from . import runtime

__all__ = ["OpenCLOps", "select_ops", "MIN_SAMPLES", "CROSS_MIN_ROWS"]

log = logging.getLogger(__name__)

_FILE = "estep.cl"
#: (TSM, TSN, TSK, WPTM, WPTN) of ``cross_gemm``: 64 x 64 output tiles, 16 x 16 work items, 4 x 4 each
_TILES = (64, 64, 16, 4, 4)
_CHUNK = 1 << 22  # projection samples per launch (32 MB of complex64 output)
_N_FINGERPRINT = 4096  # grid samples compared to tell an unchanged cached grid from an edited one
#: projections of fewer pixels x rotations run on the host (see the module doc)
MIN_SAMPLES = 4096
#: ``cross="auto"``: fewest particle x translation rows sent to a GPU (see the module doc)
CROSS_MIN_ROWS = 64
_ACCELERATORS = ("GPU", "ACCELERATOR")
_ROW = 64  # work items along the pixels per work-group of the per-sample kernels (global size rounded up)
_lock = threading.Lock()  # kernels and scratch buffers are shared: one call at a time


@functools.lru_cache(maxsize=8)
def _fingerprint_voxels(shape: tuple) -> tuple:
    rng = np.random.default_rng(0)
    return tuple(rng.integers(0, n, _N_FINGERPRINT) for n in shape)


def _fingerprint(grid: np.ndarray) -> bytes:
    """Values of the grid at fixed pseudo-random voxels (works on any strides without a copy)."""
    return np.ascontiguousarray(grid[_fingerprint_voxels(grid.shape)]).tobytes()


def _round_up(n: int) -> int:
    return -(-n // _ROW) * _ROW


def _forget_grid(ops_ref, grid_ref) -> None:
    """Weak-reference callback: the cached host grid is gone, free its device copy now."""
    ops = ops_ref()
    if ops is not None and ops._grid is not None and ops._grid[0] is grid_ref:
        ops._grid = None


class OpenCLOps:
    """The E-step's projection, cross products and back-projection on an OpenCL device (``device`` as in
    :func:`runtime.get_context`; raises :class:`runtime.OpenCLUnavailable` when there is none).

    ``cross``: ``"auto"``, ``"device"`` or ``"host"``; ``min_samples``: smallest projection done on the
    device (see the module doc); ``spread``: ``"auto"`` (atomic adds on a GPU or accelerator, z slabs
    elsewhere), ``"atomic"`` or ``"owned"`` (the tests run both kernels on every device).  One call runs
    at a time (a module lock), so an instance may be shared.
    """

    name = "opencl"

    def __init__(self, device=None, cross: str = "auto", min_samples: int = MIN_SAMPLES, spread: str = "auto"):
        if cross not in ("auto", "device", "host"):
            raise ValueError(f"cross must be 'auto', 'device' or 'host', not {cross!r}")
        if spread not in ("auto", "atomic", "owned"):
            raise ValueError(f"spread must be 'auto', 'atomic' or 'owned', not {spread!r}")
        tsm, tsn, tsk, wptm, wptn = _TILES
        options = (f"-DTSM={tsm}", f"-DTSN={tsn}", f"-DTSK={tsk}", f"-DWPTM={wptm}", f"-DWPTN={wptn}")
        self._rt = runtime.get_runtime(_FILE, device, options)
        self.info = self._rt.info
        self.min_samples = int(min_samples)
        self.cross_rows = {"host": None, "device": 0}.get(cross, CROSS_MIN_ROWS if self.info.kind in _ACCELERATORS
                                                           else None)  # None: always on the host
        self._local = (tsn // wptn, tsm // wptm)
        self._tiles = (tsn, tsm)
        # (weakref to the host grid, key, fingerprint, device buffer)
        self._grid: tuple[weakref.ref, tuple, bytes, object] | None = None
        self._scratch: dict = {}
        self._host = NumpyOps()
        self._units = max(1, int(getattr(self._rt.context.devices[0], "max_compute_units", 1)))
        self._atomic = spread == "atomic" or (spread == "auto" and self.info.kind in _ACCELERATORS)

    def __repr__(self) -> str:
        return f"OpenCLOps({self.info.label})"

    # -------------------------------------------------------------------------------- buffers
    def _buffer(self, name: str, nbytes: int):
        """A device buffer of at least ``nbytes`` reused between calls (grown when too small)."""
        import pyopencl as cl
        buf = self._scratch.get(name)
        if buf is None or buf.size < nbytes:
            buf = self._scratch[name] = cl.Buffer(self._rt.context, cl.mem_flags.READ_WRITE, max(nbytes, 16))
        return buf

    def _upload(self, name: str, arr: np.ndarray):
        import pyopencl as cl
        buf = self._buffer(name, arr.nbytes)
        if arr.nbytes:
            cl.enqueue_copy(self._rt.queue, buf, arr, is_blocking=True)
        return buf

    def _grid_buffer(self, grid: np.ndarray):
        """The device copy of ``grid`` (complex64), uploaded again unless it is the same live array
        (weak reference), with the same shape, dtype, strides and data pointer and the same values at
        :data:`_N_FINGERPRINT` fixed voxels.  Editing a cached grid in place at none of those voxels is
        not seen: pass a new array (the E-step does, every iteration) or call :meth:`clear`."""
        import pyopencl as cl
        key = (grid.shape, grid.dtype.str, grid.strides, grid.__array_interface__["data"][0])
        fp = _fingerprint(grid)
        c = self._grid
        if c is not None and c[0]() is grid and c[1] == key and c[2] == fp:
            return c[3]
        self._grid = None  # release the old device grid before allocating the new one
        host = np.ascontiguousarray(grid, dtype=np.complex64)
        buf = cl.Buffer(self._rt.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=host)
        self._grid = (weakref.ref(grid, functools.partial(_forget_grid, weakref.ref(self))), key, fp, buf)
        return buf

    def clear(self) -> None:
        """Release the cached grid and the scratch buffers."""
        with _lock:
            self._grid = None
            self._scratch.clear()

    # -------------------------------------------------------------------------------- kernels
    def project(self, grid: np.ndarray, rotations: np.ndarray, k2d: np.ndarray, pad: int) -> np.ndarray:
        """See :func:`polishplugin.core.refine.fourier3d.project_pixels` (``grid``: a projector or its
        half-grid array)."""
        import pyopencl as cl
        rotations = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
        host_grid = grid
        grid = np.asarray(getattr(grid, "fourier", grid))
        m = grid.shape[0]
        if grid.shape != (m, m, m // 2 + 1):
            raise ValueError(f"grid must be a padded half transform (M, M, M//2+1), got {grid.shape}")
        n_rot, n_pix = len(rotations), len(k2d)
        out = np.empty((n_rot, n_pix), np.complex64)
        if out.size == 0:
            return out
        if out.size < self.min_samples:
            return self._host.project(host_grid, rotations, k2d, pad)
        rot6 = np.ascontiguousarray((rotations[:, :2, :] * pad).astype(np.float32).reshape(n_rot, 6))
        k = np.ascontiguousarray(k2d, np.float32)
        step = max(1, _CHUNK // n_pix)
        with _lock:
            rt = self._rt
            gbuf = self._grid_buffer(grid)
            kbuf = self._upload("k2d", k)
            obuf = self._buffer("proj", min(step, n_rot) * n_pix * 8)
            kern = rt.kernel("project_pixels")
            for a in range(0, n_rot, step):
                nb = min(step, n_rot - a)
                rbuf = self._upload("rot", rot6[a:a + nb])
                kern(rt.queue, (_round_up(n_pix), nb), (_ROW, 1), gbuf, np.int32(m), np.float32(m // 2),
                     np.float32(m - 1.001), rbuf, kbuf, np.int32(nb), np.int32(n_pix), obuf)
                cl.enqueue_copy(rt.queue, out[a:a + nb], obuf, is_blocking=True)
        return out

    def spread(self, m: int, pad: int, rotations: np.ndarray, k2d: np.ndarray, values: np.ndarray,
               weights: np.ndarray) -> tuple:
        """See :func:`polishplugin.core.refine.fourier3d.spread_pixels` (float32 sums on the device)."""
        import pyopencl as cl
        rotations = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
        n_rot, n_pix = len(rotations), len(k2d)
        if n_rot * n_pix < self.min_samples:
            return self._host.spread(m, pad, rotations, k2d, values, weights)
        ext = extended_index(m, slice_reach(k2d, pad, m))
        r = -ext.lo
        n_ext = len(ext.lut)
        rot6 = np.ascontiguousarray((rotations[:, :2, :] * pad).astype(np.float32).reshape(n_rot, 6))
        vals = np.ascontiguousarray(np.asarray(values).reshape(n_rot, n_pix), np.complex64)
        wts = np.ascontiguousarray(np.asarray(weights).reshape(n_rot, n_pix), np.float32)
        sums = np.empty((3, n_ext), np.float32)
        with _lock:
            rt = self._rt
            bufs = [self._buffer(f"ext{i}", n_ext * 4) for i in range(3)]
            zero = np.zeros(1, np.float32)
            for b in bufs:
                cl.enqueue_fill_buffer(rt.queue, b, zero, 0, n_ext * 4)
            args = (*bufs, np.int32(r), np.int32(m), np.float32(m // 2), np.float32(m - 1.001),
                    self._upload("rot", rot6), self._upload("k2d", np.ascontiguousarray(k2d, np.float32)),
                    self._upload("vals", vals), self._upload("wts", wts), np.int32(n_rot), np.int32(n_pix))
            if self._atomic:
                rt.kernel("spread_pixels_atomic")(rt.queue, (_round_up(n_pix), n_rot), (_ROW, 1), *args)
            else:
                n_slabs = min(2 * r + 2, self._units)
                rt.kernel("spread_pixels_owned")(rt.queue, (n_slabs,), (1,), *args, np.int32(n_slabs))
            for i, b in enumerate(bufs):
                cl.enqueue_copy(rt.queue, sums[i], b, is_blocking=(i == 2))
        return ext, sums[0], sums[1], sums[2]

    def cross(self, x, weight, proj, shifts_px, k2d, box) -> np.ndarray:
        """``Re sum_k weight X_t conj(P_r)`` as ``(n_part, n_trans, n_rot)`` float32 (see ``NumpyOps``)."""
        import pyopencl as cl
        shifts = np.asarray(shifts_px, np.float64)
        n_part, n_trans = shifts.shape[:2]
        n_rot, n_pix = np.shape(proj)
        n_pt = n_part * n_trans
        if self.cross_rows is None or n_pt < self.cross_rows or n_pt * n_rot * n_pix == 0:
            return self._host.cross(x, weight, proj, shifts, k2d, box).astype(np.float32, copy=False)
        xw = np.ascontiguousarray(np.broadcast_to(np.asarray(x) * weight, (n_part, n_pix)), np.complex64)
        s = np.ascontiguousarray(shifts.reshape(-1, 2), np.float32)
        p = np.ascontiguousarray(proj, np.complex64)
        k = np.ascontiguousarray(k2d, np.float32)
        out = np.empty((n_pt, n_rot), np.float32)
        with _lock:
            rt = self._rt
            ybuf = self._buffer("y", n_pt * n_pix * 8)
            cbuf = self._buffer("c", out.nbytes)
            args = (self._upload("xw", xw), self._upload("shifts", s), self._upload("k2d", k), np.int32(n_trans),
                    np.int32(n_pix), np.int32(n_pt), np.float32(1.0 / box), ybuf)
            rt.kernel("shifted_images")(rt.queue, (_round_up(n_pix), n_pt), (_ROW, 1), *args)
            gsize = (-(-n_rot // self._tiles[0]) * self._local[0], -(-n_pt // self._tiles[1]) * self._local[1])
            rt.kernel("cross_gemm")(rt.queue, gsize, self._local, ybuf, self._upload("p", p), np.int32(n_pt),
                                    np.int32(n_rot), np.int32(2 * n_pix), cbuf)
            cl.enqueue_copy(rt.queue, out, cbuf, is_blocking=True)
        return out.reshape(n_part, n_trans, n_rot)


def select_ops(device_arg=None):
    """The E-step backend for ``refine3d --device/--gpu [ID]``.

    The decision is :func:`runtime.choose_backend`'s; this adds the log lines and the ``--device`` errors.

    * ``"cpu"`` (or ``"numpy"``): :class:`NumpyOps`.
    * an explicit OpenCL device (``"0"``, ``1``, ``"0:1"`` = platform:device, as
      :func:`runtime.get_context`): :class:`OpenCLOps` on it; a device that does not exist (or no OpenCL
      at all) raises :class:`runtime.OpenCLUnavailable` naming it.
    * ``None``/``""``/``"auto"`` (option absent, or ``--gpu`` without a value): :class:`OpenCLOps` on the default
      device (:data:`runtime.ENV_DEVICE`, else the first GPU, else the first device) whenever OpenCL works,
      GPU or not; without OpenCL (or when the default device fails), :class:`NumpyOps` and a log line.

    Why OpenCL also on a CPU device: measured on the 2-core Xeon with PoCL (``python -m bench --only
    estep``, bench/README.md), one E-step of 32 particles, box 64, current size 40, C1, with back-projection:
    global search at HEALPix order 2 (4608 orientations x 21 translations) numpy 1.00 s, OpenCL 0.48 s;
    local search at order 3 (13 translations) numpy 0.59 s, OpenCL 0.36 s.  The gain is the projection
    (0.57 -> 0.05 s and 0.30 -> 0.08 s); on a CPU device :class:`OpenCLOps` leaves the cross products to
    BLAS (``cross="auto"``), 46-68x faster there than the tiled kernel.
    """
    arg = "" if device_arg is None else str(device_arg).strip()
    default = arg.lower() in ("", "auto")
    try:
        backend, name = runtime.choose_backend(arg)  # the one backend/device decision
    except runtime.OpenCLUnavailable as exc:  # an explicit device that does not open
        raise runtime.OpenCLUnavailable(f"--device {arg}: {exc}") from exc
    if backend == "numpy":
        if default:
            log.warning("E-step on the CPU with numpy (OpenCL could not be used: %s)", _no_opencl_reason())
        return NumpyOps()
    try:
        ops = OpenCLOps(name)
    except runtime.OpenCLUnavailable as exc:
        if not default:
            raise runtime.OpenCLUnavailable(f"--device {arg}: {exc}") from exc
        log.warning("E-step on the CPU with numpy (OpenCL could not be used: %s)", exc)
        return NumpyOps()
    except Exception as exc:  # a default device that cannot build the kernels
        if not default:
            raise
        log.warning("E-step on the CPU with numpy (OpenCL could not be used: %s)", exc)
        return NumpyOps()
    where = "projections and cross products" if ops.cross_rows is not None else "projections (cross products: BLAS)"
    log.info("E-step %s on OpenCL device %s", where, ops.info.label)
    return ops


def _no_opencl_reason() -> str:
    """Why :func:`runtime.choose_backend` found no OpenCL device (the sentence of its exception)."""
    try:
        runtime.list_devices()
    except runtime.OpenCLUnavailable as exc:
        return str(exc)
    return "no OpenCL device"
