"""Bayesian polishing: per-particle motion tracks, per-frame B-factors and shiny particles (relion_motion_refine).

Polishing mode (tutorial step 26): for every micrograph, extract the particles from each movie frame, fit
per-particle tracks under a Gaussian-process prior (--s_vel, --s_div, --s_acc or --params_file),
accumulate per-frame FCCs, then (with --combine_frames) fit per-frame B-factors and scales on all
micrographs and write dose-weighted, motion-corrected particle stacks (shiny particles).

Training mode (--params3 / --params2, tutorial step 25): RELION's spelling of `polishplugin motion_train`
(the same program): estimate s_vel, s_div (and s_acc) and write opt_params_all_groups.txt.

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

from ..core.motion.estimate import MotionFitSettings
from ..io import labels as L
from ..io.mrc import MrcStackWriter
from ..io.particles import ParticleTable, read_particles, write_particles
from ..io.polish import (FrameBfactors, micrograph_root, read_bfactors, read_fcc_tables, read_opt_params, read_tracks,
                         write_bfactors, write_fcc_tables, write_tracks)
from ._cli import ProgramError
from ._mpi import get_comm, partition
from ._polish_project import (add_general_args, add_motion_args, add_reference_args, choose_device,
                              coords_pixel_size, load_micrograph, movie_frames, particle_coordinates, prepare_run,
                              release_buffers)
from .motion_train import add_training_args

log = logging.getLogger(__name__)

__all__ = ["add_args", "main", "motion_settings", "motion_micrograph", "recombine_micrograph",
           "fit_bfactors_from_files", "micrograph_outputs_exist"]


# ------------------------------------------------------------------------------------------ arguments
def _even(value: str) -> int:
    v = int(value)
    if v > 0 and v % 2:
        raise argparse.ArgumentTypeError(f"{v} must be even")
    return v


def add_combine_args(parser: argparse.ArgumentParser) -> None:
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


def add_args(parser: argparse.ArgumentParser) -> None:
    add_general_args(parser)
    add_reference_args(parser)
    add_motion_args(parser)
    add_training_args(parser)
    add_combine_args(parser)


def motion_settings(args) -> MotionFitSettings:
    """The track fit's settings from the arguments (sigmas from --params_file when given).

    Backends: the fit's map interpolation on OpenCL whenever a device exists (measured ~3x faster per fit
    than numpy even on PoCL's CPU device: bench/README.md "Polishing stages"), numpy with --device cpu;
    the CC maps on OpenCL only when --device names a device."""
    sigmas = (float(args.s_vel), float(args.s_div), float(args.s_acc))
    if getattr(args, "params_file", ""):
        params = read_opt_params(args.params_file)
        sigmas = (params.s_vel, params.s_div, params.s_acc)
    backend = choose_device(args)[0]
    return MotionFitSettings(
        *sigmas, max_iters=int(getattr(args, "max_iters", 10000)), eps=float(getattr(args, "eps", 1e-5)),
        whiten=not getattr(args, "no_whiten", False), absolute=bool(getattr(args, "absolute_params", False)),
        dmg=(float(getattr(args, "dmg_a", 3.40)), float(getattr(args, "dmg_b", -1.06)),
             float(getattr(args, "dmg_c", -0.54))),
        global_init=bool(getattr(args, "gi", False)), sq_exp=bool(getattr(args, "sq_exp_ker", False)),
        max_ed=int(getattr(args, "max_ed", -1)),
        cc_backend=backend if (getattr(args, "device", "") or "").strip() else "numpy", fit_backend=backend)


# ------------------------------------------------------------------------------------- per micrograph
def micrograph_outputs_exist(out_dir: str, name: str, combine: bool, suffix: str = "") -> bool:
    """True when every per-micrograph output of a finished run is present."""
    root = str(micrograph_root(out_dir, name))
    files = [root + "_tracks.star", root + "_FCC_cc.mrc", root + "_FCC_w0.mrc", root + "_FCC_w1.mrc"]
    if combine:
        files += [root + f"_shiny{suffix}.mrcs", root + f"_shiny{suffix}.star"]
    return all(os.path.exists(f) for f in files)


def motion_micrograph(project, mic_index: int, out_dir: str, settings: MotionFitSettings,
                      tracks_override: np.ndarray | None = None) -> np.ndarray:
    """Fit one micrograph's tracks, write ``_tracks.star`` and the ``_FCC_*.mrc`` tables; return tracks (px).

    ``tracks_override`` (n_p, n_f, 2) skips the fit (tests use the simulator's true tracks).
    """
    from ..core.motion.estimate import polish_tracks
    from ..core.motion.prepare import normalize_whiten_inplace
    from ..core.polish.fcc import accumulate_fcc

    data = load_micrograph(project, mic_index, reuse_buffer=True)  # one micrograph at a time
    ref = project.reference
    if tracks_override is None:  # the frames are normalised and whitened in place (the FCC uses them)
        tracks = polish_tracks(data.frames_rfft, data.pred_own_rfft, data.initial_tracks_px, data.positions_px,
                               data.dose_per_frame, data.angpix, data.coords_angpix, project.first_frame, settings)
    else:
        tracks = np.asarray(tracks_override, np.float64)
        normalize_whiten_inplace(data.frames_rfft, settings.whiten)
    tables = accumulate_fcc(data.frames_rfft, tracks, data.pred_opposite_rfft, ref.box, ref.angpix, data.angpix)
    root = micrograph_root(out_dir, data.name)
    root.parent.mkdir(parents=True, exist_ok=True)
    write_fcc_tables(root, tables, ref.angpix)
    write_tracks(f"{root}_tracks.star", tracks, data.angpix)  # last: marks the motion stage as done
    return tracks


def fit_bfactors_from_files(out_dir: str, names: list[str], box_ref: int, angpix_ref: float, k_out: int,
                            bfac_minfreq: float, bfac_maxfreq: float):
    """Sum the FCC tables of ``names`` and fit per-frame (sigma, a); returns (sigma, a, B, lnk, fcc, k0, k1)."""
    from ..core.polish.bfactors import bk_to_bfactors, fit_bk_factors, fit_range
    from ..core.polish.fcc import fcc_from_tables

    tot = None
    for name in names:
        tables = read_fcc_tables(micrograph_root(out_dir, name))
        if tables is None:
            continue
        tables = [np.nan_to_num(t) for t in tables]
        tot = tables if tot is None else [t + u for t, u in zip(tot, tables)]
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


def recombine_micrograph(project, mic_index: int, out_dir: str, sigma: np.ndarray, amp: np.ndarray,
                         window: int = -1, scale: int = -1, float16: bool = False, suffix: str = "",
                         tracks_px: np.ndarray | None = None) -> pd.DataFrame:
    """Second movie pass: weighted, motion-corrected sum per particle -> ``<root>_shiny.mrcs/.star``.

    Frames are re-extracted at coordinate + integer part of the track (movie px) and shifted by the
    sub-pixel residual in Fourier space (RELION ``FrameRecombiner::process``).  Returns the
    micrograph's particle table with the new ``rlnImageName``.
    """
    from ..core.fourier import irfft
    from ..core.polish.extract import box_origins
    from ..core.polish.recombine import frame_weights, normalize_shiny, output_geometry, recombine_frames

    ref = project.reference
    movie = project.movies[mic_index]
    movie_angpix = float(movie.original_pixel_size_a)
    df = project.particles.iloc[project.mic_rows[mic_index]].copy()
    s_mov, s_out, angpix_out = output_geometry(ref.box, ref.angpix, movie_angpix, window, scale)
    if s_out > s_mov:
        raise ProgramError(f"--scale {s_out} is larger than the extraction box {s_mov}: scaling up is not supported")
    root = str(micrograph_root(out_dir, project.mic_names[mic_index]))
    if tracks_px is None:
        tracks_out = read_tracks(root + "_tracks.star", angpix_out)
    else:
        tracks_out = np.asarray(tracks_px, np.float64) * ref.angpix / angpix_out
    base = box_origins(particle_coordinates(project, mic_index), coords_pixel_size(project, movie), angpix_out,
                       movie_angpix, s_mov)
    frames = movie_frames(project, mic_index, project.first_frame, project.n_frames)
    acc = recombine_frames(frames, base, tracks_out, frame_weights(sigma, amp, s_out, angpix_out, ref.box, ref.angpix),
                           s_mov, s_out, angpix_out, movie_angpix)
    Path(root).parent.mkdir(parents=True, exist_ok=True)
    stack = root + f"_shiny{suffix}.mrcs"
    with MrcStackWriter(stack, len(df), s_out, angpix_out, float16=float16) as w:
        for p in range(len(df)):
            w[p] = irfft(normalize_shiny(acc[p]), (s_out, s_out)).astype(np.float32)
    df[L.IMAGE_NAME] = [f"{p + 1}@{stack}" for p in range(len(df))]  # RELION: unpadded index
    optics = project.optics[project.optics[L.OPTICS_GROUP].isin(np.unique(df[L.OPTICS_GROUP]))].copy()
    optics[L.IMAGE_PIXEL_SIZE] = angpix_out
    optics[L.IMAGE_SIZE] = s_out
    write_particles(root + f"_shiny{suffix}.star", ParticleTable(optics, df.reset_index(drop=True)))
    return df


# ------------------------------------------------------------------------------------------- merging
def combine_outputs(project, out_dir: str, names: list[str], suffix: str = "") -> Path:
    """``shiny.star`` = optics (updated pixel size/box) + concatenation of the per-micrograph shiny tables."""
    parts, optics = [], None
    for name in names:
        path = str(micrograph_root(out_dir, name)) + f"_shiny{suffix}.star"
        if not os.path.exists(path):
            log.warning("micrograph %s has no shiny particles (%s missing); left out of shiny.star", name, path)
            continue
        table = read_particles(path)
        parts.append(table.particles)
        optics = table.optics if optics is None else \
            pd.concat([optics, table.optics]).drop_duplicates(L.OPTICS_GROUP)
    if not parts:
        raise ProgramError(f"no shiny particles were written in {out_dir}")
    particles = pd.concat(parts, ignore_index=True)
    used = set(np.unique(particles[L.OPTICS_GROUP]).tolist())
    dropped = set(project.optics[L.OPTICS_GROUP].tolist()) - used
    if dropped:
        log.warning("optics groups %s have no processed micrographs; removed from shiny.star", sorted(dropped))
    out = Path(out_dir) / "shiny.star"
    write_particles(out, ParticleTable(optics.sort_values(L.OPTICS_GROUP).reset_index(drop=True), particles))
    return out


def _frame_weights_on_leader(args, project, names: list[str], out_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (sigma, a): fitted on all FCC tables (or from --bfactors); writes bfactors.star."""
    ref = project.reference
    if args.bfactors:
        from ..core.polish.bfactors import bfactors_to_sigmas

        given = read_bfactors(args.bfactors)
        b, lk = given.bfactor_a2, given.log_scale
        if len(b) != project.n_frames:
            raise ProgramError(f"B-factor file {args.bfactors} has {len(b)} frames; the movies have "
                               f"{project.n_frames}")
        sig, amp = bfactors_to_sigmas(b, lk, ref.box, ref.angpix)
    else:
        sig, amp, b, lk, _, k0, k1 = fit_bfactors_from_files(out_dir, names, ref.box, ref.angpix, ref.k_out,
                                                            args.bfac_minfreq, args.bfac_maxfreq)
        log.info("per-frame B-factors fitted on shells %d..%d: %s", k0, k1 - 1, " ".join(f"{v:.1f}" for v in b))
    write_bfactors(os.path.join(out_dir, "bfactors.star"), FrameBfactors(np.arange(len(b)), b, lk))
    return sig, amp


def _shared_frame_weights(comm, args, project, names: list[str], out_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_frame_weights_on_leader` on the leader, broadcast; a failure there ends every rank."""
    result: tuple | str | None = None
    if comm.is_leader:
        try:
            result = _frame_weights_on_leader(args, project, names, out_dir)
        except Exception as exc:  # noqa: BLE001 - shared with the other ranks below, then re-raised
            if comm.size == 1:
                raise
            result = f"{exc}"
    result = comm.bcast(result)
    if isinstance(result, str):
        raise ProgramError(result)
    return result


def _sync(comm, error: Exception | None) -> None:
    """Barrier that also shares failures: if any rank failed, every rank raises (no rank hangs waiting)."""
    errors = comm.allgather(None if error is None else f"{error}")
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if error is not None:
        raise error
    if failed:
        raise ProgramError(f"MPI rank {failed[0][0]} failed: {failed[0][1]}")


def _each_micrograph(comm, mic_ids: list[int], what: str, work) -> None:
    """``work(i)`` for this rank's micrographs (progress and ETA on the leader), then :func:`_sync`."""
    start = time.time()
    error = None
    try:
        for k, i in enumerate(mic_ids):
            work(i)
            if comm.is_leader or comm.size == 1:
                el = time.time() - start
                log.info("%s: %d / %d micrographs done (%.1f s elapsed, ETA %.0f s)", what, k + 1, len(mic_ids),
                         el, el / (k + 1) * (len(mic_ids) - k - 1))
    except Exception as exc:  # noqa: BLE001 - re-raised by _sync after telling the other ranks
        error = exc
    _sync(comm, error)


def _write_logfile(project, out_dir: str, names: list[str]) -> None:
    """logfile.pdf and the PNG/EPS figures (a convenience: a failure is logged, not raised)."""
    try:
        from ..plots.polish import TracksPage, write_logfile

        pages = []
        for name in names:
            i = project.mic_names.index(name)
            movie = project.movies[i]
            cps = coords_pixel_size(project, movie)
            size = (movie.width_px * movie.original_pixel_size_a / cps,
                    movie.height_px * movie.original_pixel_size_a / cps) if movie.width_px else None
            pages.append(TracksPage(str(micrograph_root(out_dir, name)), name, particle_coordinates(project, i),
                                    cps, size))
        write_logfile(out_dir, pages)
    except Exception as exc:  # plots are a convenience; never fail the run for them
        log.warning("logfile.pdf not written: %s", exc)


def main(args) -> int:
    if args.params3 or args.params2:  # RELION's spelling of step 25: the training program
        from . import motion_train

        return motion_train.main(args)
    comm = get_comm()
    project = prepare_run(args)
    out_dir = args.o.rstrip("/") or "."
    settings = motion_settings(args)
    n_mics = len(project.mic_names)
    lo = max(0, int(args.min_MG))
    mic_ids = list(range(lo, (n_mics - 1 if args.max_MG < 0 else min(n_mics - 1, int(args.max_MG))) + 1))
    names = [project.mic_names[i] for i in mic_ids]
    if comm.is_leader:
        log.info("polishing %d micrographs, %d particles, %d frames; s_vel %g s_div %g s_acc %g; %d rank(s)",
                 len(mic_ids), sum(len(project.mic_rows[i]) for i in mic_ids), project.n_frames,
                 settings.s_vel, settings.s_div, settings.s_acc, comm.size)
    mine = [mic_ids[i] for i in partition(len(mic_ids), comm.size, comm.rank)]
    suffix = args.suffix
    todo_motion = [i for i in mine if not (args.only_do_unfinished and micrograph_outputs_exist(
        out_dir, project.mic_names[i], args.combine_frames, suffix))]
    _each_micrograph(comm, todo_motion, "motion", lambda i: motion_micrograph(project, i, out_dir, settings))
    if not args.combine_frames:
        if comm.is_leader:
            log.info("tracks written (no --combine_frames: no shiny particles)")
        return 0
    release_buffers(project)  # the recombination pass needs neither the particle frames nor the projectors
    sig, amp = _shared_frame_weights(comm, args, project, names, out_dir)
    todo_rec = [i for i in mine if not (args.only_do_unfinished and os.path.exists(
        str(micrograph_root(out_dir, project.mic_names[i])) + f"_shiny{suffix}.star") and i not in todo_motion)]
    _each_micrograph(comm, todo_rec, "recombination", lambda i: recombine_micrograph(
        project, i, out_dir, sig, amp, args.window, args.scale, args.float16, suffix))
    if comm.is_leader:
        out = combine_outputs(project, out_dir, names, suffix)
        _write_logfile(project, out_dir, names)
        log.info("wrote %s", out)
    return 0
