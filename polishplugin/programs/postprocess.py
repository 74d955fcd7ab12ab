"""Sharpen a map from two unfiltered half maps: corrected FSC, MTF, FSC weighting, B-factor (relion_postprocess).

Examples:
  polishplugin postprocess --i Refine3D/job029/run_half1_class001_unfil.mrc --mask MaskCreate/job020/mask.mrc \\
      --o PostProcess/job030/postprocess --angpix 1.244 --mtf mtf_k2_200kV.star --mtf_angpix 0.885 \\
      --auto_bfac --autob_lowres 10

Outputs (RELION names): <o>.mrc, <o>_masked.mrc, <o>.star (data_general, data_fsc, data_guinier),
<o>_fsc.xml (EMDB), <o>_fsc.dat, <o>_fsc.png, <o>_guinier.png and logfile.pdf (those two PNG images as its
pages) in the output folder;
--half_maps adds <o>_half1.mrc and <o>_half2.mrc.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import threading
import time

from ..core.fsc import ShellGrid, rfft_fast
from ..core.postprocess import (FscCurves, SharpenResult, autob_warning, choose_resolution, postprocess_fscs,
                                resolution_a, sharpen_maps)
from ..io import labels as L
from ..io.mrc import write_mrc
from ..io.mtf import read_mtf_table
from ..io.postprocess import (PostprocessResult, fsc_table, guinier_table, postprocess_paths, read_half_maps,
                              write_fsc_dat, write_fsc_xml, write_postprocess)
from ._cli import ProgramError

__all__ = ["add_args", "main"]

log = logging.getLogger(__name__)


def add_half_map_args(group, out_default: str, out_help: str) -> None:
    """``--i --i2 --o --angpix``: the half-map inputs and output root of ``relion_postprocess`` (with or
    without ``--locres``)."""
    group.add_argument("--i", required=True, help="Input name of half1, e.g. run_half1_class001_unfil.mrc")
    group.add_argument("--i2", default="", help="Input name of half2 (default: --i with half1 -> half2)")
    group.add_argument("--o", default=out_default, help=out_help)
    group.add_argument("--angpix", type=float, default=-1.0, help="Pixel size in Å (-1: from the header)")


def add_mtf_args(group) -> None:
    """``--mtf --mtf_angpix``: the detector MTF used to correct the map."""
    group.add_argument("--mtf", default="", help="STAR file with the detector MTF")
    group.add_argument("--mtf_angpix", type=float, default=-1.0,
                       help="Pixel size of the MTF's detector (-1: --angpix)")


def add_args(parser: argparse.ArgumentParser) -> None:
    """RELION ``relion_postprocess`` options (names and defaults)."""
    g = parser.add_argument_group("General options")
    add_half_map_args(g, "postprocess", "Output rootname (may include a folder)")
    g.add_argument("--half_maps", action="store_true", help="Also write post-processed half maps")
    g.add_argument("--random_seed", type=int, default=0, help="Seed for phase randomisation")
    m = parser.add_argument_group("Masking options")
    m.add_argument("--mask", default="", help="Filename of a user-provided mask (1=protein, 0=solvent)")
    m.add_argument("--force_mask", action="store_true", help="Use the mask even when the masked FSC is worse")
    m.add_argument("--molweight", type=float, default=-1.0, help="Molecular weight (kDa) of the ordered mass")
    s = parser.add_argument_group("Sharpening options")
    add_mtf_args(s)
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


# ------------------------------------------------------------------------------------------ start-up

#: the plotting stack (matplotlib, its Agg backend, PIL's PNG writer: ~0.3 s of imports on the 2-core VM)
PLOT_MODULES = ("polishplugin.plots.postprocess", "polishplugin.plots.local_resolution",
                "matplotlib.backends.backend_agg", "PIL.PngImagePlugin")


def prefetch_plots(names: tuple[str, ...] = PLOT_MODULES) -> threading.Thread:
    """Import the plotting stack in a background thread while the main thread reads and transforms
    the maps (file reads and FFTs release the GIL), so that the figures at the end find it imported.

    The caller joins the thread before it imports a plotting module itself; a failed import is left to
    that later import to report.  While the thread runs, the GIL switch interval is 0.5 ms instead of
    5 ms, so that the numeric thread does not wait long for the GIL between its numpy calls.  The thread
    is not a daemon: a program that stops early (bad input) waits for the imports before the interpreter
    shuts down, instead of freezing an import (and a possible warning on stderr) half-way.
    """
    interval = sys.getswitchinterval()

    def work() -> None:
        try:
            for name in names:
                importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the main thread's own import raises it again
            pass
        finally:
            sys.setswitchinterval(interval)

    sys.setswitchinterval(min(interval, 5e-4))
    thread = threading.Thread(target=work, name="prefetch-plots")
    thread.start()
    return thread


# ------------------------------------------------------------------------------------------ output tables

def _result(args, half2_name: str, curves: FscCurves, sharp: SharpenResult, resolution: float, box: int,
            angpix: float) -> PostprocessResult:
    """postprocess.star's tables: general (RELION's labels and order), fsc and guinier."""
    out = postprocess_paths(args.o)
    general: dict[str, object] = {
        L.FINAL_RESOLUTION: resolution, L.BFACTOR_USED_FOR_SHARPENING: sharp.bfactor_a2,
        L.UNFILTERED_MAP_HALF1: args.i, L.UNFILTERED_MAP_HALF2: half2_name, L.POSTPROCESSED_MAP: out["map"]}
    if curves.masked is None:
        fsc = fsc_table(box, angpix, {"unmasked": curves.corrected})
    else:
        fsc = fsc_table(box, angpix, {name: getattr(curves, name) for name in (
            "corrected", "particle_mask_fraction", "particle_molweight", "unmasked", "masked", "random_masked")})
        if args.molweight > 0:
            general[L.MOLECULAR_WEIGHT] = args.molweight
            general[L.PARTICLE_BOX_FRACTION_MOLECULAR_WEIGHT] = curves.fractions["frac_molweight"]
        general[L.PARTICLE_BOX_FRACTION_SOLVENT_MASK] = curves.fractions["frac_solvent_mask"]
        general[L.MASK_NAME] = args.mask
        general[L.RANDOMISE_FROM] = box * angpix / curves.randomize_at if curves.randomize_at else 999.0
        general[L.POSTPROCESSED_MAP_MASKED] = out["masked"]
    if sharp.fit is not None:
        general[L.FITTED_SLOPE_GUINIER_PLOT] = sharp.fit[0]
        general[L.FITTED_INTERCEPT_GUINIER_PLOT] = sharp.fit[1]
        general[L.CORRELATION_FIT_GUINIER_PLOT] = sharp.fit[2]
        general[L.POLISH_AUTOB_FIT_SHELLS] = sharp.fit_shells
        if sharp.fit_range_a is not None:
            general[L.POLISH_AUTOB_FIT_LOWRES], general[L.POLISH_AUTOB_FIT_HIGHRES] = sharp.fit_range_a
        general[L.POLISH_AUTOB_TOO_FEW_SHELLS] = int(autob_warning(sharp.fit_shells, sharp.fit_range_a) is not None)
    guinier = guinier_table(sharp.guinier["original"].x, {k: g.y for k, g in sharp.guinier.items()},
                            None if sharp.fit is None else sharp.fit[1])
    return PostprocessResult(general, fsc, guinier)


def _command_line(args: argparse.Namespace) -> str:
    parts = ["polishplugin postprocess"]
    for key, value in vars(args).items():
        if value is True:
            parts.append(f"--{key}")
        elif value not in (None, False, "") and not callable(value):
            parts.append(f"--{key} {value}")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------ main

def _check_options(args: argparse.Namespace) -> None:
    if args.auto_bfac and args.adhoc_bfac != 0:
        raise ProgramError("--auto_bfac and --adhoc_bfac are mutually exclusive")
    if args.mtf_angpix > 0 and not args.mtf:
        log.warning("--mtf_angpix given without --mtf: ignored")


def _log_bfactor(sharp: SharpenResult) -> None:
    if sharp.fit is not None:
        log.info("Guinier fit over %d shells: slope %.4f intercept %.4f corr %.4f -> B = %.2f Å^2",
                 sharp.fit_shells, sharp.fit[0], sharp.fit[1], sharp.fit[2], sharp.bfactor_a2)
        warning = autob_warning(sharp.fit_shells, sharp.fit_range_a)
        if warning:
            log.warning("WARNING: %s", warning)
    elif sharp.bfactor_a2 > 0:
        log.warning("WARNING: a positive B-factor (%.2f) blurs the map", sharp.bfactor_a2)
    elif sharp.bfactor_a2 == 0:
        log.info("B-factor 0: the map will not be sharpened")


def main(args: argparse.Namespace) -> int:
    """Read half maps (+ mask, MTF), compute FSCs, sharpen, write RELION's outputs."""
    t0 = time.time()
    plots = prefetch_plots()
    _check_options(args)
    maps = read_half_maps(args.i, args.i2, args.mask, args.angpix)
    angpix, mask = maps.angpix, maps.mask
    mtf = None
    if args.mtf:
        mtf = (*read_mtf_table(args.mtf), args.mtf_angpix if args.mtf_angpix > 0 else angpix)
    grid = ShellGrid(maps.half1.shape)
    f1, f2 = rfft_fast(maps.half1), rfft_fast(maps.half2)
    try:
        curves = postprocess_fscs(maps.half1, maps.half2, grid, angpix, mask, args.randomize_at_fsc,
                                  args.randomize_at_A, args.random_seed, args.molweight, f1=f1, f2=f2)
    except ValueError as exc:
        raise ProgramError(f"half maps {args.i} and {maps.half2_name}: {exc}") from None
    maps.half1 = maps.half2 = None
    log.info("FSCs done (%.1f s)", time.time() - t0)
    i_res, warnings = choose_resolution(curves, args.force_mask)
    for w in warnings:
        log.warning("WARNING: %s", w)
    resolution = resolution_a(i_res, grid.box, angpix)
    log.info("Final resolution = %.2f Å (shell %d)", resolution, i_res)
    if args.skip_fsc_weighting and args.low_pass == 0:
        log.warning("WARNING: --skip_fsc_weighting without --low_pass: the map keeps noise up to Nyquist")
    try:
        out = sharpen_maps(f1, f2, grid, angpix, None if args.skip_fsc_weighting else curves.corrected, mask,
                           args.half_maps, mtf=mtf, auto_bfac=args.auto_bfac, autob_lowres_a=args.autob_lowres,
                           autob_highres_a=args.autob_highres, adhoc_bfac_a2=args.adhoc_bfac,
                           low_pass_a=resolution if args.low_pass < 0 else args.low_pass,
                           filter_edge_width=args.filter_edge_width)
    except ValueError as exc:
        raise ProgramError(f"sharpening {args.i}: {exc}") from None
    _log_bfactor(out.sharp)
    paths = postprocess_paths(args.o)
    write_mrc(paths["map"], out.final, angpix)
    if out.masked is not None:
        write_mrc(paths["masked"], out.masked, angpix)
    if out.halves is not None:
        write_mrc(paths["half1"], out.halves[0], angpix)
        write_mrc(paths["half2"], out.halves[1], angpix)
    result = _result(args, maps.half2_name, curves, out.sharp, resolution, grid.box, angpix)
    write_postprocess(paths["star"], result,
                      ("polishplugin postprocess (RELION relion_postprocess compatible)", _command_line(args)))
    inv_res = result.fsc[L.RESOLUTION].to_numpy()
    write_fsc_xml(paths["fsc_xml"], inv_res, curves.corrected, "polishplugin masked-corrected FSC")
    write_fsc_dat(paths["fsc_dat"], inv_res, curves.corrected)
    plots.join()
    from ..plots.postprocess import save_postprocess_figures

    save_postprocess_figures(result, paths, (args.autob_lowres, args.autob_highres))
    log.info("Wrote %s, %s, %s (%.1f s)", paths["map"], paths["star"], paths["fsc_xml"], time.time() - t0)
    return 0
