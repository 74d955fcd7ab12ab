"""Per-particle, per-frame cross-correlation maps (RELION ``MotionHelper::movieCC``, ALGORITHMS 1.8).

``CC_pf = N^2 * IFFT(obs_pf * w_f * conj(pred_p))`` with RELION's unnormalised inverse transform.  The
value of ``CC_pf`` at pixel ``s`` is the correlation of the observation with the prediction moved by
``+s``, so the peak sits at the particle's displacement in that frame.

Layout of the returned maps (documented convention shared with :mod:`.objective` / :mod:`.estimate`):

* ``crop_px=None``: full ``(N, N)`` maps, zero shift at index ``(0, 0)``, wrapped (RELION layout);
  pass ``cc_origin=0`` to the fit.
* ``crop_px=M``: the ``M x M`` window around zero shift, **re-centred** so that index ``M//2`` is zero
  shift (shifts ``-M//2 .. M - M//2 - 1``); pass ``cc_origin=M//2`` (see :func:`cc_origin`).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["cc_maps", "cc_origin", "crop_centre"]


def cc_origin(cc_shape_or_size, cropped: bool) -> int:
    """Index of zero shift in maps from :func:`cc_maps`: ``M//2`` if cropped, else 0."""
    m = cc_shape_or_size if isinstance(cc_shape_or_size, int) else int(cc_shape_or_size[-1])
    return m // 2 if cropped else 0


def crop_centre(maps: np.ndarray, crop_px: int) -> np.ndarray:
    """Cut the ``crop_px^2`` window around the wrapped origin of ``(..., N, N)`` maps, index M//2 = 0."""
    n = maps.shape[-1]
    m = int(crop_px)
    if m > n:
        raise ValueError(f"crop of {m} px is larger than the {n} px cross-correlation maps")
    idx = (np.arange(m) - m // 2) % n
    return maps[..., idx[:, None], idx[None, :]]


def cc_maps(obs_rfft: np.ndarray, pred_rfft: np.ndarray, frame_weights: np.ndarray,
            crop_px: int | None = None, backend: str = "numpy") -> np.ndarray:
    """Cross-correlation maps ``(n_p, n_f, M, M)`` float32 (``M = N`` unless ``crop_px``).

    ``obs_rfft (n_p, n_f, N, N//2+1)``: (whitened) particle frames; ``pred_rfft (n_p, N, N//2+1)``:
    reference predictions; ``frame_weights (n_f, N, N//2+1)``: dose weights (times any low-pass).
    ``backend="opencl"`` uses the OpenCL twin (:mod:`.cross_correlation_cl`).
    """
    if backend == "opencl":
        from .cross_correlation_cl import cc_maps_cl
        return cc_maps_cl(obs_rfft, pred_rfft, frame_weights, crop_px)
    if backend != "numpy":
        raise ValueError(f"unknown backend {backend!r} (numpy or opencl)")
    obs_rfft = np.asarray(obs_rfft)
    n_p, n_f, n, nh = obs_rfft.shape
    if pred_rfft.shape != (n_p, n, nh) or frame_weights.shape != (n_f, n, nh):
        raise ValueError(f"shape mismatch: obs {obs_rfft.shape}, pred {pred_rfft.shape}, "
                         f"weights {frame_weights.shape}")
    m = n if crop_px is None else int(crop_px)
    out = np.empty((n_p, n_f, m, m), np.float32)
    w = np.asarray(frame_weights, np.float32)
    scale = float(n) ** 4  # N^2 (RELION) * N^2 (numpy's irfft2 divides by N^2; RELION's inverse does not)
    for p in range(n_p):
        prod = obs_rfft[p] * (w * np.conj(pred_rfft[p])[None])
        maps = scipy.fft.irfft2(prod.astype(np.complex128), s=(n, n), workers=-1) * scale  # in double, as before
        out[p] = maps if crop_px is None else crop_centre(maps, m)
    return out
