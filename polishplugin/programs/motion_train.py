"""Training of the Bayesian-polishing sigmas (tutorial step 25): s_vel, s_div and s_acc for motion_refine.

Finds the sigmas of the motion prior (velocity, divergence, acceleration; --params2: s_vel and s_div only,
s_acc stays at --s_acc_0) whose fitted tracks best predict held-out high frequencies (TSC; ALGORITHMS 1.14).
`polishplugin motion_refine --params3` (or --params2), RELION's spelling, runs this same program; the
options are relion_motion_refine's.

Work: choose micrographs like RELION (glibc srand(seed), ascending random keys, >= 2 particles, until
--min_p particles), precompute per micrograph the whitened CC maps for frequencies below k_cutoff and the
held-out ring k_eval+2 <= r < k_out, then search (s_vel, s_div, s_acc) maximising the TSC
(polishplugin.core.motion.training and .hyperparameters).  What makes it fast (issue 7):
  * the CC maps are computed once and kept only within --fit_window px of each particle-frame's start
    (RELION keeps +-mot_range); only those windows are inverse-transformed;
  * every evaluation refits all training micrographs, warm-started from the fit at the best parameters so
    far, jointly in groups of about --joint_particles particles (polishplugin.core.motion.joint);
  * the map interpolation and the TSC run on the OpenCL device when there is one;
  * a model-based search needs 15-30 evaluations where RELION's simplex needs 50-100;
  * groups (not micrographs) are spread over MPI ranks and the TSC sums are all-reduced in a fixed order,
    so the result does not depend on the number of ranks.

Outputs (in --o): opt_params_all_groups.txt (opt_params_group_<optics group name>.txt with --par_group, as
RELION names it) and opt_params.txt (the same line "s_vel s_div s_acc", RELION rounding) and tsc_trace.star
(every evaluation).
MPI (mpirun -n N polishplugin motion_train ...) splits the groups of micrographs over ranks.

Example (RELION tutorial, step 25):
  polishplugin motion_train --i Refine3D/job029/run_data.star --f PostProcess/job030/postprocess.star \\
      --corr_mic MotionCorr/job002/corrected_micrographs.star --first_frame 1 --last_frame -1 \\
      --o Polish/job027/ --min_p 5000 --eval_frac 0.5 --align_frac 0.5 --params3
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.motion.hyperparameters import SearchResult, search_sigmas
from ..core.motion.training import TrainingSet, fit_groups, prepare_micrograph, select_micrographs
from ..core.motion.tsc import frequency_split
from ..io import labels as L
from ..io.polish import OptParams, TscTrace, write_opt_params, write_tsc_trace
from ._cli import ProgramError
from ._mpi import get_comm, partition
from ._polish_project import (add_general_args, add_motion_args, add_reference_args, choose_device, load_micrograph,
                              prepare_run)

__all__ = ["add_args", "add_training_args", "main", "run_training"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ arguments
def add_training_args(parser: argparse.ArgumentParser) -> None:
    t = parser.add_argument_group("Parameter estimation (training)")
    t.add_argument("--params2", action="store_true", help="Estimate s_vel and s_div (s_acc stays at --s_acc_0)")
    t.add_argument("--params3", action="store_true",
                   help="Estimate s_vel, s_div and s_acc (motion_train does this without the flag; motion_refine "
                        "trains only with --params3 or --params2)")
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


def add_args(parser: argparse.ArgumentParser) -> None:
    add_general_args(parser)
    add_reference_args(parser)
    add_motion_args(parser)
    add_training_args(parser)


def main(args) -> int:
    project = prepare_run(args)
    # training splits its micrographs over ranks and sums the held-out score (run_training)
    return int(run_training(args, project) or 0)


# ------------------------------------------------------------------------------------------ options
def _opt(args, name, default):
    v = getattr(args, name, None)
    return default if v is None else v


@dataclass
class _Options:
    """The training's settings from the arguments (``args`` may be a plain namespace: defaults fill in)."""

    eval_frac: float
    align_frac: float
    two: bool                # --params2 (and not --params3): s_acc is not trained
    min_p: int
    seed: int
    start: tuple[float, float, float]
    mot_range: int
    window: int
    max_iters: int
    eps: float
    absolute: bool
    whiten: bool
    warm: bool
    joint_particles: int
    conv: float
    max_evals: int
    out_dir: Path


