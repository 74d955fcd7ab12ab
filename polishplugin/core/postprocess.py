"""Post-processing: corrected FSC, Guinier plots, MTF division, FSC weighting, auto-B sharpening.

Pure functions behind ``polishplugin postprocess`` (RELION ``Postprocessing::run``,
``src/postprocessing.cpp``).  Maps are real cubic arrays; Fourier arrays are rffts in the RELION
convention of :mod:`polishplugin.core.fourier` (forward /N, shells ``ROUND(|k|)``, ``N//2 + 1`` shells).

Pipeline (see :func:`postprocess_fscs` and :func:`sharpen_rfft`):

1. ``FSC_unmasked``; with a mask ``FSC_masked`` and, after randomising the phases of both half maps
   beyond ``randomize_at`` (one glibc ``rand`` stream: half 1 first, then half 2),
   ``FSC_rand_masked``; ``FSC_true = (FSC_m - FSC_n)/(1 - FSC_n)`` from shell ``randomize_at + 2``.
2. Resolution: last shell before ``FSC_true < 0.143``.
3. Average map: Guinier (original) -> divide by MTF -> Guinier -> FSC weighting ``sqrt(2F/(1+F))`` ->
   Guinier -> straight-line fit over 10 Å..Nyquist (``B = 4 slope``) or ad-hoc B -> apply B ->
   Guinier -> optional low-pass.

References: RELION 5 ``Postprocessing::calculateFSCtrue``, ``sharpenMap``, ``makeGuinierPlot``,
``fitStraightLine`` (``src/funcs.cpp``), ``applyFscWeighting``, ``applyBFactorToMap``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .filters import bfactor_lut, fsc_weight_lut, low_pass_lut
from .fsc import (ShellGrid, fsc_grid, fsc_true, irfft_fast, phase_randomization_shell, randomize_phases_rfft,
                  resolution_shell, rfft_fast)
from .mtf import mtf_lut

__all__ = [
    "GUINIER_MISSING", "mask_fractions", "particle_fraction_fsc", "FscCurves",
    "postprocess_fscs", "choose_resolution", "Guinier", "guinier_curve", "fit_straight_line",
    "SharpenResult", "sharpen_rfft", "AUTOB_MIN_SHELLS", "autob_fit_span", "autob_warning",
    "resolution_a", "SharpenedMaps", "sharpen_maps",
]

#: RELION writes this log-amplitude for shells whose amplitude sum is 0.
GUINIER_MISSING = -99.0
#: Fewest Fourier shells an auto-B Guinier fit should span to mean much (RELION fits with 2).  The slope's
#: error is ~ sigma / (sqrt(N) * span of 1/res^2): the spherically averaged amplitude of a protein ripples by
#: ~0.1-0.2 in ln between 10 and 4 Å (secondary structure); over 5 shells (10 -> 7.5 Å, the demo's range)
#: such a ripple alone moves B by ~100 Å^2, while 10 shells double the span and halve the error.
AUTOB_MIN_SHELLS = 10
#: protein density (Da/Å^3) used to turn a mask volume into a molecular weight (RELION)
_PROTEIN_DALTON_PER_A3 = 0.81
#: RELION's/cisTEM's factor in the particle fraction ``f = 0.476 / (fraction of the box in the mask)``
_CISTEM_FACTOR = 0.476


# --------------------------------------------------------------------------------------------------
# FSCs
# --------------------------------------------------------------------------------------------------

def mask_fractions(mask: np.ndarray, angpix: float, molweight_kda: float = -1.0) -> dict[str, float]:
    """RELION's particle fractions: ``frac_solvent_mask = 0.476/mean(mask > 0.5)``,
    ``molweight_frommask`` (Da) and, with ``molweight_kda > 0``, ``frac_molweight``."""
    box_volume_a3 = float(np.prod(mask.shape)) * angpix ** 3
    inside = float(np.mean(mask > 0.5))
    out = {"frac_solvent_mask": _CISTEM_FACTOR / inside if inside > 0 else 0.0,
           "molweight_frommask": inside * box_volume_a3 * _PROTEIN_DALTON_PER_A3}
    if molweight_kda > 0:
        out["frac_molweight"] = _CISTEM_FACTOR * box_volume_a3 * _PROTEIN_DALTON_PER_A3 / (molweight_kda * 1000.0)
    return out


def particle_fraction_fsc(fsc_unmasked: np.ndarray, fraction: float) -> np.ndarray:
    """cisTEM-like part FSC ``f FSC / (1 + (f - 1) FSC)``."""
    fu = np.asarray(fsc_unmasked, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = fraction * fu / (1.0 + (fraction - 1.0) * fu)
    return np.where(np.isfinite(out), out, 0.0)


@dataclass
class FscCurves:
    """FSC curves of one post-processing run (``N//2 + 1`` values each; None when not computed)."""

    unmasked: np.ndarray
    corrected: np.ndarray                     # FSC_true (= unmasked without a mask)
    masked: np.ndarray | None = None
    random_masked: np.ndarray | None = None
    particle_mask_fraction: np.ndarray | None = None
    particle_molweight: np.ndarray | None = None
    randomize_at: int | None = None           # shell index
    fractions: dict[str, float] = field(default_factory=dict)   # :func:`mask_fractions` of the mask


def _fix_shell0(curve: np.ndarray) -> np.ndarray:
    out = np.array(curve, np.float64)
    if out[0] <= 0:
        out[0] = 1.0
    return out


def postprocess_fscs(half1: np.ndarray, half2: np.ndarray, grid: ShellGrid, angpix: float,
                     mask: np.ndarray | None = None, randomize_at_fsc: float = 0.8,
                     randomize_at_a: float = -1.0, seed: int = 0, molweight_kda: float = -1.0,
                     f1: np.ndarray | None = None, f2: np.ndarray | None = None) -> FscCurves:
    """Unmasked, masked, phase-randomised masked and corrected FSCs (RELION steps 2-4).

    ``half1``/``half2`` are the real half maps (float32 keeps the FFTs in single precision),
    ``f1``/``f2`` their :func:`rfft_fast` transforms when already computed; ``mask`` a real map in
    [0, 1].  Raises ``ValueError`` when the unmasked FSC never drops below ``randomize_at_fsc``.
    """
    box = grid.box
    f1 = rfft_fast(half1) if f1 is None else f1
    f2 = rfft_fast(half2) if f2 is None else f2
    unmasked = fsc_grid(f1, f2, grid)
    if mask is None:
        fixed = _fix_shell0(unmasked)
        return FscCurves(unmasked=fixed, corrected=fixed.copy())
    randomize_at: int | None
    if randomize_at_a > 0:
        randomize_at = int(angpix * box / randomize_at_a)
    else:
        randomize_at = phase_randomization_shell(unmasked, randomize_at_fsc)
        if randomize_at is None:
            raise ValueError(f"the unmasked FSC never drops below {randomize_at_fsc}: the half maps are "
                             "too similar for phase randomisation (use --randomize_at_A)")
    masked = fsc_grid(rfft_fast(half1 * mask), rfft_fast(half2 * mask), grid)
    p1, p2 = randomize_phases_rfft([f1, f2], grid, randomize_at, seed)
    shape = grid.shape
    random_masked = fsc_grid(rfft_fast(irfft_fast(p1, shape) * mask), rfft_fast(irfft_fast(p2, shape) * mask), grid)
    del p1, p2
    corrected = fsc_true(masked, random_masked, randomize_at)
    fractions = mask_fractions(mask, angpix, molweight_kda)
    part_mw = None
    if "frac_molweight" in fractions:
        part_mw = particle_fraction_fsc(unmasked, fractions["frac_molweight"])
    return FscCurves(unmasked=_fix_shell0(unmasked), corrected=corrected, masked=_fix_shell0(masked),
                     random_masked=_fix_shell0(random_masked),
                     particle_mask_fraction=particle_fraction_fsc(unmasked, fractions["frac_solvent_mask"]),
                     particle_molweight=part_mw, randomize_at=randomize_at, fractions=fractions)


def resolution_a(shell: int, box: int, angpix: float) -> float:
    """RELION's resolution of shell ``shell``: ``N angpix / shell``, 999 Å for shell 0."""
    return box * angpix / shell if shell > 0 else 999.0


def choose_resolution(curves: FscCurves, force_mask: bool = False,
                      threshold: float = 0.143) -> tuple[int, list[str]]:
    """Resolution shell (RELION step 5) and warnings; may replace ``curves.corrected`` by the
    unmasked FSC when the unmasked one reaches further and ``force_mask`` is off."""
    warnings: list[str] = []
    i_res = resolution_shell(curves.corrected, threshold)
    if curves.masked is None:
        return i_res, warnings
    i_unmasked = resolution_shell(curves.unmasked, threshold)
    if i_unmasked > i_res:
        warnings.append("the unmasked FSC reaches a higher resolution than the mask-corrected FSC; "
                        "the mask may be too tight or the maps over-fitted")
        if not force_mask:
            warnings.append("using the unmasked FSC (give --force_mask to keep the masked one)")
            curves.corrected = curves.unmasked.copy()
            i_res = i_unmasked
    elif curves.random_masked is not None and curves.random_masked[i_res] > 0.1:
        warnings.append(f"the phase-randomised masked FSC is {curves.random_masked[i_res]:.3f} > 0.1 at "
                        "the resolution: the mask may be too sharp")
    return i_res, warnings


# --------------------------------------------------------------------------------------------------
# Guinier plots and sharpening
# --------------------------------------------------------------------------------------------------

@dataclass
class Guinier:
    """A Guinier plot: ``x = 1/res^2`` (1/Å^2), ``y = ln(mean |F|)`` per shell, fit weight ``w``."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray


def guinier_curve(amplitude: np.ndarray, grid: ShellGrid, angpix: float, fit_minres_a: float = 10.0,
                  fit_maxres_a: float = 0.0) -> Guinier:
    """RELION ``makeGuinierPlot`` for shells ``0..N//2`` (res >= 2 angpix) of amplitudes ``|F|``.

    ``w = 1`` iff ``fit_maxres_a <= res <= fit_minres_a`` and the shell has amplitude; empty or
    zero shells get ``y = -99``, ``w = 0``.
    """
    return _guinier_from_sums(grid.radial_sum(amplitude), grid, angpix, fit_minres_a, fit_maxres_a)


def _guinier_from_sums(total: np.ndarray, grid: ShellGrid, angpix: float, fit_minres_a: float,
                       fit_maxres_a: float) -> Guinier:
    """:func:`guinier_curve` from the per-shell amplitude sums ``total``."""
    n, box = grid.n, grid.box
    idx = np.arange(n, dtype=np.float64)
    with np.errstate(divide="ignore"):
        res_a = np.where(idx > 0, box * angpix / np.maximum(idx, 1), np.inf)
    x = np.where(idx > 0, 1.0 / res_a ** 2, 0.0)
    ok = (total > 0) & (grid.count > 0)
    y = np.full(n, GUINIER_MISSING)
    y[ok] = np.log(total[ok] / grid.count[ok])
    w = ((res_a >= fit_maxres_a) & (res_a <= fit_minres_a) & ok).astype(np.float64)
    return Guinier(x=x, y=y, w=w)


def fit_straight_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Weighted least-squares line (RELION ``fitStraightLine``): ``(slope, intercept, corr)``,
    ``corr = ss_xy^2 / (ss_xx ss_yy)``.  Raises ``ValueError`` with fewer than 2 weighted points."""
    w = np.asarray(w, np.float64)
    if np.count_nonzero(w > 0) < 2:
        raise ValueError("fewer than 2 Guinier points in the fitting range: lower --autob_lowres or "
                         "check the resolution range")
    sw = w.sum()
    mx = (w * x).sum() / sw
    my = (w * y).sum() / sw
    ss_xx = (w * (x - mx) ** 2).sum()
    ss_yy = (w * (y - my) ** 2).sum()
    ss_xy = (w * (x - mx) * (y - my)).sum()
    slope = ss_xy / ss_xx
    corr = ss_xy * ss_xy / (ss_xx * ss_yy) if ss_yy > 0 else 1.0
    return float(slope), float(my - slope * mx), float(corr)


@dataclass
class SharpenResult:
    """Output of :func:`sharpen_rfft`."""

    f: np.ndarray                                 # sharpened (and low-passed) rfft
    bfactor_a2: float
    factor_lut: np.ndarray                        # per-|k|^2 factor applied (reuse for half maps)
    guinier: dict[str, Guinier] = field(default_factory=dict)   # original/mtf/weighted/sharpened
    fit: tuple[float, float, float] | None = None               # slope, intercept, corr (auto-B)
    fit_shells: int = 0                                         # shells the auto-B fit used
    fit_range_a: tuple[float, float] | None = None              # their lowest, highest resolution (Å)


def autob_fit_span(g: Guinier) -> tuple[int, tuple[float, float] | None]:
    """Shells of a Guinier curve that a fit uses (``w > 0``) and their lowest, highest resolution (Å)."""
    used = (np.asarray(g.w) > 0) & (np.asarray(g.x) > 0)
    if not used.any():
        return 0, None
    x = np.asarray(g.x)[used]
    return int(used.sum()), (float(1.0 / np.sqrt(x.min())), float(1.0 / np.sqrt(x.max())))


def autob_warning(fit_shells: int, fit_range_a: tuple[float, float] | None) -> str | None:
    """One sentence when an auto-B fit spans fewer than :data:`AUTOB_MIN_SHELLS` shells, else None."""
    if fit_shells >= AUTOB_MIN_SHELLS:
        return None
    span = f" ({fit_range_a[0]:.1f} -> {fit_range_a[1]:.1f} Å)" if fit_range_a else ""
    return (f"the auto-B Guinier fit spans only {fit_shells} Fourier shells{span}, fewer than "
            f"{AUTOB_MIN_SHELLS}: the B-factor is poorly determined (lower --autob_lowres, or use --adhoc_bfac)")


def sharpen_rfft(f: np.ndarray, grid: ShellGrid, angpix: float, fsc_corrected: np.ndarray | None,
                 mtf: tuple[np.ndarray, np.ndarray, float] | None = None, auto_bfac: bool = False,
                 autob_lowres_a: float = 10.0, autob_highres_a: float = 0.0, adhoc_bfac_a2: float = 0.0,
                 low_pass_a: float = 0.0, filter_edge_width: float = 2.0) -> SharpenResult:
    """RELION ``sharpenMap`` on the rfft ``f`` of the averaged map (RELION step 6).

    Divide by the MTF (``mtf = (invpix, values, mtf_angpix)``), FSC-weight with ``fsc_corrected``
    (None: skip), fit or apply the B-factor, low-pass at ``low_pass_a`` if > 0 (the caller resolves
    RELION's negative value).  Raises ``ValueError`` for an unusable MTF table or an empty fit range.
    """
    # every filter is a LUT over |k|^2: the amplitude summed per |k|^2 once gives every Guinier curve
    # (sum over a shell of |F| lut[|k|^2] = sum over its |k|^2 of lut * that sum) without a pass over f
    amp_r2 = np.bincount(grid.r2.ravel(), weights=np.abs(f).ravel(), minlength=grid.max_r2 + 1)
    lut = np.ones(grid.max_r2 + 1)

    def curve() -> Guinier:
        total = np.bincount(grid.shell_lut, weights=amp_r2 * lut, minlength=grid.n + 1)[:grid.n]
        return _guinier_from_sums(total, grid, angpix, autob_lowres_a, autob_highres_a)

    guinier = {"original": curve()}
    if mtf is not None:
        lut = lut / mtf_lut(grid, angpix, mtf[0], mtf[1], mtf[2])
        guinier["mtf"] = curve()
    if fsc_corrected is not None:
        lut = lut * fsc_weight_lut(grid.radius_lut, np.asarray(fsc_corrected)[:grid.n])
        guinier["weighted"] = curve()
    fit = None
    bfactor = adhoc_bfac_a2
    fit_shells, fit_range = 0, None
    if auto_bfac:
        last = list(guinier.values())[-1]
        fit = fit_straight_line(last.x, last.y, last.w)
        bfactor = 4.0 * fit[0]
        fit_shells, fit_range = autob_fit_span(last)
    lut = lut * bfactor_lut(grid, angpix, bfactor)
    if auto_bfac or bfactor != 0:
        guinier["sharpened"] = curve()
    if low_pass_a > 0:
        lut = lut * low_pass_lut(grid, angpix, low_pass_a, filter_edge_width)
    return SharpenResult(f=f * grid.gather(lut.astype(f.real.dtype)), bfactor_a2=float(bfactor),
                         factor_lut=lut, guinier=guinier, fit=fit, fit_shells=fit_shells, fit_range_a=fit_range)


@dataclass
class SharpenedMaps:
    """Output of :func:`sharpen_maps`: the sharpened average, its masked copy and the sharpened half
    maps (None when not asked for), and the :class:`SharpenResult` (B-factor, Guinier curves, fit)."""

    final: np.ndarray
    masked: np.ndarray | None
    halves: tuple[np.ndarray, np.ndarray] | None
    sharp: SharpenResult


def sharpen_maps(f1: np.ndarray, f2: np.ndarray, grid: ShellGrid, angpix: float, fsc_corrected: np.ndarray | None,
                 mask: np.ndarray | None = None, half_maps: bool = False, **options) -> SharpenedMaps:
    """Sharpen the average ``(f1 + f2)/2`` of two half-map rffts (:func:`sharpen_rfft` with
    ``options``) back to real space; with ``mask`` also the masked map, with ``half_maps`` each half
    filtered by the same factor (MTF, weighting, B-factor, low-pass)."""
    average = f1 + f2
    average *= np.float32(0.5)
    sharp = sharpen_rfft(average, grid, angpix, fsc_corrected, **options)
    final = irfft_fast(sharp.f, grid.shape)
    halves = None
    if half_maps:
        factor = grid.gather(sharp.factor_lut.astype(np.float32))
        halves = (irfft_fast(f1 * factor, grid.shape), irfft_fast(f2 * factor, grid.shape))
    return SharpenedMaps(final, None if mask is None else final * mask, halves, sharp)
