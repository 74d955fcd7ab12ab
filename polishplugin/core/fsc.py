"""Fourier shell correlation, phase randomisation, its glibc random stream and the masked-FSC correction.

The one home of these algorithms (post-processing, local resolution, the simulator and refinement call
them).  RELION ``getFSC`` / ``randomizePhasesBeyond`` / ``Postprocessing::calculateFSCtrue``: sums over
the stored half transform only (no doubling of x > 0), shells ``ROUND(|k|)``, ``N//2 + 1`` values.

* :class:`ShellGrid`: integer ``|k|^2`` and shell of every rfft coefficient, computed once per run;
  :func:`rfft_fast` / :func:`irfft_fast`: the RELION-normalised FFTs on scipy's threaded FFT.
* :func:`fsc_ratio` is THE ratio ``sum f1 f2* / sqrt(sum |f1|^2 sum |f2|^2)``; :func:`fsc_rfft` sums
  per shell and calls it (:func:`fsc_grid` and :func:`fsc` are that function on a grid / real maps).
* :func:`glibc_rand_words` / :func:`glibc_uniform`: glibc ``srand``/``rand`` (TYPE_3) in numpy, bit
  for bit; :func:`randomize_phases_rfft` draws RELION's phases from it (:func:`randomize_phases_beyond`
  for one real map with its own ``srand``).
* :func:`fsc_true`: ``(FSC_m - FSC_n)/(1 - FSC_n)`` (post-processing's and, with
  ``zero_where_random_higher``, refinement's variant); :func:`solvent_corrected_fscs` chains them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from .fourier import frequency_grid, irfft, n_shells, rfft, round_half_away, shell_index

__all__ = [
    "GLIBC_RAND_MAX", "ShellGrid", "rfft_fast", "irfft_fast", "fsc_ratio", "fsc_rfft", "fsc_grid", "fsc",
    "glibc_rand_words", "glibc_uniform", "randomize_phases_rfft", "randomize_phases_beyond",
    "phase_randomization_shell", "fsc_true", "resolution_shell", "SolventCorrectedFscs",
    "solvent_corrected_fscs",
]

#: glibc ``RAND_MAX``
GLIBC_RAND_MAX = 2147483647


# --------------------------------------------------------------------------------------------------
# Fourier grid, FFTs
# --------------------------------------------------------------------------------------------------

class ShellGrid:
    """Integer ``|k|^2`` and RELION shell index of every rfft coefficient of a real ``shape``,
    computed once and reused by every FSC, Guinier plot and radial filter of a run.

    Radial filters are evaluated once per distinct ``|k|^2`` (a look-up table, "LUT", of
    ``max_r2 + 1`` values) and gathered with ``lut[grid.r2]``, which is exact and much cheaper than
    evaluating them per coefficient.  Shells ``>= N//2 + 1`` go to a dump bin ``n`` that radial sums
    drop.
    """

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(int(v) for v in shape)
        self.box = self.shape[0]
        self.n = n_shells(self.box)
        r2: np.ndarray | int = 0
        for k in frequency_grid(self.shape):
            r2 = r2 + k.astype(np.intp) ** 2
        self.r2: np.ndarray = np.ascontiguousarray(r2)
        self.max_r2 = int(self.r2.max())
        self.radius_lut = np.sqrt(np.arange(self.max_r2 + 1, dtype=np.float64))
        shell_lut = round_half_away(self.radius_lut)
        self.shell_lut = np.where(shell_lut < self.n, shell_lut, self.n).astype(np.intp)
        self.shell = self.shell_lut[self.r2]
        self.count = np.bincount(self.shell.ravel(), minlength=self.n + 1)[:self.n]

    def radial_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum of real ``values`` (rfft-shaped) per shell ``0..N//2``."""
        return _shell_sum(values, self.shell, self.n)

    def shell_to_lut(self, per_shell: np.ndarray) -> np.ndarray:
        """A per-shell array (``n`` values) as a per-``|k|^2`` LUT (0 beyond the last shell)."""
        return np.append(np.asarray(per_shell, np.float64), 0.0)[self.shell_lut]

    def gather(self, lut: np.ndarray) -> np.ndarray:
        """Per-coefficient values of a per-``|k|^2`` LUT."""
        return lut[self.r2]


