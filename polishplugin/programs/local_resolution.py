"""Local resolution from two unfiltered half maps by local masked FSCs (relion_postprocess --locres).

Example (tutorial step 29):
  polishplugin local_resolution --i Refine3D/job029/run_half1_class001_unfil.mrc \\
      --o LocalRes/job031/relion --angpix 1.244 --adhoc_bfac -100 --mtf mtf_k2_200kV.star \\
      --mask MaskCreate/job020/mask.mrc

Outputs (RELION names, <o> = --o): <o>_locres.mrc (local resolution in Å, mask-weighted harmonic
mean of the point estimates), <o>_locres_filtered.mrc (locally FSC-weighted, low-passed, sharpened
map), <o>_locres_fscs.star (valid STAR: data_locres_points with every point's centre and resolution,
then one data_fsc_KKKKK_IIIII_JJJJJ table per point), <o>_histogram.png/.pdf (local resolution of
voxels with mask > 0.5, or of all estimated voxels without --mask), <o>_slices.png and <o>_chimerax.cxc
(ChimeraX: colours the sharpened map, --sharpened or else the filtered map, by local resolution).
Links locres.mrc and locres_filtered.mrc are also made in the output folder.

--mode exact does 4 full-box FFTs + 1 inverse per point like RELION; --mode fast (default) computes
each masked FSC in a small window around the point (same resolution to within one shell almost
everywhere, see polishplugin/core/local_resolution.py).  MPI: points are shared out by rank
(point n on rank n % size, as RELION); the leader sums and writes.
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
from ..io.mrc import write_mrc
from ..io.star import write_star
from ..core.fourier import n_shells, shell_resolution_a
from ..core.local_resolution import (LocalResolution, LocresAccumulators, LocresSettings, PointResult,
                                     finalize_maps)
from ._cli import ProgramError
from ._mpi import get_comm

__all__ = ["add_args", "main", "relion_integer_string", "point_table_name", "fscs_star_blocks",
           "output_paths"]

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    """RELION ``relion_postprocess --locres`` options (names and defaults) plus mode/threads."""
    g = parser.add_argument_group("General options")
    g.add_argument("--i", required=True, help="Input name of half1, e.g. run_half1_class001_unfil.mrc")
    g.add_argument("--i2", default="", help="Input name of half2 (default: --i with half1 -> half2)")
    g.add_argument("--o", default="relion", help="Output rootname, e.g. LocalRes/job031/relion")
    g.add_argument("--angpix", type=float, default=-1.0, help="Pixel size in Å (-1: from the header)")
    g.add_argument("--mask", default="", help="Mask for the histogram (voxels > 0.5); not used for the FSCs")
    g.add_argument("--sharpened", default="", help="Sharpened map (e.g. postprocess.mrc) for the ChimeraX script")
    g.add_argument("--random_seed", type=int, default=0, help="Seed for phase randomisation (glibc srand)")
    g.add_argument("--locres", action="store_true",
                   help="Accepted for RELION command-line compatibility (this program always does --locres)")
    s = parser.add_argument_group("Sharpening options")
    s.add_argument("--adhoc_bfac", type=float, default=-100.0,
                   help="B-factor (Å^2) for the locally filtered map (GUI default -100)")
    s.add_argument("--mtf", default="", help="STAR file with the detector MTF")
    s.add_argument("--mtf_angpix", type=float, default=-1.0, help="Pixel size of the MTF's detector (-1: --angpix)")
    lr = parser.add_argument_group("Local-resolution options")
    lr.add_argument("--locres_sampling", type=float, default=25.0, help="Sampling of the local-resolution map (Å)")
    lr.add_argument("--locres_maskrad", type=float, default=-1.0,
                    help="Radius (Å) of the spherical mask (-1: 0.5 * sampling)")
    lr.add_argument("--locres_edgwidth", type=float, default=-1.0,
                    help="Width (Å) of the mask's soft edge (-1: sampling)")
    lr.add_argument("--locres_randomize_at", type=float, default=25.0, help="Randomise phases from this resolution (Å)")
    lr.add_argument("--locres_minres", type=float, default=50.0, help="Lowest local resolution allowed (Å)")
    lr.add_argument("--filter_edge_width", type=int, default=2, help="Low-pass edge width (shells)")
    c = parser.add_argument_group("Compute")
    c.add_argument("--mode", choices=("fast", "exact"), default="fast",
                   help="fast: windowed FSCs (default); exact: full-box FFTs per point like RELION")
    c.add_argument("--backend", choices=("numpy", "opencl"), default="numpy",
                   help="Compute backend (the FFT-bound work runs on the host; opencl falls back to numpy)")
    c.add_argument("--device", default="", help="OpenCL device (accepted for uniformity; unused)")
    c.add_argument("--j", type=int, default=1, help="Threads for the FFTs")


# ------------------------------------------------------------------------------------------ input

def _read_inputs(args: argparse.Namespace):
    """Half maps, mask, pixel size (checks shared with ``postprocess``) and the MTF table."""
    from .postprocess import read_half_maps, read_mtf_table

    h1, h2, mask, angpix, half2_name = read_half_maps(args)
    mtf = None
    if args.mtf:
        if not os.path.exists(args.mtf):
            raise ProgramError(f"MTF file {args.mtf} does not exist")
        x, y = read_mtf_table(args.mtf)
        mtf = (x, y, args.mtf_angpix if args.mtf_angpix > 0 else angpix)
    return h1, h2, mask, float(angpix), half2_name, mtf


# ------------------------------------------------------------------------------------------ output

def relion_integer_string(value: int, width: int = 5) -> str:
    """RELION ``integerToString(v, width)``: zero-padded, a minus sign taking one of the places."""
    v = int(value)
    digits = str(abs(v)).rjust(width - (1 if v < 0 else 0), "0")
    return ("-" + digits) if v < 0 else digits


def point_table_name(point: tuple[int, int, int]) -> str:
    """``fsc_KKKKK_IIIII_JJJJJ`` as RELION names a point's table."""
    return "fsc_" + "_".join(relion_integer_string(v) for v in point)


