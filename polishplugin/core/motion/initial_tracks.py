"""Initial tracks of Bayesian polishing (ALGORITHMS 1.9).

:func:`initial_tracks`: from the motion-correction model of the movie (global shifts plus RELION's
third-order polynomial local model, ``ThirdOrderPolynomialModel::getShiftAt``).
:func:`global_track_from_cc`: the global track from the particle-summed CC maps (RELION
``quadraticMaxWrapXY``; ``--gi``): every particle starts on this track.
"""

from __future__ import annotations

import numpy as np

__all__ = ["initial_tracks", "global_track_from_cc", "quadratic_max_wrap"]


def _poly_basis(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """RELION's local-model basis ``[1, u, u², v, v², uv]`` per position, ``(..., 6)``."""
    return np.stack([np.ones_like(u), u, u * u, v, v * v, u * v], axis=-1)


def initial_tracks(coords_xy: np.ndarray, coords_angpix: float, angpix: float, first_frame: int, n_frames: int,
                   global_shifts_px: np.ndarray, movie_angpix: float, start_frame: int = 1,
                   local_coeffs: np.ndarray | None = None, movie_size_px: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Initial tracks ``(n_p, n_f, 2)`` in particle px from the motion-correction model:
    ``-(movie_angpix/angpix) * (globalShift[F-1] + poly(F - start_frame, u, v))`` with ``F = first_frame +
    f + 1`` (1-based movie frame) and ``u = x coords_angpix / (movie_angpix W) - 0.5`` (same for v with H).

    ``global_shifts_px`` ``(n, 2)``: unbinned movie px, row F-1 = frame F (frames beyond the table: 0);
    ``local_coeffs`` ``(36,)`` (18 for x, then 18 for y; ``[basis j, power z^1..z^3]``) or ``None``;
    ``movie_size_px`` ``(W, H)``: the local model is used only when both are known (> 0).
    """
    coords = np.asarray(coords_xy, np.float64).reshape(-1, 2)
    table = np.asarray(global_shifts_px, np.float64).reshape(-1, 2)
    n_p = coords.shape[0]
    frames = first_frame + np.arange(n_frames) + 1  # 1-based movie frame numbers
    glob = np.zeros((n_frames, 2))
    if table.shape[0]:
        ok = frames - 1 < table.shape[0]
        glob[ok] = table[frames[ok] - 1]
    shift = np.broadcast_to(glob[None], (n_p, n_frames, 2)).copy()
    width, height = movie_size_px
    if local_coeffs is not None and width > 0 and height > 0:
        u = coords[:, 0] * coords_angpix / (movie_angpix * width) - 0.5
        v = coords[:, 1] * coords_angpix / (movie_angpix * height) - 0.5
        b = _poly_basis(u, v)  # (n_p, 6)
        z = (frames - start_frame).astype(np.float64)
        zz = np.stack([z, z * z, z ** 3], axis=-1)  # (n_f, 3)
        c = np.asarray(local_coeffs, np.float64)
        for axis in range(2):
            cm = c[18 * axis:18 * axis + 18].reshape(6, 3)  # [basis j, power]
            shift[..., axis] += np.einsum("pj,fk,jk->pf", b, zz, cm)
    return -(movie_angpix / angpix) * shift


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
