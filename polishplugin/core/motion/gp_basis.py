"""GP prior on particle velocities and the track parameterisation (RELION ``GpMotionFit``, ALGORITHMS 1.10).

Velocity covariance between particles i, j: ``A_ij = sig_vel^2 exp(-|p_i - p_j| / sig_div)``
(``sq_exp=True``: ``exp(-0.5 |p_i-p_j|^2 / sig_div)``, RELION's **QUIRK** of dividing by sig_div, not
sig_div^2).  ``A = V diag(lam) V^T``; components with ``lam >= 1e-10`` are kept and
``B[p, d] = sqrt(lam_d) V[p, d]``.

Parameter vector ``x`` (length ``2 (n_p + dc (n_f - 1))``, RELION's order): ``x[2p], x[2p+1]`` = the
position of particle p in frame 0, then ``c[f, d] = x[2(n_p + dc f + d)] , x[... + 1]`` = velocity
coefficients of step ``f -> f+1``; ``pos[p, f+1] = pos[p, f] + sum_d c[f, d] B[p, d]``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gp_basis", "kernel_eigen", "basis_from_eigen", "params_to_tracks", "tracks_to_params", "n_params",
           "split_params"]

EIGEN_MIN = 1e-10


def kernel_eigen(positions_px: np.ndarray, sig_div_px: float, sq_exp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition ``(lam, V)`` of the correlation ``exp(-|p_i - p_j| / sig_div)`` (``sig_vel = 1``;
    ``sq_exp``: ``exp(-0.5 |p_i-p_j|^2 / sig_div)``), in decreasing ``lam`` order."""
    p = np.asarray(positions_px, np.float64).reshape(-1, 2)
    sig_div = max(float(sig_div_px), 1e-20)
    d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    a = np.exp(-0.5 * d * d / sig_div) if sq_exp else np.exp(-d / sig_div)
    lam, v = np.linalg.eigh(a)
    return lam[::-1].copy(), v[:, ::-1].copy()


def basis_from_eigen(lam1: np.ndarray, v: np.ndarray, sig_vel_px: float, max_ed: int = -1):
    """``(B, lam)`` for velocity sigma ``sig_vel_px`` from :func:`kernel_eigen`'s decomposition: the
    covariance is ``sig_vel^2`` times the correlation, so only the eigenvalues scale."""
    lam = np.asarray(lam1) * max(float(sig_vel_px), 1e-20) ** 2
    keep = lam >= EIGEN_MIN
    if max_ed is not None and max_ed > 0:
        keep &= np.arange(lam.size) < max_ed
    lam, v = lam[keep], v[:, keep]
    return v * np.sqrt(lam)[None, :], lam


def gp_basis(positions_px: np.ndarray, sig_vel_px: float, sig_div_px: float, sq_exp: bool = False,
             max_ed: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(B (n_p, dc), lam (dc,))`` in decreasing ``lam`` order (see module docstring)."""
    return basis_from_eigen(*kernel_eigen(positions_px, sig_div_px, sq_exp), sig_vel_px, max_ed)


def n_params(n_p: int, n_f: int, dc: int) -> int:
    """Length of the parameter vector."""
    return 2 * (n_p + dc * (n_f - 1))


def split_params(x: np.ndarray, n_p: int, n_f: int, dc: int) -> tuple[np.ndarray, np.ndarray]:
    """Views ``(pos0 (n_p, 2), c (n_f-1, dc, 2))`` of ``x``."""
    x = np.asarray(x)
    return x[:2 * n_p].reshape(n_p, 2), x[2 * n_p:].reshape(n_f - 1, dc, 2)


def params_to_tracks(x: np.ndarray, n_p: int, n_f: int, basis: np.ndarray) -> np.ndarray:
    """Tracks ``(n_p, n_f, 2)`` (RELION ``paramsToPos``)."""
    dc = basis.shape[1]
    pos0, c = split_params(x, n_p, n_f, dc)
    vel = (basis @ c.transpose(1, 0, 2).reshape(dc, -1)).reshape(n_p, n_f - 1, 2)
    tracks = np.empty((n_p, n_f, 2), np.float64)
    tracks[:, 0] = pos0
    tracks[:, 1:] = pos0[:, None, :] + np.cumsum(vel, axis=1)
    return tracks


def tracks_to_params(tracks: np.ndarray, basis: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Parameter vector from tracks (RELION ``posToParams``): projection of the steps on the basis.

    ``c[f, d] = sum_p (pos[p, f+1] - pos[p, f]) B[p, d] / lam_d``; exact inverse of
    :func:`params_to_tracks` for tracks whose steps lie in the span of ``B``.
    """
    tracks = np.asarray(tracks, np.float64)
    n_p, n_f, _ = tracks.shape
    steps = np.diff(tracks, axis=1)  # (n_p, n_f-1, 2)
    c = np.einsum("pfk,pd->fdk", steps, basis) / lam[None, :, None]
    return np.concatenate([tracks[:, 0].ravel(), c.ravel()])
