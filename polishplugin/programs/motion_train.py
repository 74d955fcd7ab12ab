"""Training of the polishing sigmas (``motion_refine --params3/--params2``; ALGORITHMS 1.14).

Called by :mod:`.motion_refine` as ``run_training(args, data)`` where ``data`` is either the
:class:`~._polish_io.PolishProject` from ``load_project(args)`` (micrographs are loaded with
``load_micrograph``) or, for tests, a sequence of micrograph objects with the ``MicrographData`` fields
(``positions_px, frames_rfft, pred_own_rfft, pred_opposite_rfft, initial_tracks_px, dose_per_frame,
angpix, coords_angpix, box, name``) plus ``k_out=`` (held-out frequency limit in particle-box pixels).

Work: choose micrographs like RELION (glibc ``srand(seed)``, ascending random keys, >= 2 particles, until
``--min_p`` particles), precompute per micrograph the whitened CC maps for frequencies below
``k_cutoff`` and the held-out ring ``k_eval+2 <= r < k_out``, then search (s_vel, s_div, s_acc)
maximising TSC (:mod:`polishplugin.core.motion.hyperparameters`).  What makes it fast (issue 7):

* the CC maps are computed once and kept only within ``--fit_window`` px of each particle-frame's
  start (RELION keeps +-``--mot_range``); only those windows are inverse-transformed;
* every evaluation refits all training micrographs, warm-started from the fit at the best parameters
  so far, with the micrographs fitted jointly in groups of about ``--joint_particles`` particles
  (:mod:`polishplugin.core.motion.joint`: one L-BFGS, one interpolation call and one batched basis
  product per step for the whole group; the GP eigenbasis is reused while s_div is unchanged);
* the map interpolation and the TSC run on the OpenCL device when there is one (the maps and the ring
  stay there for the whole search); the TSC walks the ring row by row with one phase per row;
* a model-based search needs 15-30 evaluations where RELION's simplex needs 50-100;
* groups (not micrographs) are spread over MPI ranks and the TSC sums are all-reduced, so the result
  does not depend on the number of ranks.

Outputs in ``--o``: ``opt_params_all_groups.txt`` and ``opt_params.txt`` (one line ``"s_vel s_div
s_acc"``, RELION rounding) and ``tsc_trace.star`` (every evaluation).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import labels as L
from ..io.star import atomic_write_text, write_star
from ..core.dose import dose_weights
from ..core.fsc import GLIBC_RAND_MAX, glibc_rand_words
from ..core.motion import prepare
from ..core.motion.cross_correlation import cc_maps, cc_origin
from ..core.motion.estimate import sigmas_to_pixels
from ..core.motion.hyperparameters import search_sigmas, format_params
from ..core.motion.tsc import (EvalRing, alignment_lowpass, frequency_split, make_eval_ring, tsc_from_terms,
                               tsc_terms)
from ._cli import ProgramError
from ._mpi import get_comm, partition

__all__ = ["run_training", "select_micrographs", "prepare_micrograph", "TrainMicrograph", "TSC_TRACE_BLOCK",
           "read_tsc_trace", "read_params_file", "TrainingSet"]

log = logging.getLogger(__name__)

TSC_TRACE_BLOCK = "tsc_trace"
# labels of tsc_trace.star (ours; RELION writes no trace)
LBL_EVAL = getattr(L, "POLISH_EVALUATION", "rlnPolishEvaluation")
LBL_VEL = getattr(L, "POLISH_SIGMA_VEL", "rlnPolishSigmaVel")
LBL_DIV = getattr(L, "POLISH_SIGMA_DIV", "rlnPolishSigmaDiv")
LBL_ACC = getattr(L, "POLISH_SIGMA_ACC", "rlnPolishSigmaAcc")
LBL_TSC = getattr(L, "POLISH_TSC", "rlnPolishTsc")


def _opt(args, name, default):
    v = getattr(args, name, None)
    return default if v is None else v


def _rand_keys(seed: int, n: int) -> np.ndarray:
    """``rand()/RAND_MAX`` (double) for ``n`` draws after glibc ``srand(seed)``, as RELION."""
    return glibc_rand_words(seed, n) / float(GLIBC_RAND_MAX)


def select_micrographs(n_particles: list[int], min_p: int, seed: int = 23) -> tuple[list[int], int]:
    """RELION's training subset: indices in ascending order of glibc ``rand()`` keys after ``srand(seed)``,
    skipping micrographs with < 2 particles, until ``min_p`` particles.  Returns ``(indices, n_particles)``.
    """
    keys = _rand_keys(seed, len(n_particles))
    order = np.argsort(keys, kind="stable")
    chosen, total = [], 0
    for i in order:
        if n_particles[i] < 2:
            continue
        if total >= min_p:
            break
        chosen.append(int(i))
        total += int(n_particles[i])
    return chosen, total


def fit_groups(n_particles: list[int], group_particles: int) -> list[list[int]]:
    """Consecutive groups of micrographs with about ``group_particles`` particles each (at least one
    micrograph per group).  The groups depend on the data only, never on the number of MPI ranks, so the
    joint fits (and the trained parameters) are the same for any number of ranks."""
    groups: list[list[int]] = []
    count = 0
    for i, n in enumerate(n_particles):
        if not groups or count + int(n) > max(int(group_particles), 1):
            groups.append([])
            count = 0
        groups[-1].append(i)
        count += int(n)
    return groups


@dataclass
class TrainMicrograph:
    name: str
    positions_px: np.ndarray
    initial_tracks_px: np.ndarray
    cc: np.ndarray | None   # (n_p, n_f, M, M) float32, zero shift at cc_origin (None once in the joint fit)
    cc_origin: int
    ring: EvalRing
    dose_per_frame: float
    angpix: float
    coords_angpix: float
    centres: np.ndarray | None = None  # (n_p, n_f, 2) int: shift at each map's cc_origin (None: zero)
    warm_tracks: np.ndarray | None = None
    tsc_cl: object = None   # device TSC evaluator (OpenCL backend), built on first use


def prepare_micrograph(md, k_cutoff: int, k_eval: int, k_out: int, crop_px: int | None, first_frame: int = 0,
                       whiten: bool = True, inplace: bool = False, window_px: int | None = None) -> TrainMicrograph:
    """Normalise + whiten one micrograph, its alignment CC maps and its held-out evaluation ring.

    ``inplace``: normalise ``md.frames_rfft`` itself (a micrograph loaded for this call only) instead of a copy.
    ``window_px``: cut each particle-frame map to +-window_px around the track's start (``centres``)
    instead of +-crop_px/2 around zero shift.
    """
    box = int(md.box)
    frames = np.asarray(md.frames_rfft)
    if not inplace:
        frames = frames.copy()
    n_f = frames.shape[1]
    sigma2 = prepare.normalize_whiten_inplace(frames, whiten)
    pred_own = np.asarray(md.pred_own_rfft)
    if whiten:
        pred_own = prepare.whiten(pred_own, sigma2, box)
    dw = dose_weights(n_f, box, float(md.angpix), float(md.dose_per_frame), first_frame)
    align_w = dw * alignment_lowpass(box, k_cutoff)[None]
    crop = None if crop_px is None or crop_px >= box else int(crop_px)
    init = np.asarray(md.initial_tracks_px, np.float64)
    centres = None
    if crop is not None and window_px and 2 * int(window_px) < crop:
        # maps cut around each track's start (+-window_px): tracks of sane sigmas stay well inside, and
        # 4x less map memory than the +-mot_range window makes the fit's map reads cache- and TLB-friendly
        crop = 2 * int(window_px)
        centres = np.rint(init).astype(np.int64)
    cc = cc_maps(frames, pred_own, align_w, crop_px=crop, centres=centres)
    ring = make_eval_ring(frames, np.asarray(md.pred_opposite_rfft), dw, k_eval, k_out)
    return TrainMicrograph(str(getattr(md, "name", "")), np.asarray(md.positions_px, np.float64), init, cc,
                           cc_origin(cc.shape, crop is not None), ring, float(md.dose_per_frame), float(md.angpix),
                           float(md.coords_angpix), centres=centres)


class TrainingSet:
    """The prepared micrographs of one rank; ``evaluate(params)`` = global TSC (all-reduced over ranks).

    All micrographs of the rank are fitted as one problem (:class:`~polishplugin.core.motion.joint.JointFit`):
    their CC maps are gathered into one array (on the OpenCL device when that backend is used) on the
    first evaluation and the per-micrograph copies are released.
    """

    def __init__(self, mics: list[TrainMicrograph], comm=None, max_iters: int = 10000, eps: float = 1e-5,
                 absolute: bool = False, warm: bool = True, backend: str = "numpy", device=None,
                 groups: list[list[int]] | None = None, group_ids: list[int] | None = None):
        self.mics = mics
        self.backend, self.device = backend, device
        self.comm = comm if comm is not None else get_comm()
        self.max_iters, self.eps, self.absolute, self.warm = max_iters, eps, absolute, warm
        self.ftol = 1e-9
        self.last_tracks: list[np.ndarray] = []
        self.best = -math.inf
        self.groups = [list(g) for g in groups] if groups is not None else ([list(range(len(mics)))] if mics else [])
        #: global index of each local group (sets the order of the cross-rank sum)
        self.group_ids = list(group_ids) if group_ids is not None else list(range(len(self.groups)))
        self.joints: dict[int, object] = {}

    def _joint(self, g: int):
        """Gather group ``g``'s maps (micrograph, particle, frame order) and build its joint fit, once."""
        if g not in self.joints:
            from ..core.motion.joint import JointFit, MicrographFit

            mics = [self.mics[i] for i in self.groups[g]]
            shapes = {m.cc.shape[2:] for m in mics}
            origins = {m.cc_origin for m in mics}
            if len(shapes) != 1 or len(origins) != 1:
                raise ProgramError("training micrographs have CC maps of different sizes; use one box size")
            total = sum(m.cc.shape[0] * m.cc.shape[1] for m in mics)
            maps = np.empty((total, *shapes.pop()), np.float32)  # pages become resident as they are filled
            k = 0
            for m in mics:
                n = m.cc.shape[0] * m.cc.shape[1]
                maps[k:k + n] = m.cc.reshape(n, *m.cc.shape[2:])
                k += n
                m.cc = None  # release each micrograph's copy as soon as it is in the joint array
            interp = None
            if self.backend == "opencl":
                from ..core.motion.objective_cl import CatmullRomCL

                interp = CatmullRomCL(maps, self.device)
                maps = None  # the maps live on the device
            centres = None
            if any(m.centres is not None for m in mics):
                centres = np.concatenate([(m.centres if m.centres is not None else np.zeros(
                    (*m.initial_tracks_px.shape[:2], 2), np.int64)).reshape(-1, 2) for m in mics])
            self.joints[g] = JointFit([MicrographFit(m.positions_px, len(m.initial_tracks_px[0])) for m in mics],
                                      maps, origins.pop(), interp, map_centres=centres)
        return self.joints[g]

    def fit_all(self, params, inits: list[np.ndarray]) -> list[np.ndarray]:
        """Tracks of every micrograph of this rank for ``params`` (Å units), from ``inits`` (one fit per group)."""
        s_vel, s_div, s_acc = params
        out: list = [None] * len(self.mics)
        for g, idx in enumerate(self.groups):
            px = [sigmas_to_pixels(s_vel, s_div, s_acc if s_acc > 0 else -1.0, self.mics[i].dose_per_frame,
                                   self.mics[i].angpix, self.mics[i].coords_angpix, self.absolute) for i in idx]
            sv, sd, sa = (np.array([p[k] for p in px]) for k in range(3))
            tracks = self._joint(g).fit(sv, sd, sa, [inits[i] for i in idx], max_iters=self.max_iters,
                                        eps=self.eps, ftol=self.ftol)
            for i, t in zip(idx, tracks):
                out[i] = t
        return out

    def _tsc(self, m: TrainMicrograph, tracks: np.ndarray) -> np.ndarray:
        if self.backend != "opencl":
            return tsc_terms(m.ring, tracks)
        if m.tsc_cl is None:  # ring data stay on the device for the whole search
            from ..core.motion.tsc_cl import TscCL

            m.tsc_cl = TscCL(m.ring, self.device)
            m.ring.x = np.broadcast_to(np.complex64(0), m.ring.x.shape)  # free the host copy
        return m.tsc_cl(tracks)

    def evaluate(self, params, warm: bool | None = None) -> float:
        """TSC of ``params`` (tracks refitted on every micrograph; kept in ``last_tracks``)."""
        warm = self.warm if warm is None else warm
        inits = [m.warm_tracks if warm and m.warm_tracks is not None else m.initial_tracks_px for m in self.mics]
        t0 = time.time()
        calls0 = sum(j.n_evals for j in self.joints.values())
        self.last_tracks = self.fit_all(params, inits)
        t1 = time.time()
        mine = []  # (global group index, the group's [num, d1, d2])
        for g, idx in enumerate(self.groups):
            terms = np.zeros(3)
            for i in idx:
                terms += self._tsc(self.mics[i], self.last_tracks[i])
            mine.append((self.group_ids[g], terms))
        log.info("  track fits %.1f s (%d objective calls), TSC %.1f s", t1 - t0,
                  sum(j.n_evals for j in self.joints.values()) - calls0, time.time() - t1)
        # sum the groups in their global order on every rank: the same floating-point sum for any number
        # of ranks (the search compares TSCs that differ in the 7th digit)
        everything = sorted((k, tuple(t)) for part in self.comm.allgather(mine) for k, t in part)
        total = np.zeros(3)
        for _, t in everything:
            total += np.asarray(t)
        return tsc_from_terms(total)

    def evaluate_and_keep(self, params) -> float:
        """:meth:`evaluate`, and warm-start later fits from these tracks when the score is the best so far."""
        value = self.evaluate(params)
        if value > self.best:
            self.best = value
            for m, t in zip(self.mics, self.last_tracks):
                m.warm_tracks = t
        return value


