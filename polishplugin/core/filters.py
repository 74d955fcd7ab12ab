"""Raised-cosine masks and Fourier filters (RELION ``src/mask.cpp``, ``src/fftw.cpp``)."""

from __future__ import annotations

import numpy as np

from .fourier import irfft, radius_grid, rfft, round_half_away

__all__ = [
    "raised_cosine_sphere", "low_pass_rfft", "low_pass_map", "apply_bfactor_rfft", "fsc_weight_rfft",
    "centred_radius",
]


def centred_radius(shape: tuple[int, ...], centre: tuple[float, ...] | None = None) -> np.ndarray:
    """Real-space distance (px) of every voxel from ``centre`` (default ``N//2`` on each axis).

    ``centre`` is given in numpy axis order (z, y, x).
    """
    centre = tuple(n // 2 for n in shape) if centre is None else centre
    grids = np.meshgrid(*[np.arange(n) - c for n, c in zip(shape, centre)], indexing="ij", sparse=True)
    return np.sqrt(sum(g.astype(np.float64) ** 2 for g in grids))


def raised_cosine_sphere(shape: tuple[int, ...], radius_px: float, edge_px: float,
                         centre: tuple[float, ...] | None = None) -> np.ndarray:
    """1 inside ``radius_px``, 0 beyond ``radius_px + edge_px``, raised cosine between (RELION
    ``raisedCosineMask``)."""
    r = centred_radius(shape, centre)
    out = np.zeros(shape, np.float64)
    out[r <= radius_px] = 1.0
    band = (r > radius_px) & (r < radius_px + edge_px)
    if edge_px > 0:
        out[band] = 0.5 - 0.5 * np.cos(np.pi * (radius_px + edge_px - r[band]) / edge_px)
    return out


def low_pass_rfft(f: np.ndarray, shape: tuple[int, ...], resolution_a: float, angpix: float,
                  edge_shells: float = 2.0) -> np.ndarray:
    """RELION ``lowPassFilterMap``: raised-cosine edge ``edge_shells`` wide centred on
    ``ROUND(N angpix / res)``; zero beyond it."""
    box = shape[0]
    ires = int(round_half_away(box * angpix / resolution_a))
    lo = (ires - edge_shells / 2) / box
    hi = (ires + edge_shells / 2) / box
    res = radius_grid(shape) / box
    w = np.where(res < lo, 1.0, 0.0)
    band = (res >= lo) & (res <= hi)
    w[band] = 0.5 + 0.5 * np.cos(np.pi * (res[band] - lo) / (hi - lo))
    return f * w


def low_pass_map(volume: np.ndarray, resolution_a: float, angpix: float, edge_shells: float = 2.0) -> np.ndarray:
    """Low-pass a real map at ``resolution_a`` with :func:`low_pass_rfft`."""
    return irfft(low_pass_rfft(rfft(volume), volume.shape, resolution_a, angpix, edge_shells), volume.shape)


def apply_bfactor_rfft(f: np.ndarray, shape: tuple[int, ...], angpix: float, bfactor_a2: float) -> np.ndarray:
    """RELION ``applyBFactorToMap``: ``F *= exp(-B/4 res^2)`` up to Nyquist, 0 beyond."""
    box = shape[0]
    res = radius_grid(shape) / (box * angpix)
    w = np.where(res <= 1.0 / (2.0 * angpix), np.exp(-(bfactor_a2 / 4.0) * res * res), 0.0)
    return f * w


def fsc_weight_rfft(f: np.ndarray, shape: tuple[int, ...], fsc_curve: np.ndarray) -> np.ndarray:
    """RELION ``applyFscWeighting``: ``F *= sqrt(2 fsc/(1+fsc))`` up to the last shell before the
    first ``FSC < 1e-4``; 0 beyond (and where fsc <= 0)."""
    curve = np.asarray(fsc_curve, np.float64)
    below = np.nonzero(curve < 1e-4)[0]
    ires_max = (int(below[0]) - 1) if below.size else curve.size - 1
    shells = round_half_away(radius_grid(shape))
    fsc_at = np.where(shells < curve.size, curve[np.minimum(shells, curve.size - 1)], 0.0)
    w = np.where(fsc_at > 0, np.sqrt(np.maximum(2 * fsc_at / (1 + fsc_at), 0.0)), 0.0)
    w = np.where(shells <= ires_max, w, 0.0)
    return f * w
