"""Separable sub-pixel shift phases on the rfft grid (the hot spot of polishing).

``exp(-2 pi i (kx sx + ky sy) / N) = exp(-2 pi i kx sx / N) * exp(-2 pi i ky sy / N)``: two 1D tables per
image instead of one complex exponential per pixel (same convention as
``core.fourier.centre_shift_phase``: content moves by ``+s``; positive Nyquist).
"""

from __future__ import annotations

import numpy as np

from ..fourier import fftfreq_signed

__all__ = ["shift_phase_2d"]


def shift_phase_2d(box: int, shifts_xy: np.ndarray, dtype=np.complex64) -> np.ndarray:
    """Phases ``(..., N, N//2+1)`` for shifts ``(..., 2)`` (x, y) in pixels."""
    s = np.asarray(shifts_xy, np.float64)
    ky = fftfreq_signed(box).astype(np.float64)
    kx = fftfreq_signed(box, half=True).astype(np.float64)
    px = np.exp(-2j * np.pi * s[..., 0:1] * kx / box).astype(dtype)  # (..., N//2+1)
    py = np.exp(-2j * np.pi * s[..., 1:2] * ky / box).astype(dtype)  # (..., N)
    return py[..., :, None] * px[..., None, :]
