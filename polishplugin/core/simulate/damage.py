"""Planted per-frame radiation damage: B-factors and scales per frame.

``B_f = -slope * dose_f`` with ``dose_f = f * dose_per_frame`` (``f`` 0-based, so ``B_0 = 0``), and
``scale_f`` (default all 1).  A frame's signal is multiplied by ``scale_f exp(B_f q^2/4)``, the form of
RELION's polishing frame weights (``a_f exp(-0.5 k^2/sigma_f^2)``, ``B_f = -8 angpix^2 sh^2/sigma_f^2``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["planted_bfactors"]


def planted_bfactors(n_frames: int, dose_per_frame: float, slope_a2_per_dose: float,
                     scale_decay_per_dose: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(B_f, scale_f)`` for ``n_frames`` frames: ``B_f = -slope * f * dose``, ``scale_f = exp(-decay * f * dose)``."""
    dose = np.arange(n_frames, dtype=np.float64) * dose_per_frame
    return -slope_a2_per_dose * dose, np.exp(-scale_decay_per_dose * dose)