def _options(args) -> _Options:
    eval_frac = float(_opt(args, "eval_frac", 0.5))
    align_frac = float(_opt(args, "align_frac", 0.5))
    if not (0.1 < eval_frac <= 0.9):
        raise ProgramError(f"--eval_frac {eval_frac:g} is outside (0.1, 0.9]: it is the fraction of Fourier "
                           "pixels held out for testing")
    if not (0.0 < align_frac < 1.0):
        raise ProgramError(f"--align_frac {align_frac:g} is outside (0, 1)")
    given = int(_opt(args, "max_evals", 0) or 0)  # else 3 x --par_iters, at most 100 (RELION's Nelder-Mead
    max_evals = given if given > 0 else max(10, min(3 * int(_opt(args, "par_iters", 100)), 100))  # ~1-2 per iter)
    return _Options(
        eval_frac, align_frac, two=bool(_opt(args, "params2", False)) and not bool(_opt(args, "params3", False)),
        min_p=int(_opt(args, "min_p", 1000)), seed=int(_opt(args, "seed", 23)),
        start=(float(_opt(args, "s_vel_0", 0.6)), float(_opt(args, "s_div_0", 10000.0)),
               float(_opt(args, "s_acc_0", 3.0))),
        mot_range=int(_opt(args, "mot_range", 50)), window=int(_opt(args, "fit_window", 24)),
        max_iters=int(_opt(args, "max_iters", 10000)), eps=float(_opt(args, "eps", 1e-5)),
        absolute=bool(_opt(args, "absolute_params", False)), whiten=not bool(_opt(args, "no_whiten", False)),
        warm=not bool(_opt(args, "no_warm_start", False)), joint_particles=int(_opt(args, "joint_particles", 1000)),
        conv=float(_opt(args, "conv", 30.0)), max_evals=max_evals, out_dir=Path(_opt(args, "o", ".")))


def _data_source(data, args, k_out):
    """(n_particles per micrograph, loader(i), k_out per micrograph in its particle-box px, first_frame, names,
    optics group per micrograph).

    ``data`` is the :class:`~._polish_project.PolishProject` of ``prepare_run(args)`` (micrographs are loaded
    with ``load_micrograph``; optics groups may differ in pixel size and box: each micrograph's frequencies are
    its own; ``--par_group`` keeps one group) or, for tests, a sequence of micrograph objects with the
    ``MicrographData`` fields (``positions_px, frames_rfft, pred_own_rfft, pred_opposite_rfft,
    initial_tracks_px, dose_per_frame, angpix, coords_angpix, box, name``) plus ``k_out=`` (held-out frequency
    limit in particle-box pixels).
    """
    if hasattr(data, "mic_rows"):  # a PolishProject
        project = data
        ref = project.reference
        only = int(_opt(args, "par_group", -1))
        counts, k_outs, groups, r_max = [], [], [], 0.0
        for rows in project.mic_rows:
            group = int(project.particles[L.OPTICS_GROUP].iloc[rows[0]])
            opt = project.optics_row(group)
            box, angpix = int(opt[L.IMAGE_SIZE]), float(opt[L.IMAGE_PIXEL_SIZE])
            ratio = (box * angpix) / (ref.box * ref.angpix)  # reference px -> this group's px
            k = k_out if k_out is not None else int(round(ref.k_out * ratio))
            counts.append(len(rows) if only < 0 or group == only else 0)  # < 2 particles: never chosen
            k_outs.append(int(k))
            groups.append(group)
            r_max = max(r_max, k / ratio + 2.0)
        if only >= 0 and only not in groups:
            raise ProgramError(f"--par_group {only}: no micrograph of {project.particle_star} is in optics group "
                               f"{only} (groups {sorted(set(groups))})")
        # training never looks above k_out: project only up to there (in reference pixels, with a margin)
        ref.r_max_px = min(ref.box / 2.0, r_max)
        return (counts, (lambda i: load_micrograph(project, i, reuse_buffer=True)), k_outs, int(project.first_frame),
                list(project.mic_names), groups)
    mics = list(data)
    if k_out is None:
        k_out = getattr(args, "k_out", None)
    if k_out is None:
        raise ProgramError("training data: no k_out (FSC cut-off) was given")
    counts = [int(np.asarray(m.positions_px).shape[0]) for m in mics]
    first = int(getattr(mics[0], "first_frame", 0)) if mics else 0
    return (counts, (lambda i: mics[i]), [int(k_out)] * len(mics), first,
            [str(getattr(m, "name", i)) for i, m in enumerate(mics)], [1] * len(mics))