def output_paths(root: str) -> dict[str, str]:
    """Every output file of a run with ``--o root`` (RELION names)."""
    return {key: root + suffix for key, suffix in (
        ("locres", "_locres.mrc"), ("filtered", "_locres_filtered.mrc"), ("fscs", "_locres_fscs.star"),
        ("histogram_png", "_histogram.png"), ("histogram_pdf", "_histogram.pdf"),
        ("slices_png", "_slices.png"), ("chimerax", "_chimerax.cxc"))}


def fscs_star_blocks(points: list[PointResult], fsc_unmasked: np.ndarray, box: int,
                     angpix: float) -> dict[str, pd.DataFrame]:
    """``data_locres_points`` (centre x=kk, y=ii, z=jj in px from the box centre, resolution) and one
    FSC table per point with postprocess.star's columns."""
    n = n_shells(box)
    res_a = shell_resolution_a(box, angpix, n)
    summary = pd.DataFrame({
        L.COORDINATE_X: [p.point[0] for p in points], L.COORDINATE_Y: [p.point[1] for p in points],
        L.COORDINATE_Z: [p.point[2] for p in points],
        L.ANGSTROM_RESOLUTION: [p.resolution_a for p in points]})
    blocks: dict[str, pd.DataFrame] = {"locres_points": summary}
    base = {L.SPECTRAL_INDEX: np.arange(n), L.RESOLUTION: 1.0 / res_a, L.ANGSTROM_RESOLUTION: res_a}
    for p in points:
        cols = dict(base)
        cols[L.FOURIER_SHELL_CORRELATION_CORRECTED] = p.fsc_true
        cols[L.FOURIER_SHELL_CORRELATION_UNMASKED_MAPS] = fsc_unmasked
        cols[L.FOURIER_SHELL_CORRELATION_MASKED_MAPS] = p.fsc_masked
        cols[L.CORRECTED_FOURIER_SHELL_CORRELATION_PHASE_RANDOMIZED_MASKED_MAPS] = p.fsc_random_masked
        blocks[point_table_name(p.point)] = pd.DataFrame(cols)
    return blocks


def _link(target: str, link: str) -> None:
    """``link`` -> ``target`` (relative symlink in the same folder; a copy where links fail)."""
    if os.path.abspath(target) == os.path.abspath(link):
        return
    try:
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.basename(target), link)
    except OSError:
        import shutil
        shutil.copyfile(target, link)


def _chimerax_path(path: str, folder: str) -> str:
    path_abs = os.path.abspath(path)
    return os.path.basename(path) if os.path.dirname(path_abs) == os.path.abspath(folder) else path_abs


