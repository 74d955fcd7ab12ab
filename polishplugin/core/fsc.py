"""Fourier shell correlation, phase randomisation and the masked-FSC correction.

RELION ``getFSC`` / ``randomizePhasesBeyond`` / ``Postprocessing::calculateFSCtrue``: sums over the
stored half transform only (no doubling of x > 0), shells ``ROUND(|k|)``, ``N//2 + 1`` values.
"""

from __future__ import annotations

import numpy as np

from .fourier import n_shells, radial_sum, rfft, shell_index

__all__ = [
    "fsc", "fsc_rfft", "randomize_phases_beyond", "phase_randomization_shell", "fsc_true",
    "resolution_shell", "glibc_uniform",
]


def fsc_rfft(f1: np.ndarray, f2: np.ndarray, shells: np.ndarray | None = None,
             n: int | None = None) -> np.ndarray:
    """FSC of two rfft arrays of cubic/square real shape ``(N, ..., N//2+1)``."""
    box = f1.shape[0]
    shells = shell_index(f1.shape[:-1] + (box,)) if shells is None else shells
    n = n_shells(box) if n is None else n
    num = radial_sum((f1 * np.conj(f2)).real, shells, n)
    d1 = radial_sum(np.abs(f1) ** 2, shells, n)
    d2 = radial_sum(np.abs(f2) ** 2, shells, n)
    den = np.sqrt(d1 * d2)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def fsc(map1: np.ndarray, map2: np.ndarray) -> np.ndarray:
    """FSC of two real maps (or images) of equal cubic shape, ``N//2 + 1`` shells."""
    if map1.shape != map2.shape:
        raise ValueError(f"FSC needs maps of equal shape, got {map1.shape} and {map2.shape}")
    return fsc_rfft(rfft(map1), rfft(map2))


def glibc_uniform(seed: int, count: int, low: float, high: float) -> np.ndarray:
    """``count`` draws of RELION's ``rnd_unif(low, high)`` after ``srand(seed)`` (glibc TYPE_3).

    Reproduces glibc's additive-feedback ``random()`` in numpy so that phase randomisation matches
    RELION's stream exactly, without calling into libc.
    """
    r = np.zeros(34 + 310 + count, np.int64)
    r[0] = seed if seed != 0 else 1
    for i in range(1, 31):
        hi, lo = divmod(r[i - 1], 127773)
        word = 16807 * lo - 2836 * hi
        r[i] = word + 2147483647 if word < 0 else word
    for i in range(31, 34):
        r[i] = r[i - 31]
    # the recurrence r[i] = r[i-31] + r[i-3] (mod 2^32) has a dependency distance of 3: vectorise in
    # blocks of 3
    total = r.size
    i = 34
    while i < total:
        j = min(i + 3, total)
        r[i:j] = (r[i - 31:j - 31] + r[i - 3:j - 3]) & 0xFFFFFFFF
        i = j
    out = (r[344:] >> 1).astype(np.float64)
    rand_max = np.float32(2147483647)
    step = np.float32(rand_max / np.float32(high - low))
    return low + (out.astype(np.float32) / step).astype(np.float64)


def randomize_phases_beyond(volume: np.ndarray, shell: int, seed: int = 0) -> np.ndarray:
    """Copy of ``volume`` with the phases of coefficients at ``|k| >= shell`` randomised.

    Amplitudes are kept; phases are ``rnd_unif(0, 2 pi)`` drawn in RELION's loop order (z, y, x over
    the half transform) from glibc ``srand(seed)``.
    """
    f = rfft(volume)
    from .fourier import radius_grid  # local import keeps the module's public surface small

    r2 = radius_grid(volume.shape) ** 2
    sel = r2 >= shell * shell
    phases = glibc_uniform(seed, int(sel.sum()), 0.0, 2 * np.pi)
    g = f.copy()
    g[sel] = np.abs(f[sel]) * np.exp(1j * phases)
    from .fourier import irfft

    return irfft(g, volume.shape)


def phase_randomization_shell(fsc_unmasked: np.ndarray, threshold: float = 0.8) -> int | None:
    """First shell ``i > 0`` with ``FSC_unmasked[i] < threshold`` (None if it never drops)."""
    below = np.nonzero(np.asarray(fsc_unmasked)[1:] < threshold)[0]
    return int(below[0]) + 1 if below.size else None


def fsc_true(fsc_masked: np.ndarray, fsc_random_masked: np.ndarray, randomize_at: int) -> np.ndarray:
    """RELION's corrected FSC: ``(FSC_m - FSC_n)/(1 - FSC_n)`` from shell ``randomize_at + 2`` on."""
    fm = np.array(fsc_masked, np.float64)
    fn = np.array(fsc_random_masked, np.float64)
    if fm[0] <= 0:
        fm[0] = 1.0
    if fn[0] <= 0:
        fn[0] = 1.0
    out = fm.copy()
    start = randomize_at + 2
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (fm[start:] - fn[start:]) / (1.0 - fn[start:])
    out[start:] = np.where(np.isfinite(corr), corr, 0.0)
    return out


def resolution_shell(fsc_curve: np.ndarray, threshold: float = 0.143) -> int:
    """Last shell before the first shell (from 0) with ``FSC < threshold`` (0 if shell 0 fails).

    RELION walks from shell 0 and reports ``N*angpix/i_last``; this returns ``i_last``.
    """
    curve = np.asarray(fsc_curve)
    below = np.nonzero(curve < threshold)[0]
    if below.size == 0:
        return curve.size - 1
    return max(int(below[0]) - 1, 0)
