"""Particle-frame normalisation and noise whitening before motion estimation (ALGORITHMS 1.5-1.6).

All arrays are RELION half-complex transforms (:mod:`polishplugin.core.fourier`): ``(..., N, N//2+1)``.
"""

from __future__ import annotations

import numpy as np

from ..fourier import frequency_grid

__all__ = ["half_plane_weights", "normalize_particle_frames", "noise_sigma2", "whitening_radius", "whiten",
           "whitening_factor", "normalize_whiten_inplace"]


def half_plane_weights(box: int) -> np.ndarray:
    """Weights of the stored half-plane: 1 for the x=0 column, 2 for x>0, 0 at DC. ``(N, N//2+1)``."""
    w = np.full((box, box // 2 + 1), 2.0)
    w[:, 0] = 1.0
    w[0, 0] = 0.0
    return w


def normalize_particle_frames(frames_rfft: np.ndarray) -> np.ndarray:
    """Divide every particle's frames by ``N * sqrt(power / n_frames)`` (RELION 1.5 step 4).

    ``power`` is the mean over the particle's frames and the half-plane (x>0 columns counted twice, DC
    excluded) of ``|F|^2``.  The extra ``sqrt(n_frames)`` is a legacy factor of RELION (**QUIRK**, kept
    because it sets the balance between the data term and the prior).  Particles with zero power are
    left at zero.  Input ``(n_p, n_f, N, N//2+1)`` complex; returns a new array of the same dtype.
    """
    frames_rfft = np.asarray(frames_rfft)
    n_p, n_f, n, _ = frames_rfft.shape
    w = half_plane_weights(n)
    out = np.empty_like(frames_rfft)
    for p in range(n_p):  # one particle at a time keeps the float64 temporaries small
        mag2 = frames_rfft[p].real.astype(np.float64) ** 2 + frames_rfft[p].imag.astype(np.float64) ** 2
        power = float((mag2 * w).sum() / (w.sum() * n_f))
        scale = n * np.sqrt(power / n_f)
        out[p] = frames_rfft[p] / scale if scale > 0 else 0
    return out


def whitening_radius(box: int) -> np.ndarray:
    """Radial bin ``(int)sqrt(x^2 + y^2)`` (truncation, y wrapped) of each rfft pixel, ``(N, N//2+1)``."""
    ky, kx = frequency_grid((box, box))
    return np.sqrt((kx * kx + ky * ky).astype(np.float64)).astype(np.int64)


def noise_sigma2(frames_rfft: np.ndarray) -> np.ndarray:
    """Radial power spectrum ``sigma2[r]`` = mean ``|F|^2`` over particles x frames x pixels of bin r.

    Bins ``r = (int)sqrt(x^2+y^2)`` for ``r < N//2 + 1`` (RELION ``StackHelper::powerSpectrum``);
    returns ``(N//2+1,)`` float64 (bins without pixels are 0).
    """
    frames_rfft = np.asarray(frames_rfft)
    n = frames_rfft.shape[-2]
    nb = n // 2 + 1
    r = whitening_radius(n)
    keep = r < nb
    total = np.zeros(r.shape)
    for block in frames_rfft.reshape(-1, *frames_rfft.shape[-2:]):
        total += block.real.astype(np.float64) ** 2 + block.imag.astype(np.float64) ** 2
    count = frames_rfft.reshape(-1, *frames_rfft.shape[-2:]).shape[0]
    sums = np.bincount(r[keep], weights=total[keep], minlength=nb)[:nb]
    npix = np.bincount(r[keep], minlength=nb)[:nb]
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma2 = np.where(npix > 0, sums / (npix * max(count, 1)), 0.0)
    return sigma2


def whitening_factor(sigma2: np.ndarray, box: int) -> np.ndarray:
    """``1 / sqrt(sigma2[r] * area)`` per rfft pixel ``(N, N//2+1)`` float64 (see :func:`whiten`)."""
    wf = box // 2 + 1
    area = 0.25 * np.pi * (2 * wf - 1) * box
    r = whitening_radius(box)
    s2 = np.zeros(r.shape)
    inside = r < wf
    s2[inside] = np.asarray(sigma2, np.float64)[r[inside]]
    factor = np.zeros(r.shape)
    ok = inside & (s2 > 0)
    factor[ok] = 1.0 / np.sqrt(s2[ok] * area)
    factor[0, 0] = 0.0
    return factor


def whiten(x_rfft: np.ndarray, sigma2: np.ndarray, box: int) -> np.ndarray:
    """Divide by ``sqrt(sigma2[r] * area)``, ``area = pi/4 * (2*(N//2+1)-1) * N`` (RELION 1.6).

    DC, pixels with ``r >= N//2+1`` and pixels whose ``sigma2`` is 0 are set to 0.  Works on any
    ``(..., N, N//2+1)`` array; returns the input dtype.
    """
    x_rfft = np.asarray(x_rfft)
    factor = whitening_factor(sigma2, box)
    return (x_rfft * factor.astype(x_rfft.real.dtype)).astype(x_rfft.dtype, copy=False)


def normalize_whiten_inplace(frames_rfft: np.ndarray, do_whiten: bool = True, batch: int = 16) -> np.ndarray | None:
    """:func:`normalize_particle_frames`, then (``do_whiten``) :func:`whiten` with :func:`noise_sigma2` of the
    normalised frames, in place on ``(n_p, n_f, N, N//2+1)`` complex frames.  Returns sigma2 (or None).

    Two passes over the data instead of five: one reads every particle's power spectrum (summed over
    frames, float64) which gives both the particle's scale and its share of the radial noise spectrum
    (``|F/s|^2 = |F|^2 / s^2``), one multiplies each particle by ``whitening_factor / scale``.
    """
    n_p, n_f, n, _ = frames_rfft.shape
    w = half_plane_weights(n)
    r = whitening_radius(n)
    radial = np.zeros(r.shape)
    inv = np.zeros(n_p)
    for s in range(0, n_p, batch):
        part = frames_rfft[s:s + batch]
        spec = (part.real * part.real + part.imag * part.imag).sum(axis=1, dtype=np.float64)  # (b, N, N//2+1)
        power = (spec * w).sum(axis=(1, 2)) / (w.sum() * n_f)
        scale = n * np.sqrt(power / n_f)
        inv_b = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
        inv[s:s + batch] = inv_b
        radial += np.tensordot(inv_b * inv_b, spec, axes=1)
    sigma2 = None
    factor = np.ones(r.shape)
    if do_whiten:
        nb = n // 2 + 1
        keep = r < nb
        sums = np.bincount(r[keep], weights=radial[keep], minlength=nb)[:nb]
        npix = np.bincount(r[keep], minlength=nb)[:nb]
        with np.errstate(invalid="ignore", divide="ignore"):
            sigma2 = np.where(npix > 0, sums / (npix * max(n_p * n_f, 1)), 0.0)
        factor = whitening_factor(sigma2, n)
    real = frames_rfft.real.dtype
    for s in range(0, n_p, batch):
        frames_rfft[s:s + batch] *= (inv[s:s + batch, None, None, None] * factor[None, None]).astype(real)
    return sigma2