def _write_outputs(args, engine: LocalResolution, acc: LocresAccumulators, mask, angpix: float) -> dict:
    from ..plots.local_resolution import (chimerax_script, histogram_figure, histogram_values,
                                           locres_range, save_pdf, save_png, slices_figure)

    paths = output_paths(args.o)
    folder = os.path.dirname(args.o) or "."
    os.makedirs(folder, exist_ok=True)
    locres, filtered = finalize_maps(acc)
    write_mrc(paths["locres"], locres, angpix)
    write_mrc(paths["filtered"], filtered, angpix)
    order = {tuple(int(v) for v in pt): k for k, pt in enumerate(engine.points)}
    points = sorted(acc.points, key=lambda p: order[p.point])
    write_star(paths["fscs"], fscs_star_blocks(points, engine.fsc_unmasked, engine.box, angpix),
               comments=["polishplugin local_resolution (RELION relion_postprocess --locres)"])
    _link(paths["locres"], os.path.join(folder, "locres.mrc"))
    _link(paths["filtered"], os.path.join(folder, "locres_filtered.mrc"))
    values = histogram_values(locres, mask)
    vrange = locres_range(values)
    hist = histogram_figure(values, "Local resolution" + (" inside the mask" if mask is not None else ""))
    save_png(hist, paths["histogram_png"])
    slices = slices_figure(filtered, locres, mask, vrange)
    save_png(slices, paths["slices_png"])
    save_pdf([hist, slices], paths["histogram_pdf"])
    shown = args.sharpened if args.sharpened else paths["filtered"]
    script = chimerax_script(_chimerax_path(shown, folder), _chimerax_path(paths["locres"], folder), vrange)
    tmp = paths["chimerax"] + ".tmp"
    Path(tmp).write_text(script)
    os.replace(tmp, paths["chimerax"])
    if values.size:
        log.info("local resolution%s: median %.2f Å, 5th-95th percentile %.2f-%.2f Å",
                 " inside the mask" if mask is not None else "", np.median(values),
                 np.percentile(values, 5), np.percentile(values, 95))
    return {"locres": locres, "filtered": filtered, "points": points, "paths": paths}


# ------------------------------------------------------------------------------------------ main

def main(args: argparse.Namespace) -> int:
    comm = get_comm()
    if args.backend == "opencl" or args.device:
        log.info("local_resolution has no OpenCL kernels (the work is FFT-bound); using numpy")
    if args.j < 1:
        raise ProgramError(f"--j must be >= 1, got {args.j}")
    if args.filter_edge_width < 0:
        raise ProgramError(f"--filter_edge_width must be >= 0, got {args.filter_edge_width}")
    h1, h2, mask, angpix, _, mtf = _read_inputs(args)
    settings = LocresSettings(sampling_a=args.locres_sampling, maskrad_a=args.locres_maskrad,
                              edgwidth_a=args.locres_edgwidth, randomize_at_a=args.locres_randomize_at,
                              minres_a=args.locres_minres, filter_edge_width=args.filter_edge_width,
                              adhoc_bfac=args.adhoc_bfac, random_seed=args.random_seed)
    t0 = time.time()
    try:
        engine = LocalResolution(h1, h2, angpix, settings, mtf=mtf, mode=args.mode, workers=args.j)
    except ValueError as exc:
        raise ProgramError(f"half map {args.i}: {exc}") from None
    g = engine.geom
    n_points = engine.points.shape[0]
    log.info("local resolution (%s mode): %d points, step %d px, mask radius %d px + edge %d px, "
             "phases randomised beyond %.2f Å%s", engine.mode, n_points, g.step, g.maskrad, g.edge,
             engine.box * angpix / max(g.randomize_at, 1),
             f", window {engine.win}/{engine.winf} px" if engine.mode == "fast" else "")
    mine = [n for n in range(n_points) if n % comm.size == comm.rank]
    t1 = time.time()

    def progress(done: int, total: int) -> None:
        if comm.is_leader and (done == total or done % max(total // 10, 1) < engine.batch):
            el = time.time() - t1
            log.info("  %d / %d points, ETA %.0f s", done, total, el / max(done, 1) * (total - done))

    acc = engine.run(mine, progress)
    if comm.size > 1:
        acc.ifil = comm.allreduce_sum(acc.ifil)
        acc.ilocres = comm.allreduce_sum(acc.ilocres)
        acc.isumw = comm.allreduce_sum(acc.isumw)
        gathered = comm.gather(acc.points)
        if comm.is_leader:
            acc.points = [p for part in gathered for p in part]
    if comm.is_leader:
        _write_outputs(args, engine, acc, mask, angpix)
        log.info("local resolution done in %.1f s: %s", time.time() - t0, output_paths(args.o)["locres"])
    comm.barrier()
    return 0
