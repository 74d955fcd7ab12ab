"""Training data split and the held-out score TSC (RELION ``MotionParamEstimator``/``AlignmentSet``, ALGORITHMS 1.14).

Frequencies below ``k_cutoff`` align the tracks; the ring ``k_eval + 2 <= ROUND(r) < k_out`` scores them:
``TSC = sum dmg Re(pred conj(obs e^{+2 pi i k.t/N})) / sqrt(sum dmg |obs|^2 * sum dmg |pred|^2)``
(sums over particles, frames and ring pixels; ``obs`` whitened frames, ``pred`` the Opposite-half
prediction, ``dmg`` the full dose weights, ``t`` the fitted track).  Higher is better.

The ring is stored by rows (one run of consecutive ``kx`` per ``ky``), so the phase factor separates,
``e^{-i c (kx tx + ky ty)} = e^{-i c ky ty} e^{-i c kx tx}``: :func:`tsc_terms` uses small per-track tables and
:class:`.tsc_cl.TscCL` one phase per row plus a recurrence along it; :func:`tsc_terms_reference` is the plain
one-``sincos``-per-pixel form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fourier import frequency_grid, round_half_away

__all__ = ["frequency_split", "alignment_lowpass", "ring_rows", "rows_from_pixels", "EvalRing", "make_eval_ring",
           "phase_table", "row_pixels", "tsc_terms", "tsc_terms_reference", "tsc_from_terms"]


def frequency_split(k_out: int, align_frac: float = 0.5, eval_frac: float = 0.5) -> tuple[int, int]:
    """``(k_cutoff, k_eval)``: ``(int)(k_out sqrt(align_frac) + 0.5)``, ``(int)(k_out sqrt(1-eval_frac) + 0.5)``."""
    return int(k_out * np.sqrt(align_frac) + 0.5), int(k_out * np.sqrt(1.0 - eval_frac) + 0.5)


def alignment_lowpass(box: int, k_cutoff: int) -> np.ndarray:
    """Raised-cosine low-pass ``(N, N//2+1)``: 1 below ``k_cutoff-1``, 0 above ``k_cutoff+1``."""
    ky, kx = frequency_grid((box, box))
    r = np.sqrt((kx * kx + ky * ky).astype(np.float64))
    t = np.clip((r - (k_cutoff - 1)) / 2.0, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


def ring_rows(box: int, k_eval: int, k_out: int) -> np.ndarray:
    """Rows of the held-out ring ``k_eval + 2 <= ROUND(|k|) < k_out`` of the ``(N, N//2+1)`` half plane.

    ``ROUND(sqrt(kx^2 + ky^2))`` is monotonic in ``kx >= 0``, so for a fixed ``ky`` the ring is ONE run of
    consecutive ``kx``; in ``np.nonzero`` (row-major) order the runs follow each other.  Returns ``(n_rows, 4)``
    int32 ``[ky, first kx, start index, length]`` of the non-empty rows, in that order.
    """
    ky, kx = frequency_grid((box, box))
    shell = round_half_away(np.sqrt((kx * kx + ky * ky).astype(np.float64)))
    sel = (shell >= k_eval + 2) & (shell < k_out)
    count = sel.sum(axis=1)
    iy = np.flatnonzero(count)
    kx0 = sel[iy].argmax(axis=1)
    lens = count[iy]
    last = sel.shape[1] - 1 - sel[iy, ::-1].argmax(axis=1)
    if not np.array_equal(last - kx0 + 1, lens):  # cannot happen: the shell is monotonic in kx
        raise AssertionError("a ring row is not one run of kx")
    starts = np.cumsum(lens) - lens
    return np.stack([ky.ravel()[iy], kx0, starts, lens], axis=1).astype(np.int32).reshape(-1, 4)


def rows_from_pixels(kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """Maximal runs ``[ky, first kx, start, length]`` of consecutive ``kx`` at equal ``ky`` in a pixel list."""
    kx = np.asarray(kx).astype(np.int64)
    ky = np.asarray(ky).astype(np.int64)
    if kx.size == 0:
        return np.zeros((0, 4), np.int32)
    starts = np.flatnonzero(np.r_[True, (np.diff(ky) != 0) | (np.diff(kx) != 1)])
    lens = np.diff(np.r_[starts, kx.size])
    return np.stack([ky[starts], kx[starts], starts, lens], axis=1).astype(np.int32)


def row_pixels(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ky, kx)`` (intp) of every pixel of the rows ``[ky, first kx, start, length]`` (pixel order)."""
    rows = np.asarray(rows).reshape(-1, 4).astype(np.intp)
    lens = rows[:, 3]
    return (np.repeat(rows[:, 0], lens),
            np.arange(int(lens.sum()), dtype=np.intp) - np.repeat(rows[:, 2] - rows[:, 1], lens))


@dataclass
class EvalRing:
    """Held-out ring pixels of one micrograph: ``x = dmg * pred * conj(obs)`` (complex64, what the score
    needs per track) and the constant denominators.

    ``rows`` ``(n_rows, 4)`` int32 ``[ky, first kx, start, length]``: pixel ``start + j`` of a row has
    ``kx = first kx + j`` (derived from ``kx``/``ky`` when not given).
    """

    kx: np.ndarray    # (R,) integer frequencies (float64 values)
    ky: np.ndarray    # (R,)
    x: np.ndarray     # (n_p, n_f, R) complex64
    box: int
    d1: float         # sum dmg |obs|^2
    d2: float         # sum dmg |pred|^2 (over particles and frames)
    rows: np.ndarray | None = None

    def __post_init__(self):
        if self.rows is None:
            self.rows = rows_from_pixels(self.kx, self.ky)
        self.rows = np.ascontiguousarray(self.rows, np.int32).reshape(-1, 4)


def make_eval_ring(obs_rfft: np.ndarray, pred_rfft: np.ndarray, dose_w: np.ndarray, k_eval: int,
                   k_out: int, batch: int = 16) -> EvalRing:
    """Collect the ring ``k_eval + 2 <= ROUND(r) < k_out`` of the half-plane (RELION's 2-pixel guard).

    ``obs_rfft`` ``(n_p, n_f, N, N//2+1)``, ``pred_rfft`` ``(n_p, N, N//2+1)``, ``dose_w`` ``(n_f, N, N//2+1)``.
    ``x`` is formed in complex64 (``batch`` particles at a time); ``d1``/``d2`` are accumulated in float64.
    """
    obs_rfft = np.asarray(obs_rfft)
    n_p, n_f, box, half = obs_rfft.shape
    rows = ring_rows(box, k_eval, k_out)
    kyv, ix = row_pixels(rows)
    flat = np.where(kyv < 0, kyv + box, kyv) * half + ix
    n_r = flat.size
    dmg = np.take(np.asarray(dose_w).reshape(n_f, box * half), flat, axis=1).astype(np.float64)
    dmg32 = dmg.astype(np.float32)
    pred = np.take(np.asarray(pred_rfft).reshape(n_p, box * half), flat, axis=1)
    d2 = float(np.dot(dmg.sum(axis=0), (pred.real.astype(np.float64) ** 2 + pred.imag.astype(np.float64) ** 2)
                      .sum(axis=0)))
    pred = pred.astype(np.complex64, copy=False)
    x = np.empty((n_p, n_f, n_r), np.complex64)
    pow_obs = np.zeros((n_f, n_r))
    for a in range(0, n_p, batch):
        b = min(a + batch, n_p)
        o = np.take(obs_rfft[a:b].reshape(b - a, n_f, box * half), flat, axis=2)
        re, im = o.real, o.imag
        pow_obs += (re * re + im * im).sum(axis=0, dtype=np.float64)
        xb = x[a:b]
        if o.dtype == np.complex64:
            np.conjugate(o, out=xb)
        else:
            xb[...] = np.conjugate(o)
        xb *= pred[a:b, None]
        xb *= dmg32
    d1 = float((dmg * pow_obs).sum())
    return EvalRing(ix.astype(np.float64), kyv.astype(np.float64), x, box, d1, d2, rows)


def tsc_terms_reference(ring: EvalRing, tracks_px: np.ndarray, batch: int = 64) -> np.ndarray:
    """Reference :func:`tsc_terms`: one float32 ``sincos`` per pixel (slow; for tests and benchmarks).

    ``num = sum Re(pred conj(obs e^{i phi}) dmg) = sum Re(x e^{-i phi})``, ``phi = 2 pi k.t / N``
    (float32 phases: |phi| < 1e3 rad keeps the error below 1e-4 rad).
    """
    num = 0.0
    n_p = ring.x.shape[0]
    t = np.asarray(tracks_px, np.float64)
    kx = ring.kx.astype(np.float32)
    ky = ring.ky.astype(np.float32)
    c = np.float32(2 * np.pi / ring.box)
    for a in range(0, n_p, batch):
        b = min(a + batch, n_p)
        tx = (c * t[a:b, :, 0]).astype(np.float32)[..., None]
        ty = (c * t[a:b, :, 1]).astype(np.float32)[..., None]
        phi = tx * kx + ty * ky
        x = ring.x[a:b]
        num += float((x.real * np.cos(phi)).sum(dtype=np.float64) + (x.imag * np.sin(phi)).sum(dtype=np.float64))
    return np.array([num, ring.d1, ring.d2])


def phase_table(t_px: np.ndarray, k: np.ndarray, box: int) -> np.ndarray:
    """``exp(-2 pi i t k / N)`` ``(..., K)`` complex64 for shifts ``t`` ``(...)`` and integer ``k`` ``(K,)``.

    ``t k`` is reduced modulo ``N`` in float64 before the float32 ``cos``/``sin`` (phase error ~1e-6 rad).
    """
    a = np.multiply.outer(np.asarray(t_px, np.float64), np.asarray(k, np.float64))
    a -= box * np.rint(a / box)
    ph = (a * (-2.0 * np.pi / box)).astype(np.float32)
    out = np.empty(ph.shape, np.complex64)
    np.cos(ph, out=out.real)
    np.sin(ph, out=out.imag)
    return out


def tsc_terms(ring: EvalRing, tracks_px: np.ndarray, batch: int = 16) -> np.ndarray:
    """``[num, d1, d2]`` of one micrograph for tracks ``(n_p, n_f, 2)`` (sums to combine micrographs).

    ``num = sum Re(x e^{-i phi})``, ``phi = 2 pi (kx tx + ky ty) / N``, separated per ring row:
    ``e^{-i phi} = Ey[ky] Ex[kx]`` with per-(particle, frame) tables ``Ex`` over ``kx = 0..max`` and ``Ey`` over
    the rows; per ``batch`` particles ``y = x Ex[kx]`` (one gather), row sums by ``np.add.reduceat`` (float32,
    rows of <= N/2+1 pixels), ``num += Re sum_rows Ey * rowsum`` in float64.  Same value as
    :func:`tsc_terms_reference` (more accurate phases).
    """
    rows = ring.rows
    assert rows is not None  # EvalRing.__post_init__ derives it when not given
    n_p = ring.x.shape[0]
    if rows.shape[0] == 0 or n_p == 0:
        return np.array([0.0, ring.d1, ring.d2])
    t = np.asarray(tracks_px, np.float64)
    kx_idx = row_pixels(rows)[1]
    if kx_idx.min() < 0:
        raise ValueError("ring pixels must lie in the half plane kx >= 0")
    ex = phase_table(t[..., 0], np.arange(int(kx_idx.max()) + 1), ring.box)
    ey = phase_table(t[..., 1], rows[:, 0], ring.box)
    starts = rows[:, 2].astype(np.intp)
    num = 0.0
    for a in range(0, n_p, batch):
        b = min(a + batch, n_p)
        y = np.take(ex[a:b], kx_idx, axis=-1)
        y *= ring.x[a:b]
        s = np.add.reduceat(y, starts, axis=-1)
        e = ey[a:b]
        num += float((s.real * e.real).sum(dtype=np.float64) - (s.imag * e.imag).sum(dtype=np.float64))
    return np.array([num, ring.d1, ring.d2])


def tsc_from_terms(terms: np.ndarray) -> float:
    """``num / sqrt(d1 d2)`` (0 when a denominator vanishes)."""
    num, d1, d2 = (float(v) for v in terms)
    return num / np.sqrt(d1 * d2) if d1 > 0 and d2 > 0 else 0.0