def rfft_fast(x: np.ndarray) -> np.ndarray:
    """:func:`polishplugin.core.fourier.rfft` (RELION forward /N) with scipy's threaded FFT; a float32
    map gives a complex64 transform (half the memory, ~5x faster than numpy's double FFT)."""
    out = scipy.fft.rfftn(x, workers=-1)
    out *= 1.0 / x.size                 # in place: no second transform-sized array (same values)
    return out


def irfft_fast(f: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`rfft_fast` (unnormalised c2r), float32 for complex64 input."""
    out = scipy.fft.irfftn(f, s=shape, workers=-1)
    out *= float(np.prod(shape))
    return out


# --------------------------------------------------------------------------------------------------
# FSC
# --------------------------------------------------------------------------------------------------

def _shell_sum(values: np.ndarray, shells: np.ndarray, n: int) -> np.ndarray:
    """Sum of real ``values`` per shell ``0..n-1``; shells ``>= n`` are dropped (same order of
    addition as summing only the selected coefficients)."""
    return np.bincount(np.ravel(shells), weights=np.ravel(values), minlength=n)[:n]


def fsc_ratio(num: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """``num / sqrt(d1 d2)`` where ``d1 d2 > 0``, else 0: the FSC from per-shell sums (or means) of
    ``Re(f1 f2*)``, ``|f1|^2`` and ``|f2|^2``.  Element-wise: any shape (batches of curves too)."""
    den = np.sqrt(d1 * d2)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def fsc_rfft(f1: np.ndarray, f2: np.ndarray, shells: np.ndarray | None = None,
             n: int | None = None) -> np.ndarray:
    """FSC of two Fourier arrays, ``n`` shells (default ``N//2 + 1``).

    Without ``shells`` the arrays are rffts of a real cubic/square map ``(N, ..., N//2+1)`` and the
    shells are ``ROUND(|k|)``; otherwise ``shells`` gives the (non-negative integer) shell of every
    coefficient of ``f1``/``f2`` (any shape, e.g. a full centred grid), shells ``>= n`` dropped.
    """
    if shells is None:
        shells = shell_index(f1.shape[:-1] + (f1.shape[0],))
    n = n_shells(f1.shape[0]) if n is None else n
    num = _shell_sum(f1.real * f2.real + f1.imag * f2.imag, shells, n)
    d1 = _shell_sum(f1.real * f1.real + f1.imag * f1.imag, shells, n)
    d2 = _shell_sum(f2.real * f2.real + f2.imag * f2.imag, shells, n)
    return fsc_ratio(num, d1, d2)


def fsc_grid(f1: np.ndarray, f2: np.ndarray, grid: ShellGrid) -> np.ndarray:
    """:func:`fsc_rfft` of two rffts with the shells of a precomputed :class:`ShellGrid`."""
    return fsc_rfft(f1, f2, grid.shell, grid.n)


def fsc(map1: np.ndarray, map2: np.ndarray) -> np.ndarray:
    """FSC of two real maps (or images) of equal cubic shape, ``N//2 + 1`` shells."""
    if map1.shape != map2.shape:
        raise ValueError(f"FSC needs maps of equal shape, got {map1.shape} and {map2.shape}")
    return fsc_rfft(rfft(map1), rfft(map2))


# --------------------------------------------------------------------------------------------------
# glibc rand stream
# --------------------------------------------------------------------------------------------------

def _glibc_seed_state(seed: int) -> np.ndarray:
    """glibc ``srand`` TYPE_3 initial table ``r[0..33]`` (uint64 holding 32-bit words)."""
    r = np.zeros(34, np.int64)
    r[0] = seed if seed != 0 else 1
    for i in range(1, 31):
        hi, lo = divmod(int(r[i - 1]), 127773)
        word = 16807 * lo - 2836 * hi
        r[i] = word + 2147483647 if word < 0 else word
    r[31:34] = r[0:3]
    return (r & 0xFFFFFFFF).astype(np.uint64)


def _jump_matrix(steps: int) -> np.ndarray:
    """31x31 matrix (mod 2^64, uint64) advancing the state ``r[j-31:j]`` by ``steps`` outputs."""
    m = np.zeros((31, 31), np.uint64)
    m[np.arange(30), np.arange(1, 31)] = 1
    m[30, 0] = 1   # r[j] = r[j-31] + r[j-3]
    m[30, 28] = 1
    out = np.eye(31, dtype=np.uint64)
    power = m
    while steps:
        if steps & 1:
            out = out @ power
        power = power @ power
        steps >>= 1
    return out


def _glibc_rand_u32(seed: int, count: int) -> np.ndarray:
    """:func:`glibc_rand_words` as uint32 (the words are < 2^31)."""
    mask = np.uint64(0xFFFFFFFF)
    needed = 310 + count                      # glibc discards the first 310 outputs
    block = max(31, int(np.sqrt(3.0 * needed)) // 3 * 3)
    n_blocks = -(-needed // block)
    jump = _jump_matrix(block)
    states = np.empty((n_blocks, 31), np.uint64)
    states[0] = _glibc_seed_state(seed)[3:34]
    for b in range(1, n_blocks):
        states[b] = (jump @ states[b - 1]) & mask
    # uint32 addition wraps mod 2^32: exactly glibc's arithmetic, no masking needed
    table = np.empty((31 + block, n_blocks), np.uint32)
    table[:31] = states.T.astype(np.uint32)
    for t in range(31, 31 + block, 3):
        e = min(t + 3, 31 + block)
        np.add(table[t - 31:e - 31], table[t - 3:e - 3], out=table[t:e])
    words = np.ascontiguousarray(table[31:].T).ravel()[310:needed]
    return words >> np.uint32(1)


def glibc_rand_words(seed: int, count: int) -> np.ndarray:
    """``count`` values of glibc ``rand()`` after ``srand(seed)`` (int64), vectorised in blocks.

    The additive recurrence ``r[i] = r[i-31] + r[i-3] (mod 2^32)`` is advanced block-wise: the state at
    each block start comes from a jump matrix (uint64 arithmetic wraps mod 2^64, which preserves the
    result mod 2^32), then all blocks are filled in parallel, 3 values per step.  ``rand()/RAND_MAX``
    is ``glibc_rand_words(seed, count) / GLIBC_RAND_MAX``.
    """
    return _glibc_rand_u32(seed, count).astype(np.int64)


def _glibc_uniform_f32(seed: int, count: int, high: float) -> np.ndarray:
    """``rand() / (RAND_MAX / high)`` in single precision (float32): :func:`glibc_uniform` with ``low = 0``
    without its int64/float64 copies (4 bytes a draw instead of 24; the values are the same)."""
    step = np.float32(np.float32(GLIBC_RAND_MAX) / np.float32(high))
    return _glibc_rand_u32(seed, count).astype(np.float32) / step


def glibc_uniform(seed: int, count: int, low: float, high: float) -> np.ndarray:
    """``count`` draws of RELION's ``rnd_unif(low, high)`` after ``srand(seed)`` (glibc TYPE_3):
    ``low + rand() / (RAND_MAX / (high - low))`` in RELION's single precision."""
    return low + _glibc_uniform_f32(seed, count, high - low).astype(np.float64)


# --------------------------------------------------------------------------------------------------
# phase randomisation
# --------------------------------------------------------------------------------------------------

def randomize_phases_rfft(f_list: list[np.ndarray], grid: ShellGrid, shell: int,
                          seed: int = 0) -> list[np.ndarray]:
    """Randomise phases of coefficients with ``|k|^2 >= shell^2`` in each rfft of ``f_list``.

    One glibc stream seeded once with ``seed`` is consumed in order (first array, then the next),
    each in RELION's loop order (z, y, x over the half transform); phases are ``rnd_unif(0, 2 pi)``,
    amplitudes are kept.  Returns new arrays (inputs untouched).
    """
    sel = grid.r2 >= shell * shell
    n_sel = int(np.count_nonzero(sel))
    phases = _glibc_uniform_f32(seed, n_sel * len(f_list), 2.0 * np.pi)   # = glibc_uniform(.., 0, 2 pi)
    out = []
    for i, f in enumerate(f_list):
        # phases in the map's precision (as RELION's float maps); boolean indexing keeps the C (z, y, x) order
        phi = phases[i * n_sel:(i + 1) * n_sel].astype(f.real.dtype)
        amp = np.abs(f[sel])
        g = f.copy()
        g.real[sel] = amp * np.cos(phi)
        g.imag[sel] = amp * np.sin(phi)
        out.append(g)
    return out


def randomize_phases_beyond(volume: np.ndarray, shell: int, seed: int = 0) -> np.ndarray:
    """Copy of the real map ``volume`` with the phases at ``|k| >= shell`` randomised after its own
    ``srand(seed)`` (:func:`randomize_phases_rfft` on its double-precision transform)."""
    (g,) = randomize_phases_rfft([rfft(volume)], ShellGrid(volume.shape), shell, seed)
    return irfft(g, volume.shape)


# --------------------------------------------------------------------------------------------------
# masked-FSC correction
# --------------------------------------------------------------------------------------------------

def phase_randomization_shell(fsc_unmasked: np.ndarray, threshold: float = 0.8) -> int | None:
    """First shell ``i > 0`` with ``FSC_unmasked[i] < threshold`` (None if it never drops)."""
    below = np.nonzero(np.asarray(fsc_unmasked)[1:] < threshold)[0]
    return int(below[0]) + 1 if below.size else None


def fsc_true(fsc_masked: np.ndarray, fsc_random_masked: np.ndarray, randomize_at: int,
             zero_where_random_higher: bool = False) -> np.ndarray:
    """RELION's corrected FSC: ``(FSC_m - FSC_n)/(1 - FSC_n)`` from shell ``randomize_at + 2`` on
    (non-finite values -> 0), ``FSC_m`` below it; shell 0 is 1 where ``FSC_m[0] <= 0``.

    ``zero_where_random_higher``: refinement's variant (``reconstructUnregularisedMapAndCalculate
    SolventCorrectedFSC``), 0 where ``FSC_n > FSC_m``.
    """
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
    corr = np.where(np.isfinite(corr), corr, 0.0)
    if zero_where_random_higher:
        corr = np.where(fn[start:] > fm[start:], 0.0, corr)
    out[start:] = corr
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


@dataclass
class SolventCorrectedFscs:
    """FSC curves of two half maps with a mask; ``randomize_at`` None when no correction was made."""

    unmasked: np.ndarray
    masked: np.ndarray
    random_masked: np.ndarray
    corrected: np.ndarray
    randomize_at: int | None


def solvent_corrected_fscs(half1: np.ndarray, half2: np.ndarray, mask: np.ndarray, seed: int = 0,
                           threshold: float = 0.8) -> SolventCorrectedFscs:
    """Unmasked, masked, phase-randomised masked and corrected FSC of two real half maps.

    Phases are randomised from the first shell where the unmasked FSC drops below ``threshold``,
    half 1 after ``srand(seed)``, half 2 after ``srand(seed + 1)`` (:func:`randomize_phases_beyond`).
    When the FSC never drops (or drops within 2 shells of Nyquist) the corrected FSC is the masked
    one and the randomised curve is 0.
    """
    unmasked = fsc(half1, half2)
    masked = fsc(half1 * mask, half2 * mask)
    shell = phase_randomization_shell(unmasked, threshold)
    if shell is None or shell + 2 >= len(unmasked):
        return SolventCorrectedFscs(unmasked, masked, np.zeros_like(masked), masked.copy(), shell)
    r1 = randomize_phases_beyond(half1, shell, seed)
    r2 = randomize_phases_beyond(half2, shell, seed + 1)
    rand = fsc(r1 * mask, r2 * mask)
    return SolventCorrectedFscs(unmasked, masked, rand, fsc_true(masked, rand, shell), shell)
