"""Masks and the simple "MTF" of the simulated project."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from polishplugin.core.filters import low_pass_map

__all__ = ["soft_mask_from_map", "smooth_mtf"]


def soft_mask_from_map(volume: np.ndarray, angpix: float, lowpass_a: float = 15.0,
                       threshold_fraction: float = 0.1, extend_px: int = 3, soft_px: int = 5) -> np.ndarray:
    """A soft solvent mask in [0, 1] (like ``relion_mask_create``): low-pass the map, threshold at
    ``threshold_fraction`` of its maximum, extend the binary mask by ``extend_px`` and add a raised-cosine
    edge of ``soft_px`` pixels."""
    lp = low_pass_map(np.asarray(volume, np.float64), lowpass_a, angpix)
    binary = lp > threshold_fraction * lp.max()
    if extend_px > 0:
        binary = ndimage.binary_dilation(binary, iterations=extend_px)
    dist = ndimage.distance_transform_edt(~binary)
    mask = np.where(dist <= 0, 1.0, np.where(dist < soft_px, 0.5 + 0.5 * np.cos(np.pi * dist / soft_px), 0.0))
    return mask.astype(np.float32)


def smooth_mtf(n_rows: int = 65) -> tuple[np.ndarray, np.ndarray]:
    """A smooth detector-like MTF table ``(invpix, value)`` from 0 to 0.5 1/pixel (value 1 at 0)."""
    x = np.linspace(0.0, 0.5, n_rows)
    y = np.sinc(x) * np.exp(-1.2 * x ** 2) * (1.0 - 0.5 * x)
    return x, y
