"""Benchmark: the held-out score TSC of polishing-parameter training (``core.motion.tsc``, ``tsc_cl``).

One synthetic micrograph of training size: 190 particles x 24 frames, box 256, ring ``k_eval = 59``,
``k_out = 84`` (about 5200 ring pixels; sizes scale ``k`` with the box).  Random whitened-like frames and
predictions; the ring's ``x`` then gets a planted coherent signal for the "true" tracks (uniform +-30 px) so
that ``num`` at those tracks is a large, well-conditioned sum.

* ``tsc.make_eval_ring``: collecting the ring (complex64, float64 sums); notes: speed-up over the former
  complex128/float64 implementation (kept below as ``_make_eval_ring_float64``) and the largest difference.
* ``tsc.terms_reference``: :func:`tsc_terms_reference` (one float32 sincos per pixel).
* ``tsc.terms``: one evaluation, numpy fast path (:func:`tsc_terms`) or OpenCL (:class:`TscCL`, data resident);
  notes: speed-up over the reference and, for OpenCL, over the former per-pixel-sincos kernel (kept below as
  ``_OLD_KERNEL``), all timed in the same process; ``num`` relative to the reference.

Run: ``.venv/bin/python -m bench --only tsc``.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from bench.cases import register

N_P, N_F = 190, 24
BOX_SIZES, BOX_FULL = (128,), (256,)
REPEATS = 5  # cheap calls on a shared machine: best of 5


def _ks(box):
    return int(round(59 * box / 256)), int(round(84 * box / 256))


def _best(f, n=3):
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


@functools.lru_cache(maxsize=1)
def _data(box):
    """obs, pred, dose weights, true tracks (shared by the cases of one run)."""
    rng = np.random.default_rng(0)
    half = box // 2 + 1
    obs = np.empty((N_P, N_F, box, half), np.complex64)
    view = obs.view(np.float32)
    for p in range(N_P):
        rng.standard_normal(view[p].shape, dtype=np.float32, out=view[p])
    pred = np.empty((N_P, box, half), np.complex64)
    rng.standard_normal(pred.view(np.float32).shape, dtype=np.float32, out=pred.view(np.float32))
    dw = rng.uniform(0.0, 1.0, (N_F, box, half))
    tracks = rng.uniform(-30.0, 30.0, (N_P, N_F, 2))
    return obs, pred, dw, tracks


@functools.lru_cache(maxsize=1)
def _ring(box):
    """The ring of :func:`_data` plus a planted signal ``|x| exp(+i phi_true)`` (x stays complex64)."""
    from polishplugin.core.motion.tsc import make_eval_ring

    obs, pred, dw, tracks = _data(box)
    ring = make_eval_ring(obs, pred, dw, *_ks(box))
    c = 2.0 * np.pi / box
    for a in range(0, N_P, 16):
        phi = c * (tracks[a:a + 16, :, 0, None] * ring.kx + tracks[a:a + 16, :, 1, None] * ring.ky)
        ring.x[a:a + 16] += (np.abs(ring.x[a:a + 16]) * np.exp(1j * phi)).astype(np.complex64)
    return ring


def _make_eval_ring_float64(obs_rfft, pred_rfft, dose_w, k_eval, k_out):
    """The former implementation (complex128/float64 gathers of the whole ring), for the speed-up note."""
    from polishplugin.core.fourier import frequency_grid, round_half_away

    box = obs_rfft.shape[-2]
    ky, kx = frequency_grid((box, box))
    shell = round_half_away(np.sqrt((kx * kx + ky * ky).astype(np.float64)))
    sel = (shell >= k_eval + 2) & (shell < k_out)
    iy, ix = np.nonzero(sel)
    obs = np.asarray(obs_rfft[..., iy, ix], np.complex128)
    pred = np.asarray(pred_rfft[..., iy, ix], np.complex128)
    dmg = np.asarray(dose_w[..., iy, ix], np.float64)
    x = (dmg[None] * pred[:, None, :] * np.conj(obs)).astype(np.complex64)
    d1 = float((dmg[None] * (np.abs(obs) ** 2)).sum())
    d2 = float((dmg.sum(axis=0)[None] * (np.abs(pred) ** 2)).sum())
    return x, d1, d2


_OLD_KERNEL = """
__kernel void tsc_num(__global const float2 *x, __global const float *kx, __global const float *ky,
                      __global const float *t, const int n_pf, const int n_r, const float c, __global float *num)
{
    const int pf = get_global_id(0);
    if (pf >= n_pf) return;
    const float tx = c * t[2 * pf], ty = c * t[2 * pf + 1];
    __global const float2 *row = x + (size_t)pf * n_r;
    float acc = 0.0f, comp = 0.0f;
    for (int r = 0; r < n_r; r++) {
        float cs;
        const float sn = sincos(tx * kx[r] + ty * ky[r], &cs);
        const float2 v = row[r];
        const float y = (v.x * cs + v.y * sn) - comp, s = acc + y;
        comp = (s - acc) - y;
        acc = s;
    }
    num[pf] = acc;
}
"""


def _old_kernel_call(ring):
    """The former OpenCL evaluation (one sincos per pixel), as a callable on the tracks."""
    import pyopencl as cl

    from polishplugin.core.opencl import runtime

    ctx, queue, _ = runtime.get_context()
    kernel = cl.Kernel(runtime.build_program(ctx, _OLD_KERNEL), "tsc_num")
    mf = cl.mem_flags
    n_p, n_f, n_r = ring.x.shape
    n_pf = n_p * n_f
    x_buf = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=np.ascontiguousarray(ring.x))
    kx_buf = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=ring.kx.astype(np.float32))
    ky_buf = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=ring.ky.astype(np.float32))
    t_buf = cl.Buffer(ctx, mf.READ_ONLY, 8 * n_pf)
    num_buf = cl.Buffer(ctx, mf.WRITE_ONLY, 4 * n_pf)
    num = np.empty(n_pf, np.float32)

    def call(tracks):
        cl.enqueue_copy(queue, t_buf, np.ascontiguousarray(tracks.reshape(n_pf, 2), np.float32))
        kernel(queue, (n_pf,), None, x_buf, kx_buf, ky_buf, t_buf, np.int32(n_pf), np.int32(n_r),
               np.float32(2 * np.pi / ring.box), num_buf)
        cl.enqueue_copy(queue, num, num_buf)
        queue.finish()
        return float(num.sum(dtype=np.float64))
    return call


@register("tsc.make_eval_ring", sizes=BOX_SIZES, full_sizes=BOX_FULL, backends=("numpy",), repeats=REPEATS)
def make_ring(size, backend):
    """Collect the held-out ring of 190 particles x 24 frames (complex64); notes: vs the float64 version."""
    from polishplugin.core.motion.tsc import make_eval_ring

    obs, pred, dw, _ = _data(size)
    k_eval, k_out = _ks(size)
    t0 = time.perf_counter()
    x64, d1, d2 = _make_eval_ring_float64(obs, pred, dw, k_eval, k_out)
    t_old = time.perf_counter() - t0
    t_new = _best(lambda: make_eval_ring(obs, pred, dw, k_eval, k_out), REPEATS)
    notes = {"float64_version_s": round(t_old, 3), "new_s": round(t_new, 3), "speedup": round(t_old / t_new, 1)}

    def run():
        ring = make_eval_ring(obs, pred, dw, k_eval, k_out)
        if "x_max_rel_diff" not in notes:  # once (the warm-up call): the comparison is not part of the timing
            notes.update(ring_px=int(ring.x.shape[-1]), rows=int(ring.rows.shape[0]),
                         x_max_rel_diff=float(np.abs(ring.x - x64).max() / np.abs(x64).max()),
                         d1_rel_diff=abs(ring.d1 - d1) / d1, d2_rel_diff=abs(ring.d2 - d2) / d2)
        return notes
    return run


@register("tsc.terms_reference", sizes=BOX_SIZES, full_sizes=BOX_FULL, backends=("numpy",), repeats=REPEATS)
def terms_reference(size, backend):
    """One TSC evaluation, reference numpy (a float32 sincos per ring pixel)."""
    from polishplugin.core.motion.tsc import tsc_terms_reference

    ring = _ring(size)
    tracks = _data(size)[3]
    return lambda: {"num": float(tsc_terms_reference(ring, tracks)[0])}


@register("tsc.terms", sizes=BOX_SIZES, full_sizes=BOX_FULL, backends=("numpy", "opencl"), repeats=REPEATS)
def terms(size, backend):
    """One TSC evaluation: numpy fast path (row tables) or the OpenCL row kernel; notes: vs the reference."""
    from polishplugin.core.motion.tsc import tsc_terms, tsc_terms_reference

    ring = _ring(size)
    tracks = _data(size)[3]
    ref = float(tsc_terms_reference(ring, tracks)[0])
    if backend == "opencl":
        from polishplugin.core.motion.tsc_cl import TscCL

        evaluate = TscCL(ring)
        old = _old_kernel_call(ring)
        old(tracks)
    else:
        evaluate, old = functools.partial(tsc_terms, ring), None
    evaluate(tracks)
    # ratios from untraced best-of-3 timings taken here, one after the other (the table's time is traced)
    t_ref = _best(lambda: tsc_terms_reference(ring, tracks), REPEATS)
    t_new = _best(lambda: evaluate(tracks), REPEATS)
    notes = {"reference_s": round(t_ref, 4), "new_s": round(t_new, 4), "speedup_vs_reference": round(t_ref / t_new, 1)}
    if old is not None:
        t_old = _best(lambda: old(tracks), REPEATS)
        notes.update(old_kernel_s=round(t_old, 4), speedup_vs_old_kernel=round(t_old / t_new, 1))

    def run():
        num = float(evaluate(tracks)[0])
        return dict(notes, num_rel_diff=abs(num - ref) / abs(ref))
    return run
