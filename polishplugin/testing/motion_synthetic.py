"""Synthetic particle-frame data with planted GP-distributed tracks (for tests and benchmarks).

The planted tracks are drawn from the very prior the fit uses (velocities ``c[f, d]`` per eigen-mode
with the Gaussian density ``exp(-|c|^2 - lam |dc|^2 / sig_acc^2)``), so "sigmas matching the planted
statistics" is well defined.  Observations are the particle's reference image moved by its track,
times the dose weights, plus white Gaussian noise; no file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.dose import dose_weights
from ..core.motion.data import MotionData
from ..core.fourier import frequency_grid, rfft
from ..core.motion.gp_basis import gp_basis

__all__ = ["SyntheticMicrograph", "sample_prior_tracks", "make_micrograph", "phase_shift"]


@dataclass
class SyntheticMicrograph(MotionData):
    """Simulated particle frames (:class:`~polishplugin.core.motion.data.MotionData`; coordinate pixels =
    particle pixels, both predictions the noise-free signal, initial tracks the per-frame mean of the true
    ones) and the planted tracks."""

    true_tracks_px: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 2)))  # (n_p, n_f, 2)


def phase_shift(box: int, tracks_px: np.ndarray) -> np.ndarray:
    """``exp(-2 pi i k.t / N)`` for tracks ``(..., 2)`` (x, y) -> ``(..., N, N//2+1)`` complex128."""
    ky, kx = frequency_grid((box, box))
    t = np.asarray(tracks_px, np.float64)
    arg = t[..., 0, None, None] * kx + t[..., 1, None, None] * ky
    return np.exp(-2j * np.pi * arg / box)


def sample_prior_tracks(rng: np.random.Generator, positions_px: np.ndarray, n_f: int, sig_vel_px: float,
                        sig_div_px: float, sig_acc_px: float) -> np.ndarray:
    """Tracks ``(n_p, n_f, 2)`` starting at 0, drawn from the fit's prior (see module docstring)."""
    basis, lam = gp_basis(positions_px, sig_vel_px, sig_div_px)
    n_steps = n_f - 1
    dmat = np.diff(np.eye(n_steps), axis=0)  # (n_steps-1, n_steps)
    c = np.empty((n_steps, lam.size, 2))
    for d, lam_d in enumerate(lam):
        prec = 2.0 * np.eye(n_steps)
        if sig_acc_px > 0:
            prec += 2.0 * lam_d / sig_acc_px ** 2 * dmat.T @ dmat
        chol = np.linalg.cholesky(np.linalg.inv(prec))
        c[:, d, :] = chol @ rng.standard_normal((n_steps, 2))
    vel = np.einsum("fdk,pd->pfk", c, basis)
    tracks = np.zeros((positions_px.shape[0], n_f, 2))
    tracks[:, 1:] = np.cumsum(vel, axis=1)
    return tracks


def _random_particle(rng: np.random.Generator, box: int, n: int) -> np.ndarray:
    """``n`` random particle images: white noise inside a soft disc of radius N/3, with a mild
    ``exp(-|k|^2 / (2 (N/4)^2))`` fall-off (signal up to Nyquist); rfft ``(n, N, N//2+1)``."""
    yy, xx = np.mgrid[0:box, 0:box] - box // 2
    r = np.sqrt(xx * xx + yy * yy)
    disc = np.clip((box / 3.0 + 2 - r) / 4.0, 0, 1)
    f = rfft(rng.normal(size=(n, box, box)) * disc, axes=(-2, -1))
    ky, kx = frequency_grid((box, box))
    return f * np.exp(-(kx * kx + ky * ky) / (2 * (box / 4.0) ** 2))


def make_micrograph(seed: int = 0, n_p: int = 24, n_f: int = 16, box: int = 48, angpix: float = 1.5,
                    dose_per_frame: float = 1.5, s_vel: float = 0.6, s_div: float = 2000.0,
                    s_acc: float = 3.0, noise: float = 3.0, field_px: float = 3000.0,
                    global_drift_px: float = 4.0, name: str = "mic") -> SyntheticMicrograph:
    """One synthetic micrograph with planted tracks; sigmas in RELION units (Å/dose, Å, Å/dose).

    ``noise``: standard deviation of the white real-space noise per pixel and frame, relative to the
    particle's real-space standard deviation (about 1 inside its disc).  A linear global drift of
    ``global_drift_px`` over the movie is added to every track; the initial tracks are the per-frame mean
    of the true tracks (what motion correction would have removed).
    """
    rng = np.random.default_rng(seed)
    positions = rng.uniform(0, field_px, (n_p, 2))
    sv, sd, sa = dose_per_frame * s_vel / angpix, s_div / angpix, dose_per_frame * s_acc / angpix
    tracks = sample_prior_tracks(rng, positions, n_f, sv, sd, sa)
    drift = np.linspace(0, 1, n_f)[:, None] * rng.normal(size=2) * global_drift_px / np.sqrt(2)
    tracks = tracks + drift[None]
    pred = _random_particle(rng, box, n_p)
    dw = dose_weights(n_f, box, angpix, dose_per_frame)
    signal = pred[:, None] * phase_shift(box, tracks) * dw[None]
    noise_rfft = rfft(rng.normal(0, noise, (n_p, n_f, box, box)), axes=(-2, -1))
    frames = (signal + noise_rfft).astype(np.complex64)
    frames[..., 0, 0] = 0
    init = np.repeat(tracks.mean(axis=0, keepdims=True), n_p, axis=0)
    return SyntheticMicrograph(name=name, positions_px=positions, frames_rfft=frames,
                               pred_own_rfft=pred.astype(np.complex64), pred_opposite_rfft=pred.astype(np.complex64),
                               initial_tracks_px=init, dose_per_frame=dose_per_frame, angpix=angpix,
                               coords_angpix=angpix, box=box, particle_rows=np.arange(n_p), true_tracks_px=tracks)
