"""Bayesian polishing: per-particle motion tracks, per-frame B-factors and shiny particles (relion_motion_refine).

Polishing mode (default): for every micrograph, extract the particles from each movie frame, fit
per-particle tracks under a Gaussian-process prior (--s_vel, --s_div, --s_acc or --params_file),
accumulate per-frame FCCs, then (with --combine_frames) fit per-frame B-factors and scales on all
micrographs and write dose-weighted, motion-corrected particle stacks (shiny particles).

Training mode (--params3 / --params2): estimate s_vel, s_div (and s_acc) and write
opt_params_all_groups.txt.

Outputs (in --o): shiny.star, <micrograph>_shiny.mrcs / _shiny.star / _tracks.star / _FCC_{cc,w0,w1}.mrc,
bfactors.star, logfile.pdf (+ bfactors.png/.eps, scalefactors.png/.eps).
MPI (mpirun -n N polishplugin motion_refine ...) splits micrographs over ranks.

Example (RELION tutorial, step 26):
  polishplugin motion_refine --i Refine3D/job029/run_data.star --f PostProcess/job030/postprocess.star \\
      --corr_mic MotionCorr/job002/corrected_micrographs.star --first_frame 1 --last_frame -1 \\
      --o Polish/job031/ --params_file Polish/job027/opt_params_all_groups.txt --combine_frames \\
      --bfac_minfreq 20 --bfac_maxfreq -1
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
from ..io.mrc import MrcStackWriter, read_mrc, write_mrc
from ..io.star import read_star, write_star
from ._cli import ProgramError
from ._mpi import get_comm, partition

log = logging.getLogger(__name__)

__all__ = ["add_args", "main", "read_params_file", "motion_micrograph", "recombine_micrograph",
           "fit_bfactors_from_files", "micrograph_outputs_exist", "PolishSettings"]


# ------------------------------------------------------------------------------------------ arguments
def _even(value: str) -> int:
    v = int(value)
    if v > 0 and v % 2:
        raise argparse.ArgumentTypeError(f"{v} must be even")
    return v


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("General")
    g.add_argument("--i", required=True, help="Input particle STAR file (RELION 3.1+, with data_optics)")
    g.add_argument("--o", required=True, help="Output directory")
    g.add_argument("--corr_mic", default="", help="corrected_micrographs.star from motion correction")
    g.add_argument("--first_frame", type=int, default=1, help="First movie frame (1-based)")
    g.add_argument("--last_frame", type=int, default=-1, help="Last movie frame (1-based; -1: all)")
    g.add_argument("--only_do_unfinished", action="store_true",
                   help="Skip micrographs whose outputs already exist")
    g.add_argument("--verb", type=int, default=1, help="Verbosity")
    g.add_argument("--j", type=int, default=1, help="Threads (numpy/OpenCL decide their own; kept for RELION)")
    g.add_argument("--B_parts", type=int, default=-1,
                   help="Accepted for RELION compatibility; the FCCs of all micrographs are always used")
    g.add_argument("--min_MG", type=int, default=0, help="First micrograph index (0-based)")
    g.add_argument("--max_MG", type=int, default=-1, help="Last micrograph index (-1: all)")
    g.add_argument("--mps", type=float, default=-1.0, help="Movie pixel size (Å; default from the movie metadata)")
    g.add_argument("--cps", type=float, default=-1.0,
                   help="Coordinate pixel size (Å; default movie pixel size x binning)")
    g.add_argument("--device", default="",
                   help="'' = fastest measured per step (projections on OpenCL when present, CC maps numpy); "
                        "'cpu' = numpy only; 'P:D' = OpenCL platform P, device D for the OpenCL steps")
    r = parser.add_argument_group("Reference")
    r.add_argument("--f", default="", help="postprocess.star (half maps, mask and FSC)")
    r.add_argument("--m1", default="", help="Half map 1 (default from --f)")
    r.add_argument("--m2", default="", help="Half map 2 (default from --f)")
    r.add_argument("--mask", default="", help="Mask applied to the half maps (default from --f)")
    r.add_argument("--angpix_ref", type=float, default=-1.0, help="Reference pixel size (default from header)")
    r.add_argument("--pad", type=int, default=2, help="Padding of the reference projector")
    m = parser.add_argument_group("Motion fit")
    m.add_argument("--fdose", type=float, default=-1.0,
                   help="Electron dose per frame (e/Å²; default rlnMicrographDoseRate of the first movie)")
    m.add_argument("--s_vel", type=float, default=0.5, help="Velocity sigma [Å/dose]")
    m.add_argument("--s_div", type=float, default=5000.0, help="Divergence sigma [Å]")
    m.add_argument("--s_acc", type=float, default=2.0, help="Acceleration sigma [Å/dose] (<0: off)")
    m.add_argument("--params_file", default="", help="File with 's_vel s_div s_acc' (overrides the three)")
    m.add_argument("--cc_pad", type=float, default=1.0, help="Cross-correlation padding (only 1 supported)")
    m.add_argument("--dmg_a", type=float, default=3.40, help="Damage model parameter a")
    m.add_argument("--dmg_b", type=float, default=-1.06, help="Damage model parameter b")
    m.add_argument("--dmg_c", type=float, default=-0.54, help="Damage model parameter c")
    m.add_argument("--max_iters", type=int, default=10000, help="Maximum L-BFGS iterations")
    m.add_argument("--eps", type=float, default=1e-5, help="L-BFGS convergence threshold")
    m.add_argument("--no_whiten", action="store_true", help="Do not whiten the noise spectrum")
    m.add_argument("--absolute_params", action="store_true", help="Do not scale the sigmas by the dose")
    m.add_argument("--gi", action="store_true", help="Initialise from the global CC track, not the motion model")
    m.add_argument("--sq_exp_ker", action="store_true", help="Squared-exponential kernel")
    m.add_argument("--max_ed", type=int, default=-1, help="Maximum number of eigen-deformations")
    m.add_argument("--mot_range", type=float, default=50.0, help="Motion range in px (training CC crop)")
    t = parser.add_argument_group("Parameter estimation (training)")
    t.add_argument("--params2", action="store_true", help="Estimate s_vel and s_div")
    t.add_argument("--params3", action="store_true", help="Estimate s_vel, s_div and s_acc")
    t.add_argument("--align_frac", type=float, default=0.5, help="Fraction of Fourier pixels for alignment")
    t.add_argument("--eval_frac", type=float, default=0.5, help="Fraction of Fourier pixels for testing")
    t.add_argument("--min_p", type=int, default=1000, help="Minimum number of particles for training")
    t.add_argument("--par_group", type=int, default=-1, help="Optics group to train on (-1: all)")
    t.add_argument("--s_vel_0", type=float, default=0.6, help="Initial s_vel")
    t.add_argument("--s_div_0", type=float, default=10000.0, help="Initial s_div")
    t.add_argument("--s_acc_0", type=float, default=3.0, help="Initial s_acc")
    t.add_argument("--in_step", type=float, default=3000.0,
                   help="RELION's initial simplex step; accepted, not used (our search starts with a x2 trust region)")
    t.add_argument("--conv", type=float, default=30.0,
                   help="Parameter grid: multiples of conv/2 scaled units (0.0015 Å/dose, 15 Å, 0.015 Å/dose)")
    t.add_argument("--par_iters", type=int, default=100,
                   help="RELION's iteration limit; evaluation budget 3 x par_iters, at most 100 (or --max_evals)")
    t.add_argument("--max_evals", type=int, default=0, help="Evaluation budget of the search (0: from --par_iters)")
    t.add_argument("--fit_window", type=int, default=24,
                   help="Training: CC maps are kept within +-fit_window px of each track's start (0: +-mot_range)")
    t.add_argument("--joint_particles", type=int, default=1000,
                   help="Micrographs are track-fitted jointly in groups of about this many particles (speed); "
                        "groups, not MPI ranks, define the result")
    t.add_argument("--seed", type=int, default=23, help="Random seed for the micrograph subset")
    c = parser.add_argument_group("Frame combination")
    c.add_argument("--combine_frames", action="store_true", help="Write shiny (motion-corrected, weighted) particles")
    c.add_argument("--float16", action="store_true", help="Write the shiny stacks as float16 (MRC mode 12)")
    c.add_argument("--scale", type=_even, default=-1, help="Output box (even; default: reference pixel size)")
    c.add_argument("--window", type=_even, default=-1, help="Extraction box in movie pixels (even)")
    c.add_argument("--bfac_minfreq", type=float, default=20.0, help="Lowest resolution (Å) of the B-factor fit")
    c.add_argument("--bfac_maxfreq", type=float, default=-1.0,
                   help="Highest resolution (Å) of the B-factor fit (-1: FSC=0.143 resolution)")
    c.add_argument("--bfactors", default="", help="Per-frame B-factors STAR (instead of fitting them)")
    c.add_argument("--suffix", default="", help="Suffix of the shiny stacks (<mic>_shiny<suffix>.mrcs)")


# ----------------------------------------------------------------------------------------- settings
class PolishSettings:
    """Sigmas (Å units) and switches of the motion fit, from the arguments."""

    def __init__(self, args) -> None:
        self.s_vel, self.s_div, self.s_acc = float(args.s_vel), float(args.s_div), float(args.s_acc)
        if getattr(args, "params_file", ""):
            self.s_vel, self.s_div, self.s_acc = read_params_file(args.params_file)
        self.max_iters = int(getattr(args, "max_iters", 10000))
        self.eps = float(getattr(args, "eps", 1e-5))
        self.whiten = not getattr(args, "no_whiten", False)
        self.absolute = bool(getattr(args, "absolute_params", False))
        self.dmg = (float(getattr(args, "dmg_a", 3.40)), float(getattr(args, "dmg_b", -1.06)),
                    float(getattr(args, "dmg_c", -0.54)))
        self.global_init = bool(getattr(args, "gi", False))
        self.sq_exp = bool(getattr(args, "sq_exp_ker", False))
        self.max_ed = int(getattr(args, "max_ed", -1))
        self.backend = "numpy"
        dev = getattr(args, "device", "") or ""
        if dev and dev != "cpu":
            self.backend = "opencl"
        # the track fit's map interpolation: OpenCL whenever a device exists (measured ~3x faster per fit
        # than numpy even on PoCL's CPU device: bench/README.md "Polishing stages"); numpy with --device cpu
        from .motion_train import _backend

        self.fit_backend = _backend(args)[0]


def read_params_file(path: str) -> tuple[float, float, float]:
    """Three whitespace-separated numbers ``s_vel s_div s_acc`` (RELION opt_params file)."""
    p = Path(path)
    if not p.exists():
        raise ProgramError(f"parameter file {path} does not exist")
    toks = p.read_text().split()
    try:
        vals = [float(t) for t in toks[:3]]
    except ValueError:
        vals = []
    if len(vals) != 3:
        raise ProgramError(f"parameter file {path} must contain three numbers 's_vel s_div s_acc'")
    return vals[0], vals[1], vals[2]


# ------------------------------------------------------------------------------------- per micrograph
def _roots(out_dir: str, name: str) -> Path:
    from ._polish_io import micrograph_root

    return micrograph_root(out_dir, name)


def micrograph_outputs_exist(out_dir: str, name: str, combine: bool, suffix: str = "") -> bool:
    """True when every per-micrograph output of a finished run is present."""
    root = str(_roots(out_dir, name))
    files = [root + "_tracks.star", root + "_FCC_cc.mrc", root + "_FCC_w0.mrc", root + "_FCC_w1.mrc"]
    if combine:
        files += [root + f"_shiny{suffix}.mrcs", root + f"_shiny{suffix}.star"]
    return all(os.path.exists(f) for f in files)


def _cc_crop(n: int, init: np.ndarray) -> int | None:
    """Crop the CC maps to a window that holds the initial tracks plus a margin (memory); None = full."""
    if n <= 128:
        return None
    extent = int(np.ceil(np.abs(init).max())) if init.size else 0
    m = 2 * (extent + 24)
    return None if m >= n else m


def prepare_frames_inplace(frames: np.ndarray, do_whiten: bool, batch: int = 16) -> np.ndarray | None:
    """Normalise (and whiten) particle frames in place; returns sigma2 or None.

    Same result as ``whiten(normalize_particle_frames(frames), noise_sigma2(...))`` on the whole array
    without a second and third full-size copy of the frames (memory: ALGORITHMS 1.5-1.6, issue 6);
    see :func:`polishplugin.core.motion.prepare.normalize_whiten_inplace`.
    """
    from ..core.motion.prepare import normalize_whiten_inplace

    return normalize_whiten_inplace(frames, do_whiten, batch)


def estimate_micrograph_tracks(data, settings: PolishSettings, first_frame: int):
    """Fitted tracks (n_p, n_f, 2) in particle px and the whitened, normalised frames (for the FCC).

    ``data.frames_rfft`` is normalised and whitened in place (the raw frames are not needed again:
    recombination re-reads the movie).
    """
    from ..core.dose import dose_weights
    from ..core.motion.cross_correlation import cc_maps, cc_origin
    from ..core.motion.estimate import fit_tracks, sigmas_to_pixels
    from ..core.motion.prepare import whiten

    n = data.box
    n_p, n_f = data.frames_rfft.shape[:2]
    frames = data.frames_rfft
    sigma2 = prepare_frames_inplace(frames, settings.whiten)
    pred = whiten(data.pred_own_rfft, sigma2, n) if settings.whiten else data.pred_own_rfft
    a, b, c = settings.dmg
    weights = dose_weights(n_f, n, data.angpix, data.dose_per_frame, first_frame, a, b, c).astype(np.float32)
    init = data.initial_tracks_px
    crop = None if settings.global_init else _cc_crop(n, init)
    cc = cc_maps(frames, pred, weights, crop_px=crop, backend=settings.backend)
    origin = cc_origin(cc.shape, crop is not None)
    if settings.global_init:  # --gi: all particles start on the sub-pixel maximum of the summed CC
        from ..core.motion.initial_tracks import global_track_from_cc

        init = np.broadcast_to(global_track_from_cc(cc, origin)[None], init.shape).copy()
    sv, sd, sa = sigmas_to_pixels(settings.s_vel, settings.s_div, settings.s_acc, data.dose_per_frame,
                                  data.angpix, data.coords_angpix, absolute=settings.absolute)
    tracks = fit_tracks(cc, init, data.positions_px, max(sv, 1e-20), max(sd, 1e-20), sa,
                        max_iters=settings.max_iters, eps=settings.eps, cc_origin=origin,
                        sq_exp=settings.sq_exp, max_ed=settings.max_ed, backend=settings.fit_backend).tracks_px
    return tracks, frames


def motion_micrograph(project, mic_index: int, out_dir: str, settings: PolishSettings,
                      tracks_override: np.ndarray | None = None) -> np.ndarray:
    """Fit one micrograph's tracks, write ``_tracks.star`` and the ``_FCC_*.mrc`` tables; return tracks (px).

    ``tracks_override`` (n_p, n_f, 2) skips the fit (tests use the simulator's true tracks).
    """
    from ..core.polish.fcc import accumulate_fcc
    from ._polish_io import load_micrograph, write_tracks

    data = load_micrograph(project, mic_index, reuse_buffer=True)  # one micrograph at a time
    ref = project.reference
    if tracks_override is None:
        tracks, frames = estimate_micrograph_tracks(data, settings, project.first_frame)
    else:
        tracks = np.asarray(tracks_override, np.float64)
        frames = data.frames_rfft
        prepare_frames_inplace(frames, settings.whiten)
    cc, w0, w1 = accumulate_fcc(frames, tracks, data.pred_opposite_rfft, ref.box, ref.angpix, data.angpix)
    root = str(_roots(out_dir, data.name))
    Path(root).parent.mkdir(parents=True, exist_ok=True)
    write_mrc(root + "_FCC_cc.mrc", cc.astype(np.float32), ref.angpix)
    write_mrc(root + "_FCC_w0.mrc", w0.astype(np.float32), ref.angpix)
    write_mrc(root + "_FCC_w1.mrc", w1.astype(np.float32), ref.angpix)
    write_tracks(root + "_tracks.star", tracks, data.angpix)  # last: marks the motion stage as done
    return tracks


def fit_bfactors_from_files(out_dir: str, names: list[str], box_ref: int, angpix_ref: float, k_out: int,
                            bfac_minfreq: float, bfac_maxfreq: float):
    """Sum the FCC tables of ``names`` and fit per-frame (sigma, a); returns (sigma, a, B, lnk, fcc, k0, k1)."""
    from ..core.polish.bfactors import bk_to_bfactors, fit_bk_factors, fit_range
    from ..core.polish.fcc import fcc_from_tables

    tot = None
    for name in names:
        root = str(_roots(out_dir, name))
        tabs = []
        for part in ("cc", "w0", "w1"):
            path = root + f"_FCC_{part}.mrc"
            if not os.path.exists(path):
                break
            arr, _ = read_mrc(path, check_finite=False)
            tabs.append(np.nan_to_num(arr.astype(np.float64).reshape(arr.shape[-2:])))
        if len(tabs) != 3:
            continue
        tot = tabs if tot is None else [t + u for t, u in zip(tot, tabs)]
    if tot is None:
        raise ProgramError(f"no FCC tables found in {out_dir}; cannot fit per-frame B-factors")
    fcc = fcc_from_tables(*tot)
    k0, k1 = fit_range(box_ref, angpix_ref, k_out, bfac_minfreq, bfac_maxfreq)
    if k1 <= k0 + 1:
        raise ProgramError(f"B-factor fit range is empty: shells {k0} to {k1} (--bfac_minfreq {bfac_minfreq} Å, "
                           f"--bfac_maxfreq {bfac_maxfreq} Å)")
    sig, amp, _ = fit_bk_factors(fcc, k0, k1)
    b, lk = bk_to_bfactors(sig, amp, box_ref, angpix_ref)
    return sig, amp, b, lk, fcc, k0, k1


def write_bfactors_star(path: str, bfac: np.ndarray, lnk: np.ndarray) -> None:
    """``bfactors.star`` / ``data_perframe_bfactors`` (frame numbers 0-based, as RELION)."""
    write_star(path, {"perframe_bfactors": pd.DataFrame({
        L.MOVIE_FRAME_NUMBER: np.arange(len(bfac)), L.BFACTOR_USED_FOR_SHARPENING: np.asarray(bfac, np.float64),
        L.FITTED_INTERCEPT_GUINIER_PLOT: np.asarray(lnk, np.float64)})})


def read_bfactors_star(path: str) -> tuple[np.ndarray, np.ndarray]:
    blocks = read_star(path)
    t = blocks.get("perframe_bfactors", list(blocks.values())[-1])
    for lab in (L.BFACTOR_USED_FOR_SHARPENING, L.FITTED_INTERCEPT_GUINIER_PLOT):
        if lab not in t.columns:
            raise ProgramError(f"B-factor STAR file {path} has no {lab} column")
    return (np.asarray(t[L.BFACTOR_USED_FOR_SHARPENING], np.float64),
            np.asarray(t[L.FITTED_INTERCEPT_GUINIER_PLOT], np.float64))


def recombine_micrograph(project, mic_index: int, out_dir: str, sigma: np.ndarray, amp: np.ndarray,
                         window: int = -1, scale: int = -1, float16: bool = False, suffix: str = "",
                         tracks_px: np.ndarray | None = None) -> pd.DataFrame:
    """Second movie pass: weighted, motion-corrected sum per particle -> ``<root>_shiny.mrcs/.star``.

    Frames are re-extracted at coordinate + integer part of the track (movie px) and shifted by the
    sub-pixel residual in Fourier space (RELION ``FrameRecombiner::process``).  Returns the
    micrograph's particle table with the new ``rlnImageName``.
    """
    from ..core.fourier import irfft
    from ..core.polish.shift import shift_phase_2d
    from ..core.polish.recombine import frame_weights, normalize_shiny, output_geometry
    from ._polish_io import (box_origins, coords_pixel_size, extract_boxes, iter_movie_frames, read_tracks)

    ref = project.reference
    info = project.movie_infos[mic_index]
    rows = project.mic_rows[mic_index]
    name = project.mic_names[mic_index]
    df = project.particles.iloc[rows].copy()
    s_mov, s_out, angpix_out = output_geometry(ref.box, ref.angpix, info.movie_angpix, window, scale)
    if s_out > s_mov:
        raise ProgramError(f"--scale {s_out} is larger than the extraction box {s_mov}: scaling up is not supported")
    root = str(_roots(out_dir, name))
    if tracks_px is None:
        tracks_out = read_tracks(root + "_tracks.star", angpix_out)
    else:
        tracks_out = np.asarray(tracks_px, np.float64) * ref.angpix / angpix_out
    weights = frame_weights(sigma, amp, s_out, angpix_out, ref.box, ref.angpix)
    coords = np.stack([np.asarray(df[L.COORDINATE_X], np.float64), np.asarray(df[L.COORDINATE_Y], np.float64)], -1)
    cps = coords_pixel_size(project, info)
    base = box_origins(coords, cps, angpix_out, info.movie_angpix, s_mov)
    n_p, n_f = len(rows), project.n_frames
    acc = np.zeros((n_p, s_out, s_out // 2 + 1), np.complex64)
    for f, frame in iter_movie_frames(info, project.first_frame, n_f):
        dm = tracks_out[:, f] * angpix_out / info.movie_angpix  # movie px
        dm_int = np.sign(dm) * np.floor(np.abs(dm) + 0.5)
        residual = (dm - dm_int) * info.movie_angpix / angpix_out  # output px
        boxes = extract_boxes(frame, base + dm_int.astype(np.int64), s_mov, s_out)
        boxes *= shift_phase_2d(s_out, -residual)  # move the sub-pixel rest back
        boxes *= weights[f][None]
        acc += boxes
    Path(root).parent.mkdir(parents=True, exist_ok=True)
    stack = root + f"_shiny{suffix}.mrcs"
    with MrcStackWriter(stack, n_p, s_out, angpix_out, float16=float16) as w:
        for p in range(n_p):
            w[p] = irfft(normalize_shiny(acc[p]), (s_out, s_out)).astype(np.float32)
    df[L.IMAGE_NAME] = [f"{p + 1}@{stack}" for p in range(n_p)]  # RELION: unpadded index
    optics = project.optics[project.optics[L.OPTICS_GROUP].isin(np.unique(df[L.OPTICS_GROUP]))].copy()
    optics[L.IMAGE_PIXEL_SIZE] = angpix_out
    optics[L.IMAGE_SIZE] = s_out
    write_star(root + f"_shiny{suffix}.star", {"optics": optics, "particles": df.reset_index(drop=True)})
    return df


# ------------------------------------------------------------------------------------------- merging
def combine_outputs(project, out_dir: str, names: list[str], suffix: str = "") -> Path:
    """``shiny.star`` = optics (updated pixel size/box) + concatenation of the per-micrograph shiny tables."""
    parts, optics = [], None
    for name in names:
        path = str(_roots(out_dir, name)) + f"_shiny{suffix}.star"
        if not os.path.exists(path):
            log.warning("micrograph %s has no shiny particles (%s missing); left out of shiny.star", name, path)
            continue
        b = read_star(path)
        parts.append(b["particles"])
        optics = b["optics"] if optics is None else pd.concat([optics, b["optics"]]).drop_duplicates(L.OPTICS_GROUP)
    if not parts:
        raise ProgramError(f"no shiny particles were written in {out_dir}")
    particles = pd.concat(parts, ignore_index=True)
    used = set(np.unique(particles[L.OPTICS_GROUP]).tolist())
    dropped = set(project.optics[L.OPTICS_GROUP].tolist()) - used
    if dropped:
        log.warning("optics groups %s have no processed micrographs; removed from shiny.star", sorted(dropped))
    out = Path(out_dir) / "shiny.star"
    write_star(out, {"optics": optics.sort_values(L.OPTICS_GROUP).reset_index(drop=True), "particles": particles})
    return out


def _frame_weights_on_leader(args, project, names: list[str], out_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (sigma, a): fitted on all FCC tables (or from --bfactors); writes bfactors.star."""
    ref = project.reference
    if args.bfactors:
        from ..core.polish.bfactors import bfactors_to_sigmas

        b, lk = read_bfactors_star(args.bfactors)
        if len(b) != project.n_frames:
            raise ProgramError(f"B-factor file {args.bfactors} has {len(b)} frames; the movies have "
                               f"{project.n_frames}")
        sig, amp = bfactors_to_sigmas(b, lk, ref.box, ref.angpix)
    else:
        sig, amp, b, lk, _, k0, k1 = fit_bfactors_from_files(out_dir, names, ref.box, ref.angpix, ref.k_out,
                                                            args.bfac_minfreq, args.bfac_maxfreq)
        log.info("per-frame B-factors fitted on shells %d..%d: %s", k0, k1 - 1, " ".join(f"{v:.1f}" for v in b))
    write_bfactors_star(os.path.join(out_dir, "bfactors.star"), b, lk)
    return sig, amp


def _log_progress(done: int, total: int, start: float, what: str) -> None:
    el = time.time() - start
    eta = el / max(done, 1) * (total - done)
    log.info("%s: %d / %d micrographs done (%.1f s elapsed, ETA %.0f s)", what, done, total, el, eta)


def _sync(comm, error: Exception | None) -> None:
    """Barrier that also shares failures: if any rank failed, every rank raises (no rank hangs waiting)."""
    errors = comm.allgather(None if error is None else f"{error}")
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if error is not None:
        raise error
    if failed:
        raise ProgramError(f"MPI rank {failed[0][0]} failed: {failed[0][1]}")


def main(args) -> int:
    from ._polish_io import load_project

    comm = get_comm()
    if getattr(args, "cc_pad", 1.0) != 1.0:
        raise ProgramError("--cc_pad other than 1 is not supported")
    out_dir = args.o.rstrip("/") or "."
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    project = load_project(args)
    dev = getattr(args, "device", "") or ""
    if dev and dev != "cpu":
        from ..core.opencl.runtime import ENV_DEVICE, OpenCLUnavailable, get_context, opencl_available

        if not opencl_available():
            raise ProgramError(f"--device {dev}: no OpenCL platform/device found (use --device cpu for numpy)")
        try:
            get_context(dev)
        except OpenCLUnavailable as exc:
            raise ProgramError(f"--device {dev}: {exc}") from None
        os.environ[ENV_DEVICE] = dev  # the OpenCL runtime picks this device
    project.backend = "numpy" if dev == "cpu" else ("opencl" if dev else "auto")
    if args.params3 or args.params2:
        # training splits its micrographs over ranks and sums the held-out score (run_training)
        from .motion_train import run_training

        return int(run_training(args, project) or 0)
    settings = PolishSettings(args)
    n_mics = len(project.mic_names)
    lo = max(0, int(args.min_MG))
    hi = n_mics - 1 if args.max_MG < 0 else min(n_mics - 1, int(args.max_MG))
    mic_ids = list(range(lo, hi + 1))
    if comm.is_leader:
        log.info("polishing %d micrographs, %d particles, %d frames; s_vel %g s_div %g s_acc %g; %d rank(s)",
                 len(mic_ids), sum(len(project.mic_rows[i]) for i in mic_ids), project.n_frames,
                 settings.s_vel, settings.s_div, settings.s_acc, comm.size)
    mine = [mic_ids[i] for i in partition(len(mic_ids), comm.size, comm.rank)]
    suffix = args.suffix
    todo_motion = [i for i in mine if not (args.only_do_unfinished and micrograph_outputs_exist(
        out_dir, project.mic_names[i], args.combine_frames, suffix))]
    start = time.time()
    error = None
    try:
        for k, i in enumerate(todo_motion):
            motion_micrograph(project, i, out_dir, settings)
            if comm.is_leader or comm.size == 1:
                _log_progress(k + 1, len(todo_motion), start, "motion")
    except Exception as exc:  # noqa: BLE001 - re-raised by _sync after telling the other ranks
        error = exc
    _sync(comm, error)
    if not args.combine_frames:
        if comm.is_leader:
            log.info("tracks written (no --combine_frames: no shiny particles)")
        return 0
    result: tuple | str | None = None
    if comm.is_leader:
        try:
            result = _frame_weights_on_leader(args, project, [project.mic_names[i] for i in mic_ids], out_dir)
        except Exception as exc:  # noqa: BLE001 - shared with the other ranks below, then re-raised
            if comm.size == 1:
                raise
            result = f"{exc}"
    result = comm.bcast(result)
    if isinstance(result, str):
        raise ProgramError(result)
    sig, amp = result
    todo_rec = [i for i in mine if not (args.only_do_unfinished and os.path.exists(
        str(_roots(out_dir, project.mic_names[i])) + f"_shiny{suffix}.star") and i not in todo_motion)]
    start = time.time()
    error = None
    try:
        for k, i in enumerate(todo_rec):
            recombine_micrograph(project, i, out_dir, sig, amp, args.window, args.scale, args.float16, suffix)
            if comm.is_leader or comm.size == 1:
                _log_progress(k + 1, len(todo_rec), start, "recombination")
    except Exception as exc:  # noqa: BLE001 - re-raised by _sync after telling the other ranks
        error = exc
    _sync(comm, error)
    if comm.is_leader:
        names = [project.mic_names[i] for i in mic_ids]
        out = combine_outputs(project, out_dir, names, suffix)
        try:
            from ..plots.polish import write_logfile

            write_logfile(out_dir, names, project)
        except Exception as exc:  # plots are a convenience; never fail the run for them
            log.warning("logfile.pdf not written: %s", exc)
        log.info("wrote %s", out)
    return 0
