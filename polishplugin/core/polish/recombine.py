"""Frame weights and the weighted frame sum of shiny particles (RELION ``FrameRecombiner``, ALGORITHMS.md 1.12-1.13).

``W_f(k) = a_f exp(-0.5 |k|^2 / sigma'_f^2)`` normalised over frames per pixel (computed in log space so
that pixels where every weight underflows still get the frames' relative weights), with
``sigma'_f = sigma_f * (s * angpix_out) / (s_ref * angpix_ref)``.  The sum of the weighted frames is
scaled to unit real-space variance and zero mean (``Sum /= s * sqrt(power)``).
"""

from __future__ import annotations

import numpy as np

from ..fourier import frequency_grid

__all__ = ["frame_weights", "spectrum_power", "normalize_shiny", "output_geometry", "recombine_frames"]


def frame_weights(sigma: np.ndarray, amp: np.ndarray, box: int, angpix_out: float, box_ref: int,
                  angpix_ref: float) -> np.ndarray:
    """Normalised per-frame weights ``(n_f, N, N//2+1)`` float32 (sum over frames = 1 at every pixel)."""
    sig = np.asarray(sigma, np.float64) * (box * angpix_out) / (box_ref * angpix_ref)
    a = np.asarray(amp, np.float64)
    ky, kx = frequency_grid((box, box))
    k2 = (kx * kx + ky * ky).astype(np.float64)
    with np.errstate(divide="ignore"):
        log_a = np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), -np.inf)
    logw = log_a[:, None, None] - 0.5 * k2[None] / sig[:, None, None] ** 2
    m = logw.max(0, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    w = np.exp(logw - m)
    s = w.sum(0, keepdims=True)
    w = np.where(s > 0, w / np.where(s > 0, s, 1.0), 1.0 / len(sig))
    return w.astype(np.float32)


def spectrum_power(f_rfft: np.ndarray) -> float:
    """RELION ``computePower``: half-plane sum of ``|F|^2`` (x>0 counted twice, DC excluded) / N^2."""
    n = f_rfft.shape[-2]
    w = np.full(f_rfft.shape[-2:], 2.0)
    w[:, 0] = 1.0
    w[0, 0] = 0.0
    mag2 = f_rfft.real.astype(np.float64) ** 2 + f_rfft.imag.astype(np.float64) ** 2
    return float((mag2 * w).sum() / (n * n))


def normalize_shiny(sum_rfft: np.ndarray) -> np.ndarray:
    """Scale a weighted frame sum (N, N//2+1) to unit real-space variance, DC = 0."""
    out = np.array(sum_rfft, np.complex128)
    out[0, 0] = 0
    n = out.shape[-2]
    pw = spectrum_power(out)
    return out / (n * np.sqrt(pw)) if pw > 0 else out


def output_geometry(box_ref: int, angpix_ref: float, movie_angpix: float, window: int = -1,
                    scale: int = -1) -> tuple[int, int, float]:
    """``(s_mov, s_out, angpix_out)`` of the shiny particles (RELION ``FrameRecombiner::init``)."""
    s_mov = window if window > 0 else 2 * int(0.5 * box_ref * angpix_ref / movie_angpix + 0.5)
    if scale > 0:
        s_out = scale
        angpix_out = movie_angpix * s_mov / s_out
    else:
        s_out = 2 * int(0.5 * s_mov * movie_angpix / angpix_ref + 0.5)
        angpix_out = angpix_ref
    return s_mov, s_out, angpix_out


def recombine_frames(frames, corners_xy: np.ndarray, tracks_out_px: np.ndarray, weights: np.ndarray, box_movie: int,
                     box_out: int, angpix_out: float, movie_angpix: float) -> np.ndarray:
    """Weighted, motion-corrected frame sums ``(n_p, s, s//2+1)`` complex64 (RELION ``FrameRecombiner::process``).

    ``frames`` yields ``(f, movie frame)`` (f = index into the tracks and weights); each particle's box is cut
    at its ``corners_xy`` plus the integer part of its track (movie px), shifted back by the sub-pixel rest in
    Fourier space and weighted by ``weights[f]`` (:func:`frame_weights`); ``tracks_out_px`` ``(n_p, n_f, 2)``
    are in output pixels of ``angpix_out`` Å.
    """
    from .extract import extract_boxes
    from .shift import shift_phase_2d

    corners = np.asarray(corners_xy, np.int64).reshape(-1, 2)
    acc = np.zeros((corners.shape[0], box_out, box_out // 2 + 1), np.complex64)
    for f, frame in frames:
        dm = tracks_out_px[:, f] * angpix_out / movie_angpix  # movie px
        dm_int = np.sign(dm) * np.floor(np.abs(dm) + 0.5)
        residual = (dm - dm_int) * movie_angpix / angpix_out  # output px
        boxes = extract_boxes(frame, corners + dm_int.astype(np.int64), box_movie, box_out)
        boxes *= shift_phase_2d(box_out, -residual)  # move the sub-pixel rest back
        boxes *= weights[f][None]
        acc += boxes
        del frame  # released before the next frame is read
    return acc
