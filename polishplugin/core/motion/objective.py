"""Motion-fit objective with analytic gradient (RELION ``GpMotionFit``, ALGORITHMS 1.8 and 1.10).

Data term: bicubic Catmull-Rom (Keys, a = -1/2) interpolation of every particle-frame CC map at the
particle's displacement, periodic wrap, all ``n_p * n_f`` maps at once with fancy indexing.

``E(x) = -sum_pf CC_pf(pos_pf + glob_f) + sum_fd |c_fd|^2 + [sig_acc>0] sum_fd lam_d |c_f+1,d - c_fd|^2 / sig_acc^2``
"""

from __future__ import annotations

import numpy as np

from .gp_basis import params_to_tracks, split_params

__all__ = ["catmull_rom_weights", "catmull_rom", "MotionObjective"]


def catmull_rom_weights(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(..., 4)`` of samples at floor-1..floor+2 for fractional part ``t``, and d/dt."""
    t = np.asarray(t, np.float64)
    t2 = t * t
    t3 = t2 * t
    w = np.empty(t.shape + (4,))
    dw = np.empty(t.shape + (4,))
    w[..., 0] = 0.5 * (-t3 + 2 * t2 - t)
    w[..., 1] = 0.5 * (3 * t3 - 5 * t2 + 2)
    w[..., 2] = 0.5 * (-3 * t3 + 4 * t2 + t)
    w[..., 3] = 0.5 * (t3 - t2)
    dw[..., 0] = 0.5 * (-3 * t2 + 4 * t - 1)
    dw[..., 1] = 0.5 * (9 * t2 - 10 * t)
    dw[..., 2] = 0.5 * (-9 * t2 + 8 * t + 1)
    dw[..., 3] = 0.5 * (3 * t2 - 2 * t)
    return w, dw


def catmull_rom(maps: np.ndarray, xy: np.ndarray, origin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate ``maps (K, M, M)`` at ``xy (K, 2)`` (x = last axis), periodic wrap.

    Position ``xy`` refers to map index ``xy + origin``.  Returns ``(values (K,), grad (K, 2))`` in
    float64; at integer points the value equals the map sample.
    """
    maps = np.ascontiguousarray(maps)
    k, my, mx = maps.shape
    u = np.asarray(xy, np.float64).reshape(k, 2) + origin
    fl = np.floor(u)
    t = u - fl
    base = fl.astype(np.int64) - 1
    four = np.arange(4)
    ix = (base[:, 0:1] + four) % mx  # (K, 4)
    iy = (base[:, 1:2] + four) % my
    lin = (np.arange(k) * (my * mx))[:, None, None] + iy[:, :, None] * mx + ix[:, None, :]
    patch = maps.reshape(-1).take(lin).astype(np.float64)  # (K, 4, 4) [y, x]
    wx, dwx = catmull_rom_weights(t[:, 0])
    wy, dwy = catmull_rom_weights(t[:, 1])
    row = (patch * wx[:, None, :]).sum(axis=2)  # (K, 4): interpolated along x, per row y
    value = (row * wy).sum(axis=1)
    gy = (row * dwy).sum(axis=1)
    gx = ((patch * dwx[:, None, :]).sum(axis=2) * wy).sum(axis=1)
    return value, np.stack([gx, gy], axis=-1)


class MotionObjective:
    """Value and gradient of the track-fit objective for one micrograph.

    ``cc (n_p, n_f, M, M)`` maps with zero shift at index ``cc_origin``; ``basis, lam`` from
    :func:`.gp_basis.gp_basis`; ``sig_acc_px <= 0`` switches the acceleration prior off;
    ``global_comp_px (n_f, 2)`` is added to the positions when the maps are sampled.  ``interp``: an
    interpolator ``(xy (K, 2), origin) -> (values, grad)`` over the ``n_p * n_f`` maps (for example the
    OpenCL :class:`.objective_cl.CatmullRomCL`); default the numpy :func:`catmull_rom`.
    """

    def __init__(self, cc: np.ndarray, basis: np.ndarray, lam: np.ndarray, sig_acc_px: float,
                 global_comp_px: np.ndarray | None = None, cc_origin: int = 0, interp=None):
        self.cc = cc
        self.n_p, self.n_f = cc.shape[:2]
        self.flat = cc.reshape(self.n_p * self.n_f, *cc.shape[2:])
        self.basis = np.asarray(basis, np.float64)
        self.lam = np.asarray(lam, np.float64)
        self.dc = self.basis.shape[1]
        self.sig_acc = float(sig_acc_px)
        self.glob = (np.zeros((self.n_f, 2)) if global_comp_px is None
                     else np.asarray(global_comp_px, np.float64).reshape(self.n_f, 2))
        self.origin = int(cc_origin)
        self.interp = interp
        self.n_evals = 0

    def tracks(self, x: np.ndarray) -> np.ndarray:
        """Displacements ``(n_p, n_f, 2)`` without the global component."""
        return params_to_tracks(x, self.n_p, self.n_f, self.basis)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.n_evals += 1
        n_p, n_f, dc = self.n_p, self.n_f, self.dc
        pos = self.tracks(x) + self.glob[None]
        if self.interp is None:
            val, g = catmull_rom(self.flat, pos.reshape(-1, 2), self.origin)
        else:
            val, g = self.interp(pos.reshape(-1, 2), self.origin)
        g = g.reshape(n_p, n_f, 2)
        e = -val.sum()
        _, c = split_params(x, n_p, n_f, dc)
        grad = np.empty_like(np.asarray(x, np.float64))
        gpos, gc = split_params(grad, n_p, n_f, dc)
        gpos[:] = -g.sum(axis=1)
        # d pos[p, f'] / d c[f, d] = B[p, d] for f' > f
        tail = np.cumsum(g[:, ::-1], axis=1)[:, ::-1]  # tail[p, f] = sum_{f' >= f} g[p, f']
        gc[:] = -(self.basis.T @ tail[:, 1:].reshape(n_p, -1)).reshape(dc, n_f - 1, 2).transpose(1, 0, 2)
        e += float((c * c).sum())
        gc += 2.0 * c
        if self.sig_acc > 0 and n_f > 2:
            wl = self.lam[None, :, None] / (self.sig_acc ** 2)
            dcf = c[1:] - c[:-1]
            e += float((wl * dcf * dcf).sum())
            gc[:-1] -= 2.0 * wl * dcf
            gc[1:] += 2.0 * wl * dcf
        return e, grad
