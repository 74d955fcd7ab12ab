"""RELION M-step helpers around :class:`polishplugin.core.projector.FourierBackprojector`.

ALGORITHMS.md sections 2.5-2.6 (``BackProjector::updateSSNRarrays``, ``joinTwoHalvesAtLowResolution``,
``compareTwoHalves``).  Units: the back-projector's ``weight`` is RELION's ``Fweight`` (sum of trilinear
weight x CTF^2/sigma2 on the padded grid); ``tau2`` is in RELION's units, i.e. the regulariser added
to the weight in :meth:`FourierBackprojector.reconstruct` is ``1/(pad^3 * tau2_fudge * tau2)`` and
``SSNR = tau2 / sigma2_rec`` with :func:`sigma2_rec`.

Typical refine use (per half ``h``)::

    s2 = sigma2_rec(bp[h])
    tau2, ssnr = tau2_from_fsc(fsc_half, s2, tau2_fudge)
    vol = bp[h].reconstruct(tau2=tau2, tau2_fudge=tau2_fudge, minres_shell=5)
"""

from __future__ import annotations

import math

import numpy as np

from polishplugin.core import fourier
from polishplugin.core.projector import FourierBackprojector

__all__ = ["padded_shells", "sigma2_rec", "tau2_from_fsc", "lowres_join_shell", "join_halves_low_resolution",
           "fsc_between_halves", "downsampled_average"]


def padded_shells(bp: FourierBackprojector) -> tuple[np.ndarray, np.ndarray]:
    """``(radius_padded, image_shell)`` of every voxel of the padded half-grid.

    ``image_shell = ROUND(radius_padded / pad)`` (shell of the original box).
    """
    m, pad = bp.padded_size, bp.pad
    kz = fourier.fftfreq_signed(m).astype(np.float64)
    kx = fourier.fftfreq_signed(m, half=True).astype(np.float64)
    r = np.sqrt(kz[:, None, None] ** 2 + kz[None, :, None] ** 2 + kx[None, None, :] ** 2)
    return r, fourier.round_half_away(r / pad)


def sigma2_rec(bp: FourierBackprojector) -> np.ndarray:
    """RELION's ``sigma2`` of the reconstruction per image shell (``N//2 + 1`` values).

    ``counter(shell) / sum(pad^3 * weight)`` over voxels with ``weight * pad^3 > 1e-20`` inside
    ``r_max``; 0 where a shell has no weight.
    """
    n_sh = fourier.n_shells(bp.box)
    r, shell = padded_shells(bp)
    w = bp.weight * bp.pad ** 3
    sel = (r <= bp.r_max_px * bp.pad) & (w > 1e-20) & (shell < n_sh)
    total = np.bincount(shell[sel], weights=w[sel], minlength=n_sh)[:n_sh]
    count = np.bincount(shell[sel], minlength=n_sh)[:n_sh].astype(np.float64)
    return np.where(total > 1e-10, count / np.where(total > 0, total, 1.0), 0.0)