# ------------------------------------------------------------------------------------------ training
def run_training(args, data, k_out: int | None = None) -> int:
    """Train (s_vel, s_div, s_acc) and write the parameter files (see module docstring). Returns 0.

    BLAS/LAPACK run on one thread throughout (:func:`~polishplugin.core.motion.joint.one_blas_thread`), so the
    result does not depend on how many threads or ranks a run has."""
    from ..core.motion.joint import one_blas_thread

    with one_blas_thread():
        return _run_training(args, data, k_out)


def _choose_micrographs(counts: list[int], opt: _Options) -> tuple[list[int], int]:
    chosen, n_total = select_micrographs(counts, opt.min_p, opt.seed)
    if not chosen:
        raise ProgramError("training needs at least one micrograph with 2 or more particles; none was found")
    if n_total < opt.min_p:
        log.warning("WARNING: only %d particles in micrographs with >= 2 particles, fewer than --min_p %d: "
                    "using all of them", n_total, opt.min_p)
    return chosen, n_total


def _frequencies(k_outs: list[int], opt: _Options, chosen: list[int], n_total: int) -> list[tuple[int, int, int]]:
    """``(k_cutoff, k_eval, k_out)`` per micrograph: alignment below k_cutoff, evaluation ``k_eval+2 <= k < k_out``
    (each in its own particle-box pixels)."""
    out = []
    for k_out_px in k_outs:
        k_cutoff, k_eval = frequency_split(k_out_px, opt.align_frac, opt.eval_frac)
        out.append((k_cutoff, k_eval, k_out_px))
    for k_cutoff, k_eval, k_out_px in sorted({out[i] for i in chosen}):
        log.info("training on %d micrographs, %d particles; k_out %d, alignment k < %d, evaluation %d <= k < %d",
                 len(chosen), n_total, k_out_px, k_cutoff, k_eval + 2, k_out_px)
        if k_eval + 2 >= k_out_px:
            raise ProgramError(f"the FSC cut-off (k_out = {k_out_px} px) leaves no held-out frequencies; "
                               "lower --eval_frac or use a better reference")
    return out


def _fit_groups(counts: list[int], optics: list[int], chosen: list[int], joint_particles: int) -> list[list[int]]:
    """Groups of chosen micrographs (positions in ``chosen``) fitted jointly: never across optics groups
    (their CC maps and sigmas in pixels differ), about ``joint_particles`` particles each."""
    groups: list[list[int]] = []
    for g in sorted({optics[i] for i in chosen}):
        pos = [j for j, i in enumerate(chosen) if optics[i] == g]
        groups += [[pos[k] for k in grp] for grp in fit_groups([counts[chosen[j]] for j in pos], joint_particles)]
    return groups


def _training_set(args, opt: _Options, comm, chosen: list[int], counts: list[int], load, names: list[str],
                  ks: list[tuple[int, int, int]], optics: list[int], first_frame: int, inplace: bool) -> TrainingSet:
    """This rank's groups of micrographs, prepared (CC maps and held-out rings), as one TSC objective."""
    groups = _fit_groups(counts, optics, chosen, opt.joint_particles)
    my_ids = list(partition(len(groups), comm.size, comm.rank))
    my_groups = [groups[g] for g in my_ids]
    mine = [chosen[i] for g in my_groups for i in g]
    local_groups, n = [], 0
    for g in my_groups:
        local_groups.append(list(range(n, n + len(g))))
        n += len(g)
    log.info("track fits: %d group(s) of micrographs fitted jointly (about %d particles each), %d on this rank",
             len(groups), opt.joint_particles, len(my_groups))
    mics = []
    t0 = time.time()
    for j, i in enumerate(mine):
        k_cutoff, k_eval, k_out_px = ks[i]
        mics.append(prepare_micrograph(load(i), k_cutoff, k_eval, k_out_px, 2 * opt.mot_range, first_frame,
                                       opt.whiten, inplace=inplace, window_px=opt.window))
        log.info("prepared micrograph %d/%d (%s), ETA %.0f s", j + 1, len(mine), names[i],
                 (time.time() - t0) / (j + 1) * (len(mine) - j - 1))
    backend, device = choose_device(args)
    log.info("objective interpolation backend: %s", backend)
    return TrainingSet(mics, comm, max_iters=opt.max_iters, eps=opt.eps, absolute=opt.absolute, warm=opt.warm,
                       backend=backend, device=device, groups=local_groups, group_ids=my_ids)


