"""Global track from the particle-summed CC maps (RELION ``quadraticMaxWrapXY``, ALGORITHMS 1.9).

Used when no motion-correction shifts are available: every particle starts on this track.
"""

from __future__ import annotations

import numpy as np

__all__ = ["global_track_from_cc", "quadratic_max_wrap"]


def quadratic_max_wrap(img: np.ndarray, origin: int = 0) -> np.ndarray:
    """Sub-pixel ``(x, y)`` of the maximum of a periodic image, relative to ``origin``, wrapped to ±M/2.

    Independent 1D parabola fits through the maximum and its two wrapped neighbours per axis.
    """
    my, mx = img.shape
    iy, ix = np.unravel_index(int(np.argmax(img)), img.shape)
    out = []
    for i, n, line in ((ix, mx, img[iy, :]), (iy, my, img[:, ix])):
        a, b, c = float(line[(i - 1) % n]), float(line[i]), float(line[(i + 1) % n])
        den = a - 2 * b + c
        d = 0.5 * (a - c) / den if den < 0 else 0.0
        s = i + d - origin
        s = (s + n / 2.0) % n - n / 2.0
        out.append(s)
    return np.array(out)


def global_track_from_cc(cc: np.ndarray, cc_origin: int = 0) -> np.ndarray:
    """``(n_f, 2)`` sub-pixel maxima (x, y) of ``sum_p CC_pf`` (see :mod:`.cross_correlation` layout)."""
    summed = np.asarray(cc, np.float64).sum(axis=0)
    return np.stack([quadratic_max_wrap(m, cc_origin) for m in summed])
