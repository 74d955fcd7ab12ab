"""Detector MTF correction of a map's Fourier transform (RELION ``divideByMtf``, ``src/fftw.cpp``).

An MTF table gives ``rlnMtfValue`` against ``rlnResolutionInversePixel`` (1/pixel of the *physical*
detector, Nyquist 0.5).  With ``mtf_angpix`` (the detector pixel size, Å) the table abscissae become
``res_i = invpix_i / mtf_angpix`` in 1/Å.  Every rfft coefficient of a map with pixel size ``angpix``
and ``res = |k| / (N angpix) < 1 / (2 angpix)`` is divided by the MTF at ``res``; coefficients at and
beyond Nyquist are left as they are.

**QUIRK kept on purpose (RELION compatibility):** the table is *not* searched for the bracketing
interval.  RELION computes ``res_per_elem = (res_last - res_0) / n`` with ``n`` the number of rows (not
``n - 1``) and takes ``i0 = floor(res / res_per_elem)``; ``i0 <= 0`` gives ``value[0]``,
``i0 >= n - 1`` gives ``value[n-1]``, otherwise the value is the straight line through table points
``i0`` and ``i0 + 1`` (their actual abscissae) evaluated at ``res`` — which, because the index is
slightly too large, is a mild extrapolation rather than an interpolation.  We reproduce this so that
sharpened maps and Guinier curves agree with RELION's numbers; :func:`mtf_interpolate` gives the
plain interpolation for comparison.
"""

from __future__ import annotations

import numpy as np

from .fsc import ShellGrid

__all__ = ["MTF_MIN_VALUE", "validate_mtf_table", "mtf_lookup", "mtf_interpolate", "mtf_lut", "mtf_factors",
           "divide_by_mtf"]

#: RELION refuses MTF values at or below this.
MTF_MIN_VALUE = 1e-10


def validate_mtf_table(mtf_invpix, mtf_values) -> tuple[np.ndarray, np.ndarray]:
    """Check an MTF table and return it as float64 arrays ``(invpix, values)``: the one check of MTF tables
    (``polishplugin.io.mtf`` puts the file name in front of its sentences).

    Raises ``ValueError`` (one sentence, without the file name) when the table has no rows or fewer than 2,
    columns of different length, non-finite numbers, abscissae that do not increase row by row or lie
    outside ``[0, 0.5]`` (1/detector pixel: Nyquist is 0.5), or MTF values ``<= 1e-10``.
    """
    x = np.asarray(mtf_invpix, dtype=np.float64).ravel()
    y = np.asarray(mtf_values, dtype=np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"the MTF table has {x.size} abscissae but {y.size} values")
    if x.size == 0:
        raise ValueError("the MTF table has no rows")
    if x.size < 2:
        raise ValueError(f"the MTF table needs at least 2 rows, it has {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        bad = int(np.nonzero(~(np.isfinite(x) & np.isfinite(y)))[0][0])
        raise ValueError(f"the MTF table has a non-finite number in row {bad + 1}")
    if np.any(np.diff(x) <= 0):
        bad = int(np.argmax(np.diff(x) <= 0)) + 2
        raise ValueError(f"rlnResolutionInversePixel must increase row by row (row {bad} does not)")
    if x[0] < 0 or x[-1] > 0.5 + 1e-6:
        raise ValueError(f"rlnResolutionInversePixel must lie in [0, 0.5] (1/detector pixel), found "
                         f"{x[0]:g}..{x[-1]:g}")
    if np.any(y <= MTF_MIN_VALUE):
        bad = int(np.nonzero(y <= MTF_MIN_VALUE)[0][0])
        raise ValueError(f"rlnMtfValue must be > {MTF_MIN_VALUE:g} (row {bad + 1} is {y[bad]:g})")
    return x, y


def mtf_lookup(res_inv_a, mtf_invpix, mtf_values, mtf_angpix: float) -> np.ndarray:
    """MTF at resolutions ``res_inv_a`` (1/Å) with RELION's index-lookup QUIRK (module docstring).

    Vectorised over any array shape; returns float64 of the same shape.
    """
    if not mtf_angpix > 0:
        raise ValueError(f"the MTF pixel size must be > 0, got {mtf_angpix}")
    x, y = validate_mtf_table(mtf_invpix, mtf_values)
    table_res = x / float(mtf_angpix)
    n = table_res.size
    res_per_elem = (table_res[-1] - table_res[0]) / n
    res = np.asarray(res_inv_a, dtype=np.float64)
    i0 = np.floor(res / res_per_elem).astype(np.int64)
    inner = (i0 > 0) & (i0 < n - 1)
    j = np.clip(i0, 0, n - 2)
    x0, x1 = table_res[j], table_res[j + 1]
    y0, y1 = y[j], y[j + 1]
    line = y0 + (y1 - y0) * (res - x0) / (x1 - x0)
    return np.where(inner, line, np.where(i0 <= 0, y[0], y[-1]))


def mtf_interpolate(res_inv_a, mtf_invpix, mtf_values, mtf_angpix: float) -> np.ndarray:
    """Plain linear interpolation of the MTF table (no QUIRK; constant beyond the table's ends)."""
    x, y = validate_mtf_table(mtf_invpix, mtf_values)
    return np.interp(np.asarray(res_inv_a, np.float64), x / float(mtf_angpix), y)


def mtf_lut(grid: ShellGrid, angpix: float, mtf_invpix, mtf_values, mtf_angpix: float) -> np.ndarray:
    """The MTF per distinct ``|k|^2`` of ``grid`` (a LUT: :meth:`ShellGrid.gather` spreads it over the
    coefficients): MTF below Nyquist, 1 at and beyond; ``mtf_angpix <= 0`` or None means ``angpix``."""
    res = grid.radius_lut / (grid.box * angpix)
    values = mtf_lookup(res, mtf_invpix, mtf_values, mtf_angpix if mtf_angpix and mtf_angpix > 0 else angpix)
    return np.where(res < 1.0 / (2.0 * angpix), values, 1.0)


def mtf_factors(shape: tuple[int, ...], angpix: float, mtf_invpix, mtf_values,
                mtf_angpix: float) -> np.ndarray:
    """MTF value for every rfft coefficient of a real map of ``shape`` (cubic), 1 at/beyond Nyquist.

    Dividing the rfft by this array is :func:`divide_by_mtf`.  ``mtf_angpix <= 0`` means ``angpix``.
    """
    if not angpix > 0:
        raise ValueError(f"the pixel size must be > 0, got {angpix}")
    grid = ShellGrid(tuple(shape))
    return grid.gather(mtf_lut(grid, float(angpix), mtf_invpix, mtf_values, mtf_angpix))


def divide_by_mtf(f_rfft: np.ndarray, shape: tuple[int, ...], angpix: float, mtf_invpix, mtf_values,
                  mtf_angpix: float) -> np.ndarray:
    """RELION ``divideByMtf``: return ``f_rfft / MTF`` (a new array) for coefficients below Nyquist.

    ``f_rfft`` is the rfft (:func:`polishplugin.core.fourier.rfft`) of a real cubic map of ``shape``
    with pixel size ``angpix`` (Å); ``mtf_invpix``/``mtf_values`` are the table's
    ``rlnResolutionInversePixel``/``rlnMtfValue`` columns; ``mtf_angpix`` the detector pixel size
    (``<= 0`` or None: ``angpix``).  Raises ``ValueError`` for an unusable table.
    """
    return f_rfft / mtf_factors(shape, angpix, mtf_invpix, mtf_values, mtf_angpix)