def _data_source(data, args, k_out):
    """(n_particles per micrograph, loader(i), k_out in particle-box px, first_frame, names)."""
    if hasattr(data, "mic_rows"):  # a PolishProject
        from ._polish_io import load_micrograph

        project = data
        counts = [len(r) for r in project.mic_rows]
        opt = project.optics
        box = int(opt[L.IMAGE_SIZE].iloc[0])
        angpix = float(opt[L.IMAGE_PIXEL_SIZE].iloc[0])
        if (len(set(np.asarray(opt[L.IMAGE_SIZE]).tolist())) > 1
                or len(set(np.round(np.asarray(opt[L.IMAGE_PIXEL_SIZE], float), 6).tolist())) > 1):
            raise ProgramError(f"{project.particle_star}: training needs all optics groups to share pixel and box "
                               "size; train on each group separately")
        ref = project.reference
        k = k_out if k_out is not None else int(round(ref.k_out * (box * angpix) / (ref.box * ref.angpix)))
        # training never looks above k_out: project only up to there (in reference pixels, with a margin)
        ref.r_max_px = min(ref.box / 2.0, k * (ref.box * ref.angpix) / (box * angpix) + 2.0)
        return (counts, (lambda i: load_micrograph(project, i, reuse_buffer=True)), k, int(project.first_frame),
                list(project.mic_names))
    mics = list(data)
    if k_out is None:
        k_out = getattr(args, "k_out", None)
    if k_out is None:
        raise ProgramError("training data: no k_out (FSC cut-off) was given")
    counts = [int(np.asarray(m.positions_px).shape[0]) for m in mics]
    first = int(getattr(mics[0], "first_frame", 0)) if mics else 0
    return counts, (lambda i: mics[i]), int(k_out), first, [str(getattr(m, "name", i)) for i, m in enumerate(mics)]


