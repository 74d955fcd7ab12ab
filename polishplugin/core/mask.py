"""Automatic solvent mask from a map (RELION ``autoMask``, ``src/mask.cpp``; ``relion_mask_create``).

Steps: optional low-pass (raised cosine +-1 shell around ``ROUND(N angpix / lowpass)``); binarise
``map >= threshold``; extend by ``extend_px`` (every 0-voxel with a 1-voxel at Euclidean distance
``< extend_px`` becomes 1; a negative value shrinks: every 1-voxel with a 0-voxel closer than
``|extend_px|`` becomes 0); soft edge: every 0-voxel whose nearest 1-voxel is at distance
``d < width`` gets ``0.5 + 0.5 cos(pi d / width)``; optional inversion.

RELION searches a cube of ``ceil(extend)`` voxels around every voxel; the exact Euclidean distance
transform (``scipy.ndimage.distance_transform_edt``, distances between voxel centres) gives the same
sets in O(N^3).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .filters import low_pass_map

__all__ = ["binarise", "extend_binary_mask", "soft_edge", "auto_mask"]


def binarise(volume: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask ``volume >= threshold``."""
    return np.asarray(volume) >= threshold


def _distance_to(target: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of every voxel to the nearest ``True`` voxel of ``target``
    (0 on ``target``; +inf everywhere when ``target`` is empty)."""
    if not target.any():
        return np.full(target.shape, np.inf)
    return ndimage.distance_transform_edt(~target)


def extend_binary_mask(binary: np.ndarray, extend_px: float) -> np.ndarray:
    """Grow (``extend_px > 0``) or shrink (``< 0``) a boolean mask by Euclidean distance."""
    binary = np.asarray(binary, bool)
    if extend_px > 0:
        return binary | (_distance_to(binary) < extend_px)
    if extend_px < 0:
        return binary & ~(_distance_to(~binary) < -extend_px)
    return binary.copy()


def soft_edge(binary: np.ndarray, width_px: float) -> np.ndarray:
    """Float mask: 1 on ``binary``, raised-cosine fall-off over ``width_px`` outside it."""
    binary = np.asarray(binary, bool)
    out = binary.astype(np.float64)
    if width_px > 0:
        d = _distance_to(binary)
        band = ~binary & (d < width_px)
        out[band] = 0.5 + 0.5 * np.cos(np.pi * d[band] / width_px)
    return out


def auto_mask(volume: np.ndarray, angpix: float, ini_threshold: float = 0.01, lowpass_a: float = -1.0,
              extend_px: float = 0.0, width_soft_edge_px: float = 0.0, invert: bool = False) -> np.ndarray:
    """RELION ``relion_mask_create`` on a real map: returns a float32 mask in [0, 1].

    Parameters
    ----------
    volume : (N, N, N) real map.
    angpix : pixel size (Å), used by the low-pass.
    ini_threshold : binarisation threshold (RELION ``--ini_threshold``, default 0.01).
    lowpass_a : low-pass resolution in Å before thresholding; ``<= 0`` means none (``--lowpass -1``).
    extend_px : pixels to extend (negative: shrink) the binary mask (``--extend_inimask``).
    width_soft_edge_px : width of the raised-cosine soft edge in pixels (``--width_soft_edge``).
    invert : return ``1 - mask`` (``--invert``).
    """
    vol = np.asarray(volume, np.float64)
    if lowpass_a > 0:
        vol = low_pass_map(vol, lowpass_a, angpix)
    binary = extend_binary_mask(binarise(vol, ini_threshold), extend_px)
    mask = soft_edge(binary, width_soft_edge_px)
    if invert:
        mask = 1.0 - mask
    return mask.astype(np.float32)
