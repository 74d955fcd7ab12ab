"""Planted beam-induced motion: a smooth global drift plus per-particle motion drawn from RELION's prior.

RELION's polishing prior (ALGORITHMS.md 1.10) on the per-frame velocities ``v_f`` (pixels/frame) of the
particles of one micrograph: per axis, ``v_f ~ N(0, A)`` with
``A_ij = sig_vel_px^2 exp(-|p_i - p_j| / sig_div_px)``; written in the eigen-basis of ``A``
(``A = V diag(lambda) V^T``, ``v_f = B c_f`` with ``B = V sqrt(lambda)``) the prior energy is
``sum_f |c_f|^2 + sum_f sum_d lambda_d |c_{f+1,d} - c_{f,d}|^2 / sig_acc_px^2``.  We draw the
coefficients from the Gaussian whose negative log-density is half of that energy, so that without the
acceleration term the velocities have exactly covariance ``A`` per axis, and with it they are smoother.

Units (``MotionEstimator::normalizeSig*``): ``sig_vel_px = dose_per_frame * s_vel / angpix``,
``sig_acc_px = dose_per_frame * s_acc / angpix`` (``s_acc <= 0``: no acceleration term),
``sig_div_px = s_div / coords_angpix``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["normalized_sigmas", "velocity_covariance", "sample_local_tracks", "global_drift",
           "random_positions"]


def normalized_sigmas(s_vel: float, s_div: float, s_acc: float, dose_per_frame: float, angpix: float,
                      coords_angpix: float | None = None) -> tuple[float, float, float]:
    """RELION's pixel-unit sigmas ``(sig_vel_px, sig_div_px, sig_acc_px)`` (``sig_acc_px <= 0``: off)."""
    coords_angpix = angpix if coords_angpix is None else coords_angpix
    sig_vel = max(1e-20, dose_per_frame * s_vel / angpix)
    sig_div = max(1e-20, s_div / coords_angpix)
    sig_acc = dose_per_frame * s_acc / angpix if s_acc > 0 else -1.0
    return sig_vel, sig_div, sig_acc


def velocity_covariance(positions_px: np.ndarray, sig_vel_px: float, sig_div_px: float) -> np.ndarray:
    """``A_ij = sig_vel^2 exp(-|p_i - p_j| / sig_div)`` (exponential kernel, RELION default)."""
    p = np.asarray(positions_px, np.float64)
    d = np.linalg.norm(p[:, None, :] - p[None, :, :], axis=-1)
    return sig_vel_px ** 2 * np.exp(-d / sig_div_px)


def sample_local_tracks(rng: np.random.Generator, positions_px: np.ndarray, n_frames: int,
                        sig_vel_px: float, sig_div_px: float, sig_acc_px: float,
                        zero_mean: bool = True) -> np.ndarray:
    """Per-particle displacements ``(n_particles, n_frames, 2)`` (px, xy) drawn from the prior.

    Frame 0 starts at 0; with ``zero_mean`` each particle's track is shifted so that its mean over
    frames is 0 (the prior has no term on the initial position, so this does not change the velocity
    statistics; it makes the particle sit at its coordinate in the frame sum).
    """
    n = len(positions_px)
    out = np.zeros((n, n_frames, 2))
    if n == 0 or n_frames < 2:
        return out
    cov = velocity_covariance(positions_px, sig_vel_px, sig_div_px)
    lam, vec = np.linalg.eigh(cov)
    keep = lam >= 1e-10
    lam, vec = lam[keep], vec[:, keep]
    basis = vec * np.sqrt(lam)[None, :]  # (n, dc)
    nv = n_frames - 1
    lap = np.zeros((nv, nv))
    if nv > 1:
        i = np.arange(nv - 1)
        lap[i, i] += 1
        lap[i + 1, i + 1] += 1
        lap[i, i + 1] -= 1
        lap[i + 1, i] -= 1
    coeffs = np.empty((nv, len(lam), 2))
    for d, ld in enumerate(lam):
        prec = np.eye(nv) + (ld / sig_acc_px ** 2 * lap if sig_acc_px > 0 else 0.0)
        chol = np.linalg.cholesky(prec)
        z = rng.normal(size=(nv, 2))
        coeffs[:, d, :] = np.linalg.solve(chol.T, z)  # cov = prec^-1
    vel = np.einsum("pd,fdx->pfx", basis, coeffs)  # (n, nv, 2)
    out[:, 1:, :] = np.cumsum(vel, axis=1)
    if zero_mean:
        out -= out.mean(axis=1, keepdims=True)
    return out


def global_drift(rng: np.random.Generator, n_frames: int, total_px: float) -> np.ndarray:
    """A smooth global drift ``(n_frames, 2)`` (px, xy), frame 0 at 0, about ``total_px`` long.

    Fast at first and slowing down (as in real movies), in a random direction with a gentle bend.
    """
    f = np.arange(n_frames, dtype=np.float64)
    tau = max(1.0, 0.6 * n_frames)
    along = total_px * (1.0 - np.exp(-f / tau)) / max(1e-12, 1.0 - np.exp(-(n_frames - 1) / tau))
    angle = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(-0.6, 0.6)
    theta = angle + bend * f / max(1, n_frames - 1)
    step = np.diff(along, prepend=0.0)
    xy = np.stack([np.cumsum(step * np.cos(theta)), np.cumsum(step * np.sin(theta))], axis=1)
    return xy - xy[0]


def random_positions(rng: np.random.Generator, n: int, width: int, height: int, margin: float,
                     min_dist: float, max_tries: int = 20000) -> np.ndarray:
    """``n`` integer positions ``(n, 2)`` (x, y px) at least ``margin`` from the edges and
    ``min_dist`` apart (rejection sampling; raises ``ValueError`` if they do not fit)."""
    pts = np.empty((n, 2))
    lo = np.array([margin, margin])
    hi = np.array([width - 1 - margin, height - 1 - margin])
    if np.any(hi < lo):
        raise ValueError(f"a {width}x{height} micrograph is too small for margin {margin:g} px")
    tries = 0
    k = 0
    while k < n:
        tries += 1
        if tries > max_tries:
            raise ValueError(f"cannot place {n} particles {min_dist:g} px apart on a {width}x{height} "
                             f"micrograph (placed {k})")
        c = np.floor(rng.uniform(lo, hi + 1))
        if k == 0 or np.min(np.hypot(*(pts[:k] - c).T)) >= min_dist:
            pts[k] = c
            k += 1
    return pts.astype(np.int64)
