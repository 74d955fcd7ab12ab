"""Local resolution from two unfiltered half maps by local masked FSCs (relion_postprocess --locres).

Example (tutorial step 29):
  polishplugin local_resolution --i Refine3D/job029/run_half1_class001_unfil.mrc \\
      --o LocalRes/job031/relion --angpix 1.244 --adhoc_bfac -100 --mtf mtf_k2_200kV.star \\
      --mask MaskCreate/job020/mask.mrc

Outputs (RELION names, <o> = --o): <o>_locres.mrc (local resolution in Å, mask-weighted harmonic
mean of the point estimates), <o>_locres_filtered.mrc (locally FSC-weighted, low-passed, sharpened
map), <o>_locres_fscs.star (valid STAR: data_locres_points with every point's centre and resolution,
then one data_fsc_KKKKK_IIIII_JJJJJ table per point), <o>_histogram.png (local resolution of
voxels with mask > 0.5, or of all estimated voxels without --mask), <o>_slices.png, <o>_histogram.pdf
(those two PNG images as its pages) and <o>_chimerax.cxc (ChimeraX: colours the sharpened map,
--sharpened or else the filtered map, by local resolution).
Links locres.mrc and locres_filtered.mrc are also made in the output folder.

--mode exact does 4 full-box FFTs + 1 inverse per point like RELION; --mode fast (default) computes
each masked FSC in a small window around the point (same resolution to within one shell almost
everywhere, see polishplugin/core/local_resolution.py).  MPI: points are shared out by rank
(point n on rank n % size, as RELION); the leader sums and writes.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

import numpy as np

from ..core.local_resolution import LocalResolution, LocresAccumulators, LocresSettings, finalize_maps
from ..io.local_resolution import link_output, locres_paths, write_chimerax_script, write_locres_fscs
from ..io.mrc import write_mrc
from ..io.mtf import read_mtf_table
from ..io.postprocess import read_half_maps
from ._cli import ProgramError
from ._mpi import get_comm
from .postprocess import add_half_map_args, add_mtf_args, prefetch_plots

__all__ = ["add_args", "main"]

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    """RELION ``relion_postprocess --locres`` options (names and defaults) plus mode/threads."""
    g = parser.add_argument_group("General options")
    add_half_map_args(g, "relion", "Output rootname, e.g. LocalRes/job031/relion")
    g.add_argument("--mask", default="", help="Mask for the histogram (voxels > 0.5); not used for the FSCs")
    g.add_argument("--sharpened", default="", help="Sharpened map (e.g. postprocess.mrc) for the ChimeraX script")
    g.add_argument("--random_seed", type=int, default=0, help="Seed for phase randomisation (glibc srand)")
    g.add_argument("--locres", action="store_true",
                   help="Accepted for RELION command-line compatibility (this program always does --locres)")
    s = parser.add_argument_group("Sharpening options")
    s.add_argument("--adhoc_bfac", type=float, default=-100.0,
                   help="B-factor (Å^2) for the locally filtered map (GUI default -100)")
    add_mtf_args(s)
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


# ------------------------------------------------------------------------------------------ output

def _write_outputs(args, engine: LocalResolution, acc: LocresAccumulators, mask, angpix: float,
                   plots: threading.Thread | None = None) -> dict:
    paths = locres_paths(args.o)
    locres, filtered = finalize_maps(acc)
    write_mrc(paths["locres"], locres, angpix)
    write_mrc(paths["filtered"], filtered, angpix)
    points = engine.in_sampling_order(acc.points)
    write_locres_fscs(paths["fscs"], points, engine.fsc_unmasked, engine.box, angpix,
                      comments=("polishplugin local_resolution (RELION relion_postprocess --locres)",))
    link_output(paths["locres"], paths["locres_link"])
    link_output(paths["filtered"], paths["filtered_link"])
    if plots is not None:
        plots.join()                      # the prefetch of the plotting stack (see prefetch_plots)
    from ..plots.local_resolution import save_locres_figures

    values, vrange = save_locres_figures(locres, filtered, mask, paths)
    write_chimerax_script(paths["chimerax"], args.sharpened or paths["filtered"], paths["locres"], vrange)
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
    plots = prefetch_plots() if comm.is_leader else None
    maps = read_half_maps(args.i, args.i2, args.mask, args.angpix)
    angpix = maps.angpix
    mtf = (*read_mtf_table(args.mtf), args.mtf_angpix if args.mtf_angpix > 0 else angpix) if args.mtf else None
    settings = LocresSettings(sampling_a=args.locres_sampling, maskrad_a=args.locres_maskrad,
                              edgwidth_a=args.locres_edgwidth, randomize_at_a=args.locres_randomize_at,
                              minres_a=args.locres_minres, filter_edge_width=args.filter_edge_width,
                              adhoc_bfac=args.adhoc_bfac, random_seed=args.random_seed)
    t0 = time.time()
    try:
        engine = LocalResolution(maps.half1, maps.half2, angpix, settings, mtf=mtf, mode=args.mode, workers=args.j)
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
        _write_outputs(args, engine, acc, maps.mask, angpix, plots)
        log.info("local resolution done in %.1f s: %s", time.time() - t0, locres_paths(args.o)["locres"])
    comm.barrier()
    return 0
