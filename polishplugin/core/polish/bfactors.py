"""Per-frame B-factor and scale fit from the FCC tables (RELION ``DamageHelper::fitBkFactors``, ALGORITHMS.md 1.12).

Model: ``FCC[f, k] ~ a_f * exp(-0.5 k^2 / sigma_f^2) * env[k]``, alternating five times between a
per-frame recursive grid search for ``(sigma_f, a_f)`` (20 values, 4 refinements of +-10 % of half the
range) and a per-shell least-squares update of the envelope.  Reported per frame:
``B_f = -8 angpix_ref^2 (s_ref/2+1)^2 / sigma_f^2`` (uses ``s/2+1``: RELION) and ``k_f = ln a_f``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["find_sigma_k", "fit_bk_factors", "bk_to_bfactors", "bfactors_to_sigmas", "fit_range", "fsc_cutoff_shell"]


def fsc_cutoff_shell(fsc: np.ndarray | None, box_ref: int) -> int:
    """RELION's ``k_out`` of polishing: the first shell ``k >= 1`` whose FSC is below 0.143 (the FCCs, the
    B-factor fit and the training's held-out ring stop there); ``box_ref//2 + 1`` without an FSC or when
    every shell up to Nyquist passes."""
    shells = box_ref // 2 + 1
    if fsc is None:
        return shells
    weight = np.where(np.asarray(fsc, np.float64) >= 0.143, fsc, 0.0)
    for i in range(1, min(len(weight), shells)):
        if weight[i] <= 0:
            return i
    return shells


def fit_range(box_ref: int, angpix_ref: float, k_out: int, bfac_minfreq: float = 20.0,
              bfac_maxfreq: float = -1.0) -> tuple[int, int]:
    """Shells ``k0 <= k < k1`` used by the fit.

    ``k0 = (int)(s*a/minfreq)``, ``k1 = (int)(s*a/maxfreq)`` with maxfreq = FSC=0.143 resolution
    ``s*a/k_out`` when ``bfac_maxfreq <= 0`` (double round trip then truncation: RELION **QUIRK**).
    """
    sa = box_ref * angpix_ref
    k0 = int(sa / bfac_minfreq)
    k1a = bfac_maxfreq if bfac_maxfreq > 0 else sa / k_out
    k1 = int(sa / k1a)
    return k0, min(k1, box_ref // 2 + 1)


def find_sigma_k(fcc: np.ndarray, env: np.ndarray, k0: int, k1: int, sigma0: float, sigma1: float,
                 steps: int = 20, depth: int = 4, q: float = 0.1) -> tuple[float, float]:
    """Best ``(sigma, a)`` for one frame's FCC row by a recursive grid search (RELION ``findSigmaKRec``)."""
    k = np.arange(k0, k1, dtype=np.float64)
    p = np.asarray(fcc, np.float64)[k0:k1]
    e = np.asarray(env, np.float64)[k0:k1]
    best_sig, best_a = sigma0, 0.0
    lo, hi = sigma0, sigma1
    for _level in range(depth + 1):
        sigs = np.linspace(lo, hi, steps)
        qk = e[None] * np.exp(-0.5 * k[None] ** 2 / sigs[:, None] ** 2)
        qq = (qk * qk).sum(1)
        a = np.where(qq > 0, (qk * p[None]).sum(1) / np.where(qq > 0, qq, 1.0), 0.0)
        err = ((p[None] - a[:, None] * qk) ** 2).sum(1)
        i = int(np.argmin(err))
        best_sig, best_a = float(sigs[i]), float(a[i])
        h = 0.5 * (hi - lo)
        lo, hi = max(best_sig - q * h, 1e-20), best_sig + q * h
    return best_sig, best_a


def fit_bk_factors(fcc: np.ndarray, k0: int, k1: int, iterations: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sigma (n_f,), a (n_f,), envelope (n_k,))`` fitted to ``fcc (n_f, n_k)`` on shells ``[k0, k1)``."""
    fcc = np.asarray(fcc, np.float64)
    n_f, n_k = fcc.shape
    kc = n_k  # = s_ref/2 + 1
    best = int(np.argmax(fcc.sum(1)))
    env = np.maximum(0.0, fcc[best])
    sig = np.ones(n_f)
    amp = np.zeros(n_f)
    k = np.arange(n_k, dtype=np.float64)
    for _ in range(iterations):
        for f in range(n_f):
            sig[f], amp[f] = find_sigma_k(fcc[f], env, k0, k1, 1.0, 10.0 * kc)
        qf = amp[:, None] * np.exp(-0.5 * k[None] ** 2 / sig[:, None] ** 2)  # (n_f, n_k)
        qq = (qf * qf).sum(0)
        env = np.maximum(0.0, np.where(qq > 0, (qf * fcc).sum(0) / np.where(qq > 0, qq, 1.0), 0.0))
    return sig, amp, env


def bk_to_bfactors(sigma: np.ndarray, amp: np.ndarray, box_ref: int,
                   angpix_ref: float) -> tuple[np.ndarray, np.ndarray]:
    """``(B (n_f,), k = ln a (n_f,))`` with ``B = -8 angpix^2 (s/2+1)^2 / sigma^2``."""
    sh = box_ref // 2 + 1
    b = -8.0 * angpix_ref ** 2 * sh ** 2 / np.asarray(sigma, np.float64) ** 2
    with np.errstate(divide="ignore"):
        lk = np.log(np.asarray(amp, np.float64))
    return b, lk


def bfactors_to_sigmas(bfac: np.ndarray, kfac: np.ndarray, box_ref: int,
                       angpix_ref: float) -> tuple[np.ndarray, np.ndarray]:
    """External per-frame B/k (``--bfactors``) to ``(sigma, a)``: ``sigma = sqrt(-cf / (B - max B - 1))``."""
    sh = box_ref // 2 + 1
    cf = 8.0 * angpix_ref ** 2 * sh ** 2
    b = np.asarray(bfac, np.float64)
    return np.sqrt(-cf / (b - b.max() - 1.0)), np.exp(np.asarray(kfac, np.float64))
