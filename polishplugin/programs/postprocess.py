"""Sharpen a map from two unfiltered half maps: corrected FSC, MTF, FSC weighting, B-factor (relion_postprocess).

Examples:
  polishplugin postprocess --i Refine3D/job029/run_half1_class001_unfil.mrc --mask MaskCreate/job020/mask.mrc \\
      --o PostProcess/job030/postprocess --angpix 1.244 --mtf mtf_k2_200kV.star --mtf_angpix 0.885 \\
      --auto_bfac --autob_lowres 10

Outputs (RELION names): <o>.mrc, <o>_masked.mrc, <o>.star (data_general, data_fsc, data_guinier),
<o>_fsc.xml (EMDB), <o>_fsc.dat, <o>_fsc.png, <o>_guinier.png and logfile.pdf in the output folder;
--half_maps adds <o>_half1.mrc and <o>_half2.mrc.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import labels as L
from ..io.mrc import read_mrc, write_mrc
from ..io.mtf import read_mtf
from ..io.star import StarError, atomic_write_text, write_star
from ..core.fourier import n_shells, shell_resolution_a
from ..core.mtf import validate_mtf_table
from ..core.postprocess import (FscCurves, SharpenResult, ShellGrid, choose_resolution, irfft_fast,
                                mask_fractions, postprocess_fscs, rfft_fast, sharpen_rfft)
from ._cli import ProgramError

__all__ = ["add_args", "main", "other_half_name", "read_half_maps", "read_mtf_table", "OUTPUT_STAR_SUFFIX"]

log = logging.getLogger(__name__)

OUTPUT_STAR_SUFFIX = ".star"
LOGFILE_PDF = "logfile.pdf"
#: tolerance of the [0, 1] mask check (RELION: 1e-6)
MASK_TOLERANCE = 1e-6
#: relative tolerance for two half maps' pixel sizes
ANGPIX_TOLERANCE = 1e-3


def add_args(parser: argparse.ArgumentParser) -> None:
    """RELION ``relion_postprocess`` options (names and defaults)."""
    g = parser.add_argument_group("General options")
    g.add_argument("--i", required=True, help="Input name of half1, e.g. run_half1_class001_unfil.mrc")
    g.add_argument("--i2", default="", help="Input name of half2 (default: --i with half1 -> half2)")
    g.add_argument("--o", default="postprocess", help="Output rootname (may include a folder)")
    g.add_argument("--angpix", type=float, default=-1.0, help="Pixel size in Å (-1: from the header)")
    g.add_argument("--half_maps", action="store_true", help="Also write post-processed half maps")
    g.add_argument("--random_seed", type=int, default=0, help="Seed for phase randomisation")
    m = parser.add_argument_group("Masking options")
    m.add_argument("--mask", default="", help="Filename of a user-provided mask (1=protein, 0=solvent)")
    m.add_argument("--force_mask", action="store_true", help="Use the mask even when the masked FSC is worse")
    m.add_argument("--molweight", type=float, default=-1.0, help="Molecular weight (kDa) of the ordered mass")
    s = parser.add_argument_group("Sharpening options")
    s.add_argument("--mtf", default="", help="STAR file with the detector MTF")
    s.add_argument("--mtf_angpix", type=float, default=-1.0, help="Pixel size of the MTF's detector (-1: --angpix)")
    s.add_argument("--auto_bfac", action="store_true", help="Estimate the B-factor from a Guinier fit")
    s.add_argument("--autob_lowres", type=float, default=10.0, help="Lowest resolution (Å) of the B-factor fit")
    s.add_argument("--autob_highres", type=float, default=0.0, help="Highest resolution (Å) of the fit (0: Nyquist)")
    s.add_argument("--adhoc_bfac", type=float, default=0.0, help="User-provided B-factor (negative sharpens)")
    f = parser.add_argument_group("Filtering options")
    f.add_argument("--skip_fsc_weighting", action="store_true", help="Do not use FSC weighting")
    f.add_argument("--low_pass", type=float, default=0.0,
                   help="Low-pass resolution in Å (0: none; negative: the FSC 0.143 resolution)")
    f.add_argument("--filter_edge_width", type=float, default=2.0, help="Low-pass edge width (shells)")
    f.add_argument("--randomize_at_fsc", type=float, default=0.8,
                   help="Randomise phases from the first shell where the unmasked FSC drops below this")
    f.add_argument("--randomize_at_A", type=float, default=-1.0,
                   help="Randomise phases from this resolution (Å) instead (-1: use --randomize_at_fsc)")


# ------------------------------------------------------------------------------------------ input

def other_half_name(half1: str) -> str:
    """RELION ``getTheOtherHalf``: the half-2 file name, ``half1`` -> ``half2`` in the base name."""
    path = Path(half1)
    if "half1" not in path.name:
        raise ProgramError(f"cannot guess the second half map from {half1}: its name has no 'half1'; give --i2")
    return str(path.with_name(path.name.replace("half1", "half2")))


def read_mtf_table(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``(rlnResolutionInversePixel, rlnMtfValue)`` of an MTF STAR file (convert.mtf), validated."""
    try:
        mtf = read_mtf(path)
        return validate_mtf_table(mtf.frequency_per_px, mtf.value)
    except StarError as exc:
        if "has no table" in str(exc):
            raise ProgramError(str(exc)) from None
        raise ProgramError(f"MTF file {path} is unusable: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise ProgramError(f"MTF file {path} is unusable: {exc}") from None


def read_half_maps(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float, str]:
    """``(half1, half2, mask or None, angpix, half2_name)`` from ``args.i``, ``args.i2``, ``args.angpix``
    and ``args.mask``, checked (cubic, same shape and pixel size, mask in [0, 1]); float32 arrays."""
    half2_name = args.i2 or other_half_name(args.i)
    h1, angpix1 = read_mrc(args.i)
    h2, angpix2 = read_mrc(half2_name)
    if h1.ndim != 3 or len(set(h1.shape)) != 1:
        raise ProgramError(f"half map {args.i} is not a cubic 3D map (shape {h1.shape})")
    if h1.shape != h2.shape:
        raise ProgramError(f"half maps {args.i} {h1.shape} and {half2_name} {h2.shape} have different shapes")
    if angpix1 > 0 and angpix2 > 0 and abs(angpix1 - angpix2) > ANGPIX_TOLERANCE * max(angpix1, angpix2):
        raise ProgramError(f"half maps {args.i} ({angpix1:g} Å) and {half2_name} ({angpix2:g} Å) "
                           "have different pixel sizes")
    angpix = args.angpix if args.angpix > 0 else angpix1
    if not angpix > 0:
        raise ProgramError(f"half map {args.i} has no pixel size in its header; give --angpix")
    mask = None
    if args.mask:
        mask, _ = read_mrc(args.mask)
        if mask.shape != h1.shape:
            raise ProgramError(f"mask {args.mask} has shape {mask.shape}, the half maps {h1.shape}")
        if mask.min() < -MASK_TOLERANCE or mask.max() > 1 + MASK_TOLERANCE:
            raise ProgramError(f"mask {args.mask} has values outside [0, 1] "
                               f"(min {mask.min():g}, max {mask.max():g})")
    # float32 throughout: single-precision FFTs (FSC sums are accumulated in float64)
    return h1, h2, mask, float(angpix), half2_name


# ------------------------------------------------------------------------------------------ output tables

def _fsc_table(curves: FscCurves, box: int, angpix: float) -> pd.DataFrame:
    n = n_shells(box)
    res_a = shell_resolution_a(box, angpix, n)
    cols: dict[str, np.ndarray] = {L.SPECTRAL_INDEX: np.arange(n), L.RESOLUTION: 1.0 / res_a,
                                   L.ANGSTROM_RESOLUTION: res_a}
    if curves.masked is None:
        cols[L.FOURIER_SHELL_CORRELATION_UNMASKED_MAPS] = curves.corrected
        return pd.DataFrame(cols)
    cols[L.FOURIER_SHELL_CORRELATION_CORRECTED] = curves.corrected
    cols[L.FOURIER_SHELL_CORRELATION_PARTICLE_MASK_FRACTION] = curves.particle_mask_fraction
    if curves.particle_molweight is not None:
        cols[L.FOURIER_SHELL_CORRELATION_PARTICLE_MOL_WEIGHT] = curves.particle_molweight
    cols[L.FOURIER_SHELL_CORRELATION_UNMASKED_MAPS] = curves.unmasked
    cols[L.FOURIER_SHELL_CORRELATION_MASKED_MAPS] = curves.masked
    cols[L.CORRECTED_FOURIER_SHELL_CORRELATION_PHASE_RANDOMIZED_MASKED_MAPS] = curves.random_masked
    return pd.DataFrame(cols)


_GUINIER_COLUMNS = {"original": L.LOG_AMPLITUDES_ORIGINAL, "mtf": L.LOG_AMPLITUDES_M_T_F_CORRECTED,
                    "weighted": L.LOG_AMPLITUDES_WEIGHTED, "sharpened": L.LOG_AMPLITUDES_SHARPENED}


def _guinier_table(sharp: SharpenResult) -> pd.DataFrame:
    cols = {L.RESOLUTION_SQUARED: sharp.guinier["original"].x}
    for key, label in _GUINIER_COLUMNS.items():
        if key in sharp.guinier:
            cols[label] = sharp.guinier[key].y
    if sharp.fit is not None:
        cols[L.LOG_AMPLITUDES_INTERCEPT] = np.full(cols[L.RESOLUTION_SQUARED].size, sharp.fit[1])
    return pd.DataFrame(cols)


def _general_block(args, half2_name, resolution_a, sharp, mask, angpix, curves, out_root) -> dict:
    general: dict[str, object] = {
        L.FINAL_RESOLUTION: resolution_a, L.BFACTOR_USED_FOR_SHARPENING: sharp.bfactor_a2,
        L.UNFILTERED_MAP_HALF1: args.i, L.UNFILTERED_MAP_HALF2: half2_name,
        L.POSTPROCESSED_MAP: out_root + ".mrc"}
    if mask is not None:
        fractions = mask_fractions(mask, angpix, args.molweight)
        if args.molweight > 0:
            general[L.MOLECULAR_WEIGHT] = args.molweight
            general[L.PARTICLE_BOX_FRACTION_MOLECULAR_WEIGHT] = fractions["frac_molweight"]
        general[L.PARTICLE_BOX_FRACTION_SOLVENT_MASK] = fractions["frac_solvent_mask"]
        general[L.MASK_NAME] = args.mask
        general[L.RANDOMISE_FROM] = mask.shape[0] * angpix / curves.randomize_at if curves.randomize_at else 999.0
        general[L.POSTPROCESSED_MAP_MASKED] = out_root + "_masked.mrc"
    if sharp.fit is not None:
        general[L.FITTED_SLOPE_GUINIER_PLOT] = sharp.fit[0]
        general[L.FITTED_INTERCEPT_GUINIER_PLOT] = sharp.fit[1]
        general[L.CORRELATION_FIT_GUINIER_PLOT] = sharp.fit[2]
    return general


def write_postprocess_star(path: str, general: dict, fsc_df: pd.DataFrame, guinier_df: pd.DataFrame,
                           comments: list[str]) -> None:
    """postprocess.star: ``data_general`` (list), ``data_fsc`` and ``data_guinier`` (loops), atomically."""
    write_star(path, {"general": general, "fsc": fsc_df, "guinier": guinier_df}, comments=comments)


def fsc_xml_text(inv_res: np.ndarray, fsc: np.ndarray, title: str) -> str:
    """EMDB FSC XML (x = 1/Å, y = corrected FSC)."""
    rows = "".join(f"  <coordinate>\n    <x>{x:.6f}</x>\n    <y>{y:.6f}</y>\n  </coordinate>\n"
                   for x, y in zip(inv_res, fsc))
    return (f'<fsc title="{title}" xaxis="Resolution (A-1)" yaxis="Correlation Coefficient">\n'
            f"{rows}</fsc>\n")


def _command_line(args: argparse.Namespace) -> str:
    parts = ["polishplugin postprocess"]
    for key, value in vars(args).items():
        if value is True:
            parts.append(f"--{key}")
        elif value not in (None, False, "") and not callable(value):
            parts.append(f"--{key} {value}")
    return " ".join(parts)


def _write_plots(out_root: str, fit_range_a: tuple[float, float]) -> None:
    """``<o>_fsc.png``, ``<o>_guinier.png`` and ``logfile.pdf`` (both pages) from ``<o>.star``."""
    from ..plots.postprocess import fsc_figure_from_star, guinier_figure_from_star, save_pdf, save_png
    star = out_root + OUTPUT_STAR_SUFFIX
    fig_fsc = fsc_figure_from_star(star)
    fig_gui = guinier_figure_from_star(star, fit_range_a=fit_range_a)
    save_png(fig_fsc, out_root + "_fsc.png")
    save_png(fig_gui, out_root + "_guinier.png")
    save_pdf([fig_fsc, fig_gui], os.path.join(os.path.dirname(out_root) or ".", LOGFILE_PDF))


# ------------------------------------------------------------------------------------------ main

def _check_options(args: argparse.Namespace) -> None:
    if args.auto_bfac and args.adhoc_bfac != 0:
        raise ProgramError("--auto_bfac and --adhoc_bfac are mutually exclusive")
    if args.mtf_angpix > 0 and not args.mtf:
        log.warning("--mtf_angpix given without --mtf: ignored")


def main(args: argparse.Namespace) -> int:
    """Read half maps (+ mask, MTF), compute FSCs, sharpen, write RELION's outputs."""
    t0 = time.time()
    _check_options(args)
    h1, h2, mask, angpix, half2_name = read_half_maps(args)
    mtf = None
    if args.mtf:
        invpix, values = read_mtf_table(args.mtf)
        mtf = (invpix, values, args.mtf_angpix if args.mtf_angpix > 0 else angpix)
    shape = h1.shape
    box = shape[0]
    grid = ShellGrid(shape)
    f1, f2 = rfft_fast(h1), rfft_fast(h2)
    try:
        curves = postprocess_fscs(h1, h2, grid, angpix, mask, args.randomize_at_fsc, args.randomize_at_A,
                                  args.random_seed, args.molweight, f1=f1, f2=f2)
    except ValueError as exc:
        raise ProgramError(f"half maps {args.i} and {half2_name}: {exc}") from None
    del h1, h2
    log.info("FSCs done (%.1f s)", time.time() - t0)
    i_res, warnings = choose_resolution(curves, args.force_mask)
    for w in warnings:
        log.warning("WARNING: %s", w)
    resolution_a = box * angpix / i_res if i_res > 0 else 999.0
    log.info("Final resolution = %.2f Å (shell %d)", resolution_a, i_res)
    if args.skip_fsc_weighting and args.low_pass == 0:
        log.warning("WARNING: --skip_fsc_weighting without --low_pass: the map keeps noise up to Nyquist")
    low_pass = resolution_a if args.low_pass < 0 else args.low_pass
    try:
        sharp = sharpen_rfft((f1 + f2) * np.float32(0.5), grid, angpix,
                             None if args.skip_fsc_weighting else curves.corrected, mtf=mtf,
                             auto_bfac=args.auto_bfac, autob_lowres_a=args.autob_lowres,
                             autob_highres_a=args.autob_highres, adhoc_bfac_a2=args.adhoc_bfac,
                             low_pass_a=low_pass, filter_edge_width=args.filter_edge_width)
    except ValueError as exc:
        raise ProgramError(f"sharpening {args.i}: {exc}") from None
    if sharp.fit is not None:
        log.info("Guinier fit: slope %.4f intercept %.4f corr %.4f -> B = %.2f Å^2",
                 sharp.fit[0], sharp.fit[1], sharp.fit[2], sharp.bfactor_a2)
    elif sharp.bfactor_a2 > 0:
        log.warning("WARNING: a positive B-factor (%.2f) blurs the map", sharp.bfactor_a2)
    elif sharp.bfactor_a2 == 0:
        log.info("B-factor 0: the map will not be sharpened")
    out_root = args.o
    final = irfft_fast(sharp.f, shape)
    write_mrc(out_root + ".mrc", final, angpix)
    if mask is not None:
        write_mrc(out_root + "_masked.mrc", final * mask, angpix)
    if args.half_maps:
        factor = grid.gather(sharp.factor_lut).astype(np.float32)   # same MTF, weighting, B, low-pass
        for name, f in (("_half1.mrc", f1), ("_half2.mrc", f2)):
            write_mrc(out_root + name, irfft_fast(f * factor, shape), angpix)
    fsc_df = _fsc_table(curves, box, angpix)
    guinier_df = _guinier_table(sharp)
    general = _general_block(args, half2_name, resolution_a, sharp, mask, angpix, curves, out_root)
    write_postprocess_star(out_root + OUTPUT_STAR_SUFFIX, general, fsc_df, guinier_df,
                           ["polishplugin postprocess (RELION relion_postprocess compatible)", _command_line(args)])
    inv_res = fsc_df[L.RESOLUTION].to_numpy()
    atomic_write_text(out_root + "_fsc.xml", fsc_xml_text(inv_res, curves.corrected,
                                                          "polishplugin masked-corrected FSC"))
    atomic_write_text(out_root + "_fsc.dat", "".join(f"{x:.6f} {y:.6f}\n" for x, y in zip(inv_res, curves.corrected)))
    _write_plots(out_root, (args.autob_lowres, args.autob_highres))
    log.info("Wrote %s.mrc, %s.star, %s_fsc.xml (%.1f s)", out_root, out_root, out_root, time.time() - t0)
    return 0
