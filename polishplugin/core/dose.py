"""Radiation-damage (dose) weights, RELION ``DamageHelper::damageWeight``.

``tau(k) = a (rho k)^b + c`` with ``rho = 1/(2 (kc-1) angpix)``, ``kc = N/2 + 1``; the weight of a
frame with accumulated dose ``D`` is ``exp(-D / tau)``.  ``a, b, c = 3.40, -1.06, -0.54`` are RELION's
fit of Grant & Grigorieff's critical exposure.
"""

from __future__ import annotations

import numpy as np

from .fourier import frequency_grid

__all__ = ["critical_exposure", "dose_weights"]

DAMAGE_A, DAMAGE_B, DAMAGE_C = 3.40, -1.06, -0.54


def critical_exposure(freq_per_a: np.ndarray, a: float = DAMAGE_A, b: float = DAMAGE_B,
                      c: float = DAMAGE_C) -> np.ndarray:
    """Critical exposure ``tau`` (e/Å^2) at spatial frequency ``freq_per_a`` (1/Å)."""
    with np.errstate(divide="ignore"):
        return a * np.power(np.asarray(freq_per_a, np.float64), b) + c


def dose_weights(n_frames: int, box_px: int, angpix: float, dose_per_frame: float,
                 first_frame: int = 0, a: float = DAMAGE_A, b: float = DAMAGE_B,
                 c: float = DAMAGE_C) -> np.ndarray:
    """Per-frame dose weights on the rfft grid, shape ``(n_frames, box, box//2+1)`` float64.

    Frame ``f`` carries dose ``(f + first_frame) * dose_per_frame`` (0 for the first frame).
    """
    ky, kx = frequency_grid((box_px, box_px))
    k = np.sqrt(kx.astype(np.float64) ** 2 + ky ** 2)
    kc = box_px // 2 + 1
    rho = 1.0 / (2.0 * (kc - 1) * angpix)
    tau = critical_exposure(rho * k, a, b, c)
    dose = (np.arange(n_frames) + first_frame) * dose_per_frame
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        w = np.exp(-dose[:, None, None] / tau[None])
    w[:, 0, 0] = 1.0  # DC: tau is infinite
    return np.where(np.isfinite(w), w, 0.0)