def read_params_file(path: str | os.PathLike) -> tuple[float, float, float]:
    """Three whitespace-separated numbers (s_vel s_div s_acc) as RELION's ``--params_file``."""
    try:
        values = [float(v) for v in Path(path).read_text().split()]
    except ValueError as exc:
        raise ProgramError(f"{path}: expected three numbers 's_vel s_div s_acc' ({exc})") from exc
    if len(values) < 3:
        raise ProgramError(f"{path}: expected three numbers 's_vel s_div s_acc', found {len(values)}")
    return values[0], values[1], values[2]


def read_tsc_trace(path: str | os.PathLike) -> pd.DataFrame:
    """The evaluations of ``tsc_trace.star``: columns evaluation, s_vel, s_div, s_acc, tsc."""
    from ..io.star import read_star

    t = read_star(path)[TSC_TRACE_BLOCK]
    return pd.DataFrame({"evaluation": t[LBL_EVAL], "s_vel": t[LBL_VEL], "s_div": t[LBL_DIV],
                         "s_acc": t[LBL_ACC], "tsc": t[LBL_TSC]})


def _backend(args) -> tuple[str, object]:
    """``--device cpu``: numpy; ``--device P:D``: that OpenCL device; unset: OpenCL when a platform exists."""
    dev = (getattr(args, "device", "") or "").strip()
    if dev == "cpu":
        return "numpy", None
    if dev:
        return "opencl", dev
    try:
        from ..core.opencl import opencl_available

        return ("opencl", None) if opencl_available() else ("numpy", None)
    except Exception:  # pragma: no cover - broken OpenCL installs fall back to numpy
        return "numpy", None


