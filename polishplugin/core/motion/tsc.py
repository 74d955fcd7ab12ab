"""Training data split and the held-out score TSC (RELION ``MotionParamEstimator``/``AlignmentSet``, ALGORITHMS 1.14).

Frequencies below ``k_cutoff`` align the tracks; the ring ``k_eval + 2 <= ROUND(r) < k_out`` scores them:
``TSC = sum dmg Re(pred conj(obs e^{+2 pi i k.t/N})) / sqrt(sum dmg |obs|^2 * sum dmg |pred|^2)``
(sums over particles, frames and ring pixels; ``obs`` whitened frames, ``pred`` the Opposite-half
prediction, ``dmg`` the full dose weights, ``t`` the fitted track).  Higher is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fourier import frequency_grid, round_half_away

__all__ = ["frequency_split", "alignment_lowpass", "EvalRing", "make_eval_ring", "tsc_terms", "tsc_from_terms"]


def frequency_split(k_out: int, align_frac: float = 0.5, eval_frac: float = 0.5) -> tuple[int, int]:
    """``(k_cutoff, k_eval)``: ``(int)(k_out sqrt(align_frac) + 0.5)``, ``(int)(k_out sqrt(1-eval_frac) + 0.5)``."""
    return int(k_out * np.sqrt(align_frac) + 0.5), int(k_out * np.sqrt(1.0 - eval_frac) + 0.5)


def alignment_lowpass(box: int, k_cutoff: int) -> np.ndarray:
    """Raised-cosine low-pass ``(N, N//2+1)``: 1 below ``k_cutoff-1``, 0 above ``k_cutoff+1``."""
    ky, kx = frequency_grid((box, box))
    r = np.sqrt((kx * kx + ky * ky).astype(np.float64))
    t = np.clip((r - (k_cutoff - 1)) / 2.0, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


@dataclass
class EvalRing:
    """Held-out ring pixels of one micrograph: ``x = dmg * pred * conj(obs)`` (complex64, what the score
    needs per track) and the constant denominators."""

    kx: np.ndarray    # (R,) integer frequencies
    ky: np.ndarray    # (R,)
    x: np.ndarray     # (n_p, n_f, R) complex64
    box: int
    d1: float         # sum dmg |obs|^2
    d2: float         # sum dmg |pred|^2 (over particles and frames)


def make_eval_ring(obs_rfft: np.ndarray, pred_rfft: np.ndarray, dose_w: np.ndarray, k_eval: int,
                   k_out: int) -> EvalRing:
    """Collect the ring ``k_eval + 2 <= ROUND(r) < k_out`` of the half-plane (RELION's 2-pixel guard)."""
    box = obs_rfft.shape[-2]
    ky, kx = frequency_grid((box, box))
    shell = round_half_away(np.sqrt((kx * kx + ky * ky).astype(np.float64)))
    sel = (shell >= k_eval + 2) & (shell < k_out)
    iy, ix = np.nonzero(sel)
    kyv = np.broadcast_to(ky, sel.shape)[iy, ix].astype(np.float64)
    kxv = np.broadcast_to(kx, sel.shape)[iy, ix].astype(np.float64)
    obs = np.asarray(obs_rfft[..., iy, ix], np.complex128)
    pred = np.asarray(pred_rfft[..., iy, ix], np.complex128)
    dmg = np.asarray(dose_w[..., iy, ix], np.float64)
    x = (dmg[None] * pred[:, None, :] * np.conj(obs)).astype(np.complex64)
    d1 = float((dmg[None] * (np.abs(obs) ** 2)).sum())
    d2 = float((dmg.sum(axis=0)[None] * (np.abs(pred) ** 2)).sum())
    return EvalRing(kxv, kyv, x, box, d1, d2)


def tsc_terms(ring: EvalRing, tracks_px: np.ndarray, batch: int = 64) -> np.ndarray:
    """``[num, d1, d2]`` of one micrograph for tracks ``(n_p, n_f, 2)`` (sums to combine micrographs).

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


def tsc_from_terms(terms: np.ndarray) -> float:
    """``num / sqrt(d1 d2)`` (0 when a denominator vanishes)."""
    num, d1, d2 = (float(v) for v in terms)
    return num / np.sqrt(d1 * d2) if d1 > 0 and d2 > 0 else 0.0