def _chosen_params(result: SearchResult, opt: _Options, t_start: float) -> OptParams:
    """The best parameters of the search (s_acc: the start value with --params2, -1 when not positive)."""
    s_vel, s_div, s_acc = result.best
    if opt.two:
        s_acc = opt.start[2]
    elif s_acc <= 0:
        s_acc = -1.0
    if result.flat:
        log.warning("WARNING: the held-out TSC is flat over all evaluated parameters (spread < 1e-5): the data do "
                    "not constrain the sigmas; RELION's defaults are as good")
    near = [p for p, v in result.trace if v >= result.best_score - 1e-4 * abs(result.best_score)]
    if len(near) > 1:
        log.info("parameters within 0.01%% of the best TSC span s_vel %g-%g, s_div %g-%g, s_acc %g-%g",
                 *[f(p[i] for p in near) for i in range(3) for f in (min, max)])
    log.info("good parameters: --s_vel %g --s_div %g --s_acc %g (TSC %.8g, %d evaluations, %.1f s)",
             s_vel, s_div, s_acc, result.best_score, result.n_evals, time.time() - t_start)
    return OptParams(s_vel, s_div, s_acc)


def _group_name(data, args) -> str | None:
    """The optics group name of ``--par_group`` (RELION's ``rlnOpticsGroupName``, else ``opticsGroup<N>``);
    None when every group is trained (or for test data without a project)."""
    only = int(_opt(args, "par_group", -1))
    if only < 0 or not hasattr(data, "mic_rows"):
        return None
    name = data.optics_row(only).get(L.OPTICS_GROUP_NAME)
    return str(name) if name is not None and str(name).strip() else f"opticsGroup{only}"


def _write_outputs(out_dir: Path, params: OptParams, result: SearchResult, n_micrographs: int,
                   n_particles: int, group_name: str | None = None) -> None:
    """RELION's ``opt_params_all_groups.txt`` (``opt_params_group_<name>.txt`` with --par_group), the
    tutorial's ``opt_params.txt`` (the same line) and ``tsc_trace.star``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    relion_name = "opt_params_all_groups.txt" if group_name is None else f"opt_params_group_{group_name}.txt"
    write_opt_params(out_dir / relion_name, params)
    write_opt_params(out_dir / "opt_params.txt", params)
    log.info("written to %s", out_dir / relion_name)
    evaluations = pd.DataFrame({"evaluation": np.arange(1, len(result.trace) + 1),
                                "s_vel": [p[0] for p, _ in result.trace], "s_div": [p[1] for p, _ in result.trace],
                                "s_acc": [p[2] for p, _ in result.trace], "tsc": [v for _, v in result.trace]})
    write_tsc_trace(out_dir / "tsc_trace.star", TscTrace(evaluations, params, result.best_score, result.flat,
                                                         n_micrographs, n_particles))


def _run_training(args, data, k_out: int | None = None) -> int:
    t_start = time.time()
    comm = get_comm()
    opt = _options(args)
    counts, load, k_outs, first_frame, names, optics = _data_source(data, args, k_out)
    chosen, n_total = _choose_micrographs(counts, opt)
    ks = _frequencies(k_outs, opt, chosen, n_total)
    tset = _training_set(args, opt, comm, chosen, counts, load, names, ks, optics, first_frame,
                         inplace=hasattr(data, "mic_rows"))  # loaded per call: normalise in place
    # --conv sets RELION's output grid (conv/2 scaled units); --in_step is not used: our search starts
    # with a x2 trust region in log space
    result = search_sigmas(tset.evaluate_and_keep, opt.start, free=(True, True, not opt.two),
                           max_evals=opt.max_evals, conv=opt.conv)
    params = _chosen_params(result, opt, t_start)
    if comm.is_leader:
        _write_outputs(opt.out_dir, params, result, len(chosen), n_total, _group_name(data, args))
    comm.barrier()
    return 0
