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

__all__ = ["cc_maps", "cc_origin", "crop_centre", "crop_windows"]


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


def crop_windows(maps: np.ndarray, crop_px: int, centres: np.ndarray) -> np.ndarray:
    """``(n_f, M, M)`` windows of full wrapped ``(n_f, N, N)`` maps; window f holds the shifts
    ``centres[f] + (-M//2 .. M - M//2 - 1)`` (xy order), index ``M//2`` = shift ``centres[f]``."""
    n = maps.shape[-1]
    m = int(crop_px)
    c = np.asarray(centres, np.int64).reshape(-1, 2)
    off = np.arange(m) - m // 2
    iy = (c[:, 1:2] + off) % n  # (n_f, M)
    ix = (c[:, 0:1] + off) % n
    return maps[np.arange(maps.shape[0])[:, None, None], iy[:, :, None], ix[:, None, :]]


def _window_transform(prod: np.ndarray, n: int, m: int, centres: np.ndarray) -> np.ndarray:
    """``irfft2`` of ``prod (n_f, N, ncol)`` (columns beyond ``ncol`` zero), returning only the ``(n_f, M, M)``
    windows of :func:`crop_windows`: the inverse along y for the non-zero columns, the window's M rows
    kept, the inverse along x for those rows only (exact: the 2D transform is separable), in double."""
    n_f = prod.shape[0]
    c = np.asarray(centres, np.int64).reshape(n_f, 2)
    off = np.arange(m) - m // 2
    cols = scipy.fft.ifft(prod.astype(np.complex128), axis=1, workers=-1)  # (n_f, N, ncol): y done
    rows = cols[np.arange(n_f)[:, None], (c[:, 1:2] + off) % n]            # (n_f, M, ncol)
    lines = scipy.fft.irfft(rows, n=n, axis=2, workers=-1)                 # (n_f, M, N), zero-padded columns
    ix = (c[:, 0:1] + off) % n
    return lines[np.arange(n_f)[:, None, None], np.arange(m)[None, :, None], ix[:, None, :]]


def cc_maps(obs_rfft: np.ndarray, pred_rfft: np.ndarray, frame_weights: np.ndarray,
            crop_px: int | None = None, backend: str = "numpy", centres: np.ndarray | None = None) -> np.ndarray:
    """Cross-correlation maps ``(n_p, n_f, M, M)`` float32 (``M = N`` unless ``crop_px``).

    ``obs_rfft (n_p, n_f, N, N//2+1)``: (whitened) particle frames; ``pred_rfft (n_p, N, N//2+1)``:
    reference predictions; ``frame_weights (n_f, N, N//2+1)``: dose weights (times any low-pass).
    ``centres (n_p, n_f, 2)`` (integer shifts, with ``crop_px``): window ``[p, f]`` is centred on
    ``centres[p, f]`` instead of zero shift (:func:`crop_windows`; the caller subtracts the centre from
    the positions it samples).  ``backend="opencl"`` uses the OpenCL twin (:mod:`.cross_correlation_cl`).
    """
    if centres is not None and crop_px is None:
        raise ValueError("per-track windows (centres) need crop_px")
    if backend not in ("numpy", "opencl"):
        raise ValueError(f"unknown backend {backend!r} (numpy or opencl)")
    if backend == "opencl" and centres is None:
        from .cross_correlation_cl import cc_maps_cl
        return cc_maps_cl(obs_rfft, pred_rfft, frame_weights, crop_px)
    obs_rfft = np.asarray(obs_rfft)
    n_p, n_f, n, nh = obs_rfft.shape
    if pred_rfft.shape != (n_p, n, nh) or frame_weights.shape != (n_f, n, nh):
        raise ValueError(f"shape mismatch: obs {obs_rfft.shape}, pred {pred_rfft.shape}, "
                         f"weights {frame_weights.shape}")
    m = n if crop_px is None else int(crop_px)
    out = np.empty((n_p, n_f, m, m), np.float32)
    w = np.asarray(frame_weights, np.float32)
    scale = float(n) ** 4  # N^2 (RELION) * N^2 (numpy's irfft2 divides by N^2; RELION's inverse does not)
    ncol = int(np.nonzero(np.any(w != 0, axis=(0, 1)))[0].max()) + 1 if np.any(w != 0) else 1
    wc = w[:, :, :ncol]
    for p in range(n_p):
        if centres is not None:  # only the windows: transform the y axis, keep the window rows, then x
            prod = obs_rfft[p, :, :, :ncol] * (wc * np.conj(pred_rfft[p, :, :ncol])[None])
            out[p] = _window_transform(prod, n, m, centres[p]) * scale
            continue
        prod = obs_rfft[p] * (w * np.conj(pred_rfft[p])[None])
        maps = scipy.fft.irfft2(prod.astype(np.complex128), s=(n, n), workers=-1) * scale  # in double, as before
        if crop_px is None:
            out[p] = maps
        elif centres is None:
            out[p] = crop_centre(maps, m)
        else:
            out[p] = crop_windows(maps, m, centres[p])
    return out
