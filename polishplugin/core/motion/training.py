"""Training of the polishing sigmas (RELION ``relion_motion_refine --params3``; ALGORITHMS 1.14): the numerics.

:func:`select_micrographs` picks RELION's training subset (glibc ``srand(seed)``, ascending random keys,
>= 2 particles, until ``min_p`` particles); :func:`prepare_micrograph` computes one micrograph's whitened
alignment CC maps (frequencies below ``k_cutoff``, kept within a window around each track's start) and
its held-out evaluation ring ``k_eval+2 <= r < k_out``; :class:`TrainingSet` refits the tracks of all
prepared micrographs for given sigmas (jointly in groups: :mod:`.joint`) and returns the held-out TSC
(:mod:`.tsc`), summed over MPI ranks when given a communicator (anything with ``allgather``).
The search itself is :func:`.hyperparameters.search_sigmas`; the program is ``programs/motion_train.py``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..dose import dose_weights
from ..fsc import GLIBC_RAND_MAX, glibc_rand_words
from . import prepare
from .cross_correlation import cc_maps, cc_origin
from .estimate import sigmas_to_pixels
from .tsc import EvalRing, alignment_lowpass, make_eval_ring, tsc_from_terms, tsc_terms

if TYPE_CHECKING:
    from .joint import JointFit
    from .tsc_cl import TscCL

__all__ = ["select_micrographs", "fit_groups", "TrainMicrograph", "prepare_micrograph", "TrainingSet"]

log = logging.getLogger(__name__)


class _OneRank:
    """The communicator of a single process (no MPI)."""

    @staticmethod
    def allgather(obj):
        return [obj]


_ONE_RANK = _OneRank()


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
    tsc_cl: TscCL | None = None   # device TSC evaluator (OpenCL backend), built on first use


def _cc_maps(m: TrainMicrograph) -> np.ndarray:
    """``m.cc``, which a micrograph holds until its joint fit gathers it."""
    if m.cc is None:
        raise ValueError(f"training micrograph {m.name!r}: its CC maps are already in a joint fit")
    return m.cc


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
    if sigma2 is not None:  # whiten
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
        self.comm = comm if comm is not None else _ONE_RANK
        self.max_iters, self.eps, self.absolute, self.warm = max_iters, eps, absolute, warm
        self.ftol = 1e-9
        self.last_tracks: list[np.ndarray] = []
        self.best = -math.inf
        self.groups = [list(g) for g in groups] if groups is not None else ([list(range(len(mics)))] if mics else [])
        #: global index of each local group (sets the order of the cross-rank sum)
        self.group_ids = list(group_ids) if group_ids is not None else list(range(len(self.groups)))
        self.joints: dict[int, JointFit] = {}

    def _joint(self, g: int) -> JointFit:
        """Gather group ``g``'s maps (micrograph, particle, frame order) and build its joint fit, once."""
        if g not in self.joints:
            from .joint import JointFit, MicrographFit

            mics = [self.mics[i] for i in self.groups[g]]
            shapes = {_cc_maps(m).shape[2:] for m in mics}
            origins = {m.cc_origin for m in mics}
            if len(shapes) != 1 or len(origins) != 1:
                raise ValueError("training micrographs have CC maps of different sizes; use one box size")
            total = sum(_cc_maps(m).shape[0] * _cc_maps(m).shape[1] for m in mics)
            gathered = np.empty((total, *shapes.pop()), np.float32)  # pages become resident as they are filled
            k = 0
            for m in mics:
                cc = _cc_maps(m)
                n = cc.shape[0] * cc.shape[1]
                gathered[k:k + n] = cc.reshape(n, *cc.shape[2:])
                k += n
                m.cc = None  # release each micrograph's copy as soon as it is in the joint array
                del cc
            maps: np.ndarray | None = None
            interp = None
            if self.backend == "opencl":
                from .objective_cl import CatmullRomCL

                interp = CatmullRomCL(gathered, self.device)  # the maps live on the device
            else:
                maps = gathered
            del gathered
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
            from .tsc_cl import TscCL

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
