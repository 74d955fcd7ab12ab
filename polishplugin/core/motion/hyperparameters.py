"""Search over (s_vel, s_div, s_acc) maximising the held-out TSC, and RELION's result rounding.

RELION (ALGORITHMS 1.14) runs Nelder-Mead on ``z = (s_vel*1e4, s_div, s_acc*1e3)`` from
``(0.6, 10000, 3)`` with step 3000 and no bounds; its training objective is flat and a run can drift
(s_div to ~1e5, s_vel to 7.7).  Ours is a bounded Nelder-Mead search in log space:

* start at RELION's ``(s_vel_0, s_div_0, s_acc_0)``; every candidate is rounded to RELION's output grid
  (multiples of 0.0015 Å/dose, 15 Å, 0.015 Å/dose) and evaluations are cached, so the result is always a
  point that was actually scored and written exactly as evaluated;
* Nelder-Mead in log space (scale-free steps; it follows the diagonal ridge of the TSC, where a larger
  s_vel goes with a larger s_div), initial steps x2; stop when the simplex has shrunk to a few per
  cent (``min_factor``) or after ``max_evals`` distinct evaluations (cache hits are free);
* parameters stay inside ``bounds`` (a guard against the runaway drift);
* ``flat`` is reported when all scores differ by less than ``flat_tol`` (relative): the data cannot
  tell the parameters apart, and the defaults are as good as any.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

__all__ = ["SCALES", "DEFAULT_BOUNDS", "round_params", "format_params", "SearchResult", "search_sigmas"]

log = logging.getLogger(__name__)

SCALES = (10000.0, 1.0, 1000.0)  # RELION's scaled problem variables
DEFAULT_BOUNDS = ((0.01, 10.0), (50.0, 50000.0), (0.015, 100.0))


def round_params(params: Sequence[float], conv: float = 30.0) -> tuple[float, ...]:
    """RELION's rounding ``conv*0.5*(int)(2*z/conv + 0.5)/scale`` (multiples of 0.0015, 15, 0.015).

    Negative values round towards the grid the same way (``int`` truncation, as in C++).
    """
    out = []
    for v, s in zip(params, SCALES):
        z = float(v) * s
        out.append(conv * 0.5 * int(2.0 * z / conv + 0.5) / s)
    return tuple(out)


def format_params(s_vel: float, s_div: float, s_acc: float) -> str:
    """One line ``"a b c\\n"`` as C++ iostream prints doubles (6 significant digits, ``%g``)."""
    return f"{s_vel:g} {s_div:g} {s_acc:g}\n"


@dataclass
class SearchResult:
    best: tuple[float, ...]
    best_score: float
    trace: list[tuple[tuple[float, ...], float]] = field(default_factory=list)  # every evaluation, in order
    flat: bool = False
    n_evals: int = 0


class _Scorer:
    """Snap to bounds and RELION's grid, cache, log and record every evaluation."""

    def __init__(self, evaluate, free, bounds, conv, max_evals):
        self.evaluate, self.free, self.bounds, self.conv, self.max_evals = evaluate, free, bounds, conv, max_evals
        self.cache: dict[tuple[float, ...], float] = {}
        self.res = SearchResult(best=(), best_score=-math.inf)

    def snap(self, p):
        q = []
        for i, v in enumerate(p):
            if self.free[i]:
                lo, hi = self.bounds[i]
                v = min(max(v, lo), hi)
            q.append(v)
        q = list(round_params(q, self.conv))
        for i in range(len(q)):  # never round a free parameter down to 0
            if self.free[i] and q[i] <= 0:
                q[i] = self.conv * 0.5 / SCALES[i]
        return tuple(q)

    @property
    def exhausted(self) -> bool:
        return len(self.cache) >= self.max_evals

    def __call__(self, p):
        p = self.snap(p)
        if p not in self.cache:
            if self.exhausted:
                return p, -math.inf
            value = float(self.evaluate(p))
            self.cache[p] = value
            self.res.trace.append((p, value))
            log.info("evaluation %d: s_vel %.5g s_div %.5g s_acc %.5g -> TSC %.12g",
                     len(self.res.trace), p[0], p[1], p[2], value)
            if value > self.res.best_score:
                self.res.best, self.res.best_score = p, value
        return p, self.cache[p]

    def finish(self, flat_tol: float) -> SearchResult:
        res = self.res
        values = [v for _, v in res.trace]
        scale = max(abs(res.best_score), 1e-30)
        res.flat = len(values) > 1 and (max(values) - min(values)) / scale < flat_tol
        res.n_evals = len(res.trace)
        return res


def search_sigmas(evaluate: Callable[[tuple[float, ...]], float], start: Sequence[float],
                   free: Sequence[bool] = (True, True, True), bounds=DEFAULT_BOUNDS,
                   step_factor: float = 2.0, min_factor: float = 1.04, max_evals: int = 60,
                   conv: float = 30.0, flat_tol: float = 1e-5) -> SearchResult:
    """Maximise ``evaluate(params)`` over the ``free`` parameters (see the module docstring).

    Nelder-Mead on ``log(params)`` of the free parameters (reflection 1, expansion 2, contraction 0.5,
    shrink 0.5, as RELION), initial simplex ``start * step_factor`` along each free axis; every vertex is
    snapped to the bounds and to RELION's output grid.  Stops when all vertices lie within a factor
    ``min_factor`` of the best one, or after ``max_evals`` distinct evaluations.
    """
    score = _Scorer(evaluate, free, bounds, conv, max_evals)
    axes = [i for i in range(len(start)) if free[i]]
    fixed = [float(v) for v in start]

    def to_params(u):
        q = list(fixed)
        for k, i in enumerate(axes):
            q[i] = math.exp(u[k])
        return tuple(q)

    def f(u):
        p, v = score(to_params(u))
        return [math.log(p[i]) for i in axes], v  # the snapped point in log space

    u0, v0 = f([math.log(max(fixed[i], 1e-12)) for i in axes])
    simplex = [(u0, v0)]
    for k in range(len(axes)):
        u = list(u0)
        u[k] += math.log(step_factor)
        simplex.append(f(u))
    tol = math.log(min_factor)
    n = len(axes)
    while not score.exhausted:
        simplex.sort(key=lambda t: -t[1])  # best first (maximising)
        best_u = simplex[0][0]
        if max(max(abs(a - b) for a, b in zip(u, best_u)) for u, _ in simplex) < tol:
            break
        centroid = [sum(u[k] for u, _ in simplex[:-1]) / n for k in range(n)]
        worst_u, worst_v = simplex[-1]
        refl = f([c + (c - w) for c, w in zip(centroid, worst_u)])
        if refl[1] > simplex[0][1]:
            exp_ = f([c + 2.0 * (c - w) for c, w in zip(centroid, worst_u)])
            simplex[-1] = exp_ if exp_[1] > refl[1] else refl
        elif refl[1] > simplex[-2][1]:
            simplex[-1] = refl
        else:
            if refl[1] > worst_v:  # outside contraction
                con = f([c + 0.5 * (r - c) for c, r in zip(centroid, refl[0])])
                ok = con[1] >= refl[1]
            else:  # inside contraction
                con = f([c + 0.5 * (w - c) for c, w in zip(centroid, worst_u)])
                ok = con[1] > worst_v
            if ok:
                simplex[-1] = con
            else:  # shrink towards the best vertex
                simplex = [simplex[0]] + [f([b + 0.5 * (x - b) for b, x in zip(best_u, u)])
                                          for u, _ in simplex[1:]]
    return score.finish(flat_tol)