def _max_evals(args) -> int:
    """Evaluation budget: ``--max_evals`` if given, else ``3 * --par_iters`` capped at 100 (RELION's
    Nelder-Mead makes ~1-2 evaluations per iteration)."""
    given = int(_opt(args, "max_evals", 0) or 0)
    return given if given > 0 else max(10, min(3 * int(_opt(args, "par_iters", 100)), 100))


def run_training(args, data, k_out: int | None = None) -> int:
    """Train (s_vel, s_div, s_acc) and write the parameter files (see module docstring). Returns 0.

    BLAS/LAPACK run on one thread throughout (:func:`~polishplugin.core.motion.joint.one_blas_thread`), so the
    result does not depend on how many threads or ranks a run has."""
    from ..core.motion.joint import one_blas_thread

    with one_blas_thread():
        return _run_training(args, data, k_out)


def _run_training(args, data, k_out: int | None = None) -> int:
    t_start = time.time()
    comm = get_comm()
    eval_frac = float(_opt(args, "eval_frac", 0.5))
    align_frac = float(_opt(args, "align_frac", 0.5))
    if not (0.1 < eval_frac <= 0.9):
        raise ProgramError(f"--eval_frac {eval_frac:g} is outside (0.1, 0.9]: it is the fraction of Fourier "
                           "pixels held out for testing")
    if not (0.0 < align_frac < 1.0):
        raise ProgramError(f"--align_frac {align_frac:g} is outside (0, 1)")
    two = bool(_opt(args, "params2", False)) and not bool(_opt(args, "params3", False))
    min_p = int(_opt(args, "min_p", 1000))
    seed = int(_opt(args, "seed", 23))
    s0 = (float(_opt(args, "s_vel_0", 0.6)), float(_opt(args, "s_div_0", 10000.0)), float(_opt(args, "s_acc_0", 3.0)))
    mot_range = int(_opt(args, "mot_range", 50))
    window = int(_opt(args, "fit_window", 24))
    max_iters = int(_opt(args, "max_iters", 10000))
    eps = float(_opt(args, "eps", 1e-5))
    absolute = bool(_opt(args, "absolute_params", False))
    whiten = not bool(_opt(args, "no_whiten", False))
    warm = not bool(_opt(args, "no_warm_start", False))
    out_dir = Path(_opt(args, "o", "."))

    counts, load, k_out_px, first_frame, names = _data_source(data, args, k_out)
    from_project = hasattr(data, "mic_rows")  # loaded per call: normalise in place
    chosen, n_total = select_micrographs(counts, min_p, seed)
    if not chosen:
        raise ProgramError("training needs at least one micrograph with 2 or more particles; none was found")
    if n_total < min_p:
        log.warning("WARNING: only %d particles in micrographs with >= 2 particles, fewer than --min_p %d: "
                    "using all of them", n_total, min_p)
    k_cutoff, k_eval = frequency_split(k_out_px, align_frac, eval_frac)
    log.info("training on %d micrographs, %d particles; k_out %d, alignment k < %d, evaluation %d <= k < %d",
             len(chosen), n_total, k_out_px, k_cutoff, k_eval + 2, k_out_px)
    if k_eval + 2 >= k_out_px:
        raise ProgramError(f"the FSC cut-off (k_out = {k_out_px} px) leaves no held-out frequencies; "
                           "lower --eval_frac or use a better reference")

    groups = fit_groups([counts[i] for i in chosen], int(_opt(args, "joint_particles", 1000)))
    my_ids = list(partition(len(groups), comm.size, comm.rank))
    my_groups = [groups[g] for g in my_ids]
    mine = [chosen[i] for g in my_groups for i in g]
    local_groups, k = [], 0
    for g in my_groups:
        local_groups.append(list(range(k, k + len(g))))
        k += len(g)
    log.info("track fits: %d group(s) of micrographs fitted jointly (about %d particles each), %d on this rank",
             len(groups), int(_opt(args, "joint_particles", 1000)), len(my_groups))
    mics: list[TrainMicrograph] = []
    t0 = time.time()
    for j, i in enumerate(mine):
        mics.append(prepare_micrograph(load(i), k_cutoff, k_eval, k_out_px, 2 * mot_range, first_frame, whiten,
                                       inplace=from_project, window_px=window))
        done = j + 1
        eta = (time.time() - t0) / done * (len(mine) - done)
        log.info("prepared micrograph %d/%d (%s), ETA %.0f s", done, len(mine), names[i], eta)

    backend, device = _backend(args)
    log.info("objective interpolation backend: %s", backend)
    tset = TrainingSet(mics, comm, max_iters=max_iters, eps=eps, absolute=absolute, warm=warm, backend=backend,
                       device=device, groups=local_groups, group_ids=my_ids)
    # --conv sets RELION's output grid (conv/2 scaled units); --in_step is not used: our search starts
    # with a x2 trust region in log space
    result = search_sigmas(tset.evaluate_and_keep, s0, free=(True, True, not two), max_evals=_max_evals(args),
                           conv=float(_opt(args, "conv", 30.0)))
    s_vel, s_div, s_acc = result.best
    if two:
        s_acc = s0[2]
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
    if comm.is_leader:
        out_dir.mkdir(parents=True, exist_ok=True)
        line = format_params(s_vel, s_div, s_acc)
        atomic_write_text(out_dir / "opt_params_all_groups.txt", line)
        atomic_write_text(out_dir / "opt_params.txt", line)
        trace = pd.DataFrame({LBL_EVAL: np.arange(1, len(result.trace) + 1),
                              LBL_VEL: [p[0] for p, _ in result.trace], LBL_DIV: [p[1] for p, _ in result.trace],
                              LBL_ACC: [p[2] for p, _ in result.trace],
                              LBL_TSC: [f"{v:.10g}" for _, v in result.trace]})  # TSCs differ in the 5th digit
        general = {LBL_VEL: s_vel, LBL_DIV: s_div, LBL_ACC: s_acc, LBL_TSC: f"{result.best_score:.10g}",
                   "rlnPolishTscIsFlat": int(result.flat), "rlnPolishNrMicrographs": len(chosen),
                   "rlnPolishNrParticles": n_total}
        write_star(out_dir / "tsc_trace.star", {"general": general, TSC_TRACE_BLOCK: trace},
                   comments=["TSC (held-out score) of every evaluation of the polishing-parameter training"])
    comm.barrier()
    return 0