def tau2_from_fsc(fsc_curve: np.ndarray, sigma2: np.ndarray, tau2_fudge: float = 1.0,
                  joined: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(tau2, ssnr)`` per shell from a gold-standard FSC (RELION ``updateSSNRarrays``).

    ``fsc' = max(0.001, FSC)``; if ``joined`` (final iteration, halves combined)
    ``fsc' = sqrt(2 fsc'/(1 + fsc'))``; ``fsc' = min(0.999, fsc')``; ``ssnr = fsc'/(1-fsc') * tau2_fudge``;
    ``tau2 = ssnr * sigma2``.
    """
    f = np.maximum(0.001, np.asarray(fsc_curve, dtype=np.float64))
    if joined:
        f = np.sqrt(2.0 * f / (1.0 + f))
    f = np.minimum(0.999, f)
    ssnr = f / (1.0 - f) * tau2_fudge
    s2 = np.zeros_like(ssnr)
    s = np.asarray(sigma2, dtype=np.float64)
    s2[:min(len(s), len(s2))] = s[:len(s2)]
    return ssnr * s2, ssnr


def lowres_join_shell(box: int, angpix: float, current_res_a: float, join_res_a: float = 40.0) -> int:
    """Shell up to which the two halves are averaged: ``ceil(N * angpix / max(join_res_a, current_res_a))``."""
    return int(math.ceil(box * angpix / max(join_res_a, current_res_a)))


def join_halves_low_resolution(bp1: FourierBackprojector, bp2: FourierBackprojector, shell: int) -> None:
    """Average data and weight of two halves in place for padded radius ``<= shell * pad``."""
    if bp1.data.shape != bp2.data.shape:
        raise ValueError("half back-projectors have different sizes")
    r, _ = padded_shells(bp1)
    sel = r <= shell * bp1.pad
    d1, d2, w1, w2 = bp1.data, bp2.data, bp1.weight, bp2.weight
    avg_d = 0.5 * (d1[sel] + d2[sel])
    avg_w = 0.5 * (w1[sel] + w2[sel])
    d1[sel] = avg_d
    d2[sel] = avg_d
    w1[sel] = avg_w
    w2[sel] = avg_w


def downsampled_average(bp: FourierBackprojector) -> tuple[np.ndarray, np.ndarray]:
    """``data/weight`` on the original box's half-grid: padded voxels are summed into ``ROUND(K/pad)``.

    Returns ``(average (N, N, N//2+1) complex, |k| (N, N, N//2+1))``; 0 where the summed weight is 0.
    """
    pad, m, n = bp.pad, bp.padded_size, bp.box
    kz = fourier.fftfreq_signed(m)
    kx = fourier.fftfreq_signed(m, half=True)
    r, _ = padded_shells(bp)
    sel = r <= bp.r_max_px * pad
    z = fourier.round_half_away(kz / pad)
    x = fourier.round_half_away(kx / pad)
    Z, Y, X = np.meshgrid(z, z, x, indexing="ij")
    sel &= X <= n // 2
    hx = n // 2 + 1
    idx = ((np.mod(Z, n) * n + np.mod(Y, n)) * hx + X)[sel]
    size = n * n * hx
    d = bp.data[sel]
    dsum = np.bincount(idx, weights=d.real, minlength=size) + 1j * np.bincount(idx, weights=d.imag, minlength=size)
    wsum = np.bincount(idx, weights=bp.weight[sel], minlength=size)
    avg = np.where(wsum > 1e-20, dsum / np.where(wsum > 1e-20, wsum, 1.0), 0.0).reshape(n, n, hx)
    return avg, fourier.radius_grid((n, n, n))


def fsc_between_halves(bp1: FourierBackprojector, bp2: FourierBackprojector) -> np.ndarray:
    """FSC (``N//2 + 1`` shells) of the unregularised averages of two halves.

    RELION ``calculateDownSampledFourierShellCorrelation``: data and weight are summed into the
    original box's frequencies (``ROUND(K/pad)``), divided, and correlated on shells ``ROUND(|k|)``
    with ``|k| <= r_max``; ``FSC(0) = 1``.
    """
    a1, k = downsampled_average(bp1)
    a2, _ = downsampled_average(bp2)
    shell = fourier.round_half_away(k)
    n_sh = fourier.n_shells(bp1.box)
    sel = (k <= bp1.r_max_px) & (shell < n_sh)
    num = np.bincount(shell[sel], weights=(a1 * np.conj(a2)).real[sel], minlength=n_sh)[:n_sh]
    p1 = np.bincount(shell[sel], weights=(np.abs(a1) ** 2)[sel], minlength=n_sh)[:n_sh]
    p2 = np.bincount(shell[sel], weights=(np.abs(a2) ** 2)[sel], minlength=n_sh)[:n_sh]
    den = np.sqrt(p1 * p2)
    out = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    out[0] = 1.0
    return out
