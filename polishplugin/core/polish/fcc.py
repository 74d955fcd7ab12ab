"""Per-frame Fourier cross-correlation tables (RELION ``MotionEstimator::updateFCC``, ALGORITHMS.md 1.11).

For every particle and frame the (whitened) observation is shifted back by its track and compared with
the **Opposite**-half prediction (not whitened), per shell ``idx = ROUND(scale * |k|)`` with
``scale = (s_ref * angpix_ref) / (s * angpix)`` and ``idx < s_ref//2 + 1``, over the stored half-plane:

``cc[f, idx] += Re(obs * conj(pred))``, ``w0[f, idx] += |obs|^2``, ``w1[f, idx] += |pred|^2``.

The three tables of all micrographs are summed before the B-factor fit (:mod:`.bfactors`).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ..fourier import frequency_grid, round_half_away
from .shift import shift_phase_2d

__all__ = ["fcc_shells", "accumulate_fcc", "fcc_from_tables"]


def fcc_shells(box: int, angpix: float, box_ref: int, angpix_ref: float) -> np.ndarray:
    """Shell index of each rfft pixel of a ``box`` image in reference shells, ``(N, N//2+1)`` int64."""
    ky, kx = frequency_grid((box, box))
    scale = (box_ref * angpix_ref) / (box * angpix)
    return round_half_away(scale * np.sqrt((kx * kx + ky * ky).astype(np.float64)))


def accumulate_fcc(obs_rfft: np.ndarray, tracks_px: np.ndarray, pred_rfft: np.ndarray, box_ref: int,
                   angpix_ref: float, angpix: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cc, w0, w1)``, each ``(n_f, s_ref//2+1)`` float64, of one micrograph.

    ``obs_rfft (n_p, n_f, N, N//2+1)``, ``tracks_px (n_p, n_f, 2)`` (xy, particle px; the observation is
    shifted by ``-track``), ``pred_rfft (n_p, N, N//2+1)``.
    """
    n_p, n_f, n, nh = obs_rfft.shape
    sh = box_ref // 2 + 1
    shells = fcc_shells(n, angpix, box_ref, angpix_ref).ravel()
    keep = shells < sh
    idx = shells[keep]
    cc = np.zeros((n_f, sh))
    w0 = np.zeros((n_f, sh))
    w1 = np.zeros((n_f, sh))
    # pixel -> shell summation as a sparse (n_keep, sh) matrix: one product per particle and table
    bins = sparse.csr_matrix((np.ones(idx.size, np.float32), (np.arange(idx.size), idx)), shape=(idx.size, sh))
    for p in range(n_p):
        shifted = (obs_rfft[p] * shift_phase_2d(n, -np.asarray(tracks_px[p], np.float64))).reshape(n_f, -1)[:, keep]
        pr = np.asarray(pred_rfft[p], np.complex64).ravel()[keep]
        prod = shifted.real * pr.real + shifted.imag * pr.imag  # Re(obs * conj(pred)), (n_f, n_keep)
        mag = shifted.real * shifted.real + shifted.imag * shifted.imag
        p2 = (pr.real * pr.real + pr.imag * pr.imag)[None]
        cc += (bins.T @ prod.T).T
        w0 += (bins.T @ mag.T).T
        w1 += (bins.T @ p2.T).T
    return cc, w0, w1


def fcc_from_tables(cc: np.ndarray, w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """``FCC = cc / sqrt(w0 * w1)``, 0 where a weight is 0 (NaNs in the inputs are treated as 0)."""
    cc, w0, w1 = (np.nan_to_num(np.asarray(a, np.float64)) for a in (cc, w0, w1))
    d = w0 * w1
    out = np.zeros_like(cc)
    ok = d > 0
    out[ok] = cc[ok] / np.sqrt(d[ok])
    return out
