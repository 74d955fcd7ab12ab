"""Raised-cosine masks and radial Fourier filters (RELION ``src/mask.cpp``, ``src/fftw.cpp``).

Each radial filter is one look-up table over the distinct ``|k|^2`` of a
:class:`~polishplugin.core.fsc.ShellGrid` (``*_lut``; post-processing multiplies several of them); the
per-coefficient functions (``*_rfft``, :func:`low_pass_map`) gather that table for one map.
"""

from __future__ import annotations

import numpy as np

from .fourier import irfft, rfft, round_half_away
from .fsc import ShellGrid

__all__ = [
    "raised_cosine_sphere", "low_pass_rfft", "low_pass_map", "apply_bfactor_rfft", "fsc_weight_rfft",
    "centred_radius", "fsc_weight_per_shell", "fsc_weight_lut", "bfactor_lut", "low_pass_lut",
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


def fsc_weight_per_shell(fsc_curve: np.ndarray) -> np.ndarray:
    """Per-shell factor of :func:`fsc_weight_rfft` (RELION
    ``applyFscWeighting``): ``sqrt(2F/(1+F))`` up to the last shell before the first ``F < 1e-4``."""
    curve = np.asarray(fsc_curve, np.float64)
    below = np.nonzero(curve < 1e-4)[0]
    ires_max = (int(below[0]) - 1) if below.size else curve.size - 1
    w = np.where(curve > 0, np.sqrt(np.maximum(2 * curve / (1 + curve), 0.0)), 0.0)
    w[np.arange(curve.size) > ires_max] = 0.0
    return w


def fsc_weight_lut(radius_px: np.ndarray, fsc_curve: np.ndarray) -> np.ndarray:
    """:func:`fsc_weight_per_shell` at radii ``radius_px`` (any array, e.g. a grid's ``radius_lut``):
    shell ``ROUND(|k|)``, 0 beyond the curve."""
    curve = np.asarray(fsc_curve, np.float64)
    per_shell = np.append(fsc_weight_per_shell(curve), 0.0)
    return per_shell[np.minimum(round_half_away(radius_px), curve.size)]


def bfactor_lut(grid: ShellGrid, angpix: float, bfactor_a2: float) -> np.ndarray:
    """LUT of :func:`apply_bfactor_rfft`: ``exp(-B/4 res^2)`` up to Nyquist."""
    res = grid.radius_lut / (grid.box * angpix)
    return np.where(res <= 1.0 / (2.0 * angpix), np.exp(-(bfactor_a2 / 4.0) * res * res), 0.0)


def low_pass_lut(grid: ShellGrid, angpix: float, resolution_a: float, edge_shells: float = 2.0) -> np.ndarray:
    """LUT of :func:`low_pass_rfft` (RELION ``lowPassFilterMap``)."""
    box = grid.box
    ires = int(round_half_away(box * angpix / resolution_a))
    lo, hi = (ires - edge_shells / 2) / box, (ires + edge_shells / 2) / box
    res = grid.radius_lut / box
    out = np.where(res < lo, 1.0, 0.0)
    band = (res >= lo) & (res <= hi)
    out[band] = 0.5 + 0.5 * np.cos(np.pi * (res[band] - lo) / (hi - lo))
    return out


def low_pass_rfft(f: np.ndarray, shape: tuple[int, ...], resolution_a: float, angpix: float,
                  edge_shells: float = 2.0) -> np.ndarray:
    """RELION ``lowPassFilterMap``: raised-cosine edge ``edge_shells`` wide centred on
    ``ROUND(N angpix / res)``; zero beyond it."""
    grid = ShellGrid(shape)
    return f * grid.gather(low_pass_lut(grid, angpix, resolution_a, edge_shells))


def low_pass_map(volume: np.ndarray, resolution_a: float, angpix: float, edge_shells: float = 2.0) -> np.ndarray:
    """Low-pass a real map at ``resolution_a`` with :func:`low_pass_rfft`."""
    return irfft(low_pass_rfft(rfft(volume), volume.shape, resolution_a, angpix, edge_shells), volume.shape)


def apply_bfactor_rfft(f: np.ndarray, shape: tuple[int, ...], angpix: float, bfactor_a2: float) -> np.ndarray:
    """RELION ``applyBFactorToMap``: ``F *= exp(-B/4 res^2)`` up to Nyquist, 0 beyond."""
    grid = ShellGrid(shape)
    return f * grid.gather(bfactor_lut(grid, angpix, bfactor_a2))


def fsc_weight_rfft(f: np.ndarray, shape: tuple[int, ...], fsc_curve: np.ndarray) -> np.ndarray:
    """RELION ``applyFscWeighting``: ``F *= sqrt(2 fsc/(1+fsc))`` up to the last shell before the
    first ``FSC < 1e-4``; 0 beyond (and where fsc <= 0)."""
    grid = ShellGrid(shape)
    return f * grid.gather(fsc_weight_lut(grid.radius_lut, fsc_curve))
