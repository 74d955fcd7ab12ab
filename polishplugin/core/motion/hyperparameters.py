"""Search over (s_vel, s_div, s_acc) maximising the held-out TSC, and RELION's result rounding.

RELION (ALGORITHMS 1.14) runs Nelder-Mead on ``z = (s_vel*1e4, s_div, s_acc*1e3)`` from
``(0.6, 10000, 3)`` with step 3000 and no bounds; every step refits all training micrographs and a run
takes 1-2 hours; its training objective is flat along a ridge and a run can drift (s_div to ~1e5,
s_vel to 7.7).  Ours is a trust-region search on a quadratic model in log space:

* start at RELION's ``(s_vel_0, s_div_0, s_acc_0)``; every candidate is rounded to RELION's output grid
  (multiples of 0.0015 Å/dose, 15 Å, 0.015 Å/dose) and evaluations are cached, so the result is always a
  point that was actually scored and written exactly as evaluated;
* log space (scale-free steps; the ridge where a larger s_vel goes with a larger s_div is a straight
  line there).  A first design around the start (the start, +-radius along each axis, +radius along each
  pair of axes: 10 points for 3 parameters, radius ``log(step_factor)``) gives a full quadratic model
  (with the cross terms that describe the ridge);
* each step fits the model by least squares to the evaluations within twice the radius of the best
  point, evaluates the model's maximum inside the trust region (a box of that radius), moves there if it
  scores better (and doubles the radius when the step reached the box edge), else halves the radius;
  a model whose maximum is the best point itself halves the radius without an evaluation.  The least
  squares fit smooths the small-scale roughness of the TSC (each value comes from iterative fits), which
  is what makes simplex searches wander;
* stop when the radius falls below ``log(min_factor)`` (a few per cent) or after ``max_evals`` distinct
  evaluations; parameters stay inside ``bounds`` (a guard against runaway drift);
* ``flat`` is reported when all scores differ by less than ``flat_tol`` (relative): the data cannot
  tell the parameters apart, and the defaults are as good as any.

Typical cost: 15-25 evaluations for three parameters (RELION's simplex: 50-100).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = ["SCALES", "DEFAULT_BOUNDS", "round_params", "SearchResult", "search_sigmas"]

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


def _quadratic_terms(z: np.ndarray) -> np.ndarray:
    """Design matrix ``[1, z_i, z_i z_j (i <= j)]`` of points ``z (K, n)``."""
    k, n = z.shape
    cols = [np.ones(k)] + [z[:, i] for i in range(n)]
    cols += [z[:, i] * z[:, j] for i in range(n) for j in range(i, n)]
    return np.stack(cols, axis=1)


def _model_argmax(coef: np.ndarray, n: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Maximiser of the quadratic model over the box ``lo <= z <= hi``: dense grid, then a finer grid
    around the best grid point (n <= 3, so this is a few thousand model values)."""
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    for _ in range(3):
        axes = [np.linspace(c - h, c + h, 21) for c, h in zip(centre, half)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, n)
        grid = np.clip(grid, lo, hi)
        vals = _quadratic_terms(grid) @ coef
        centre, half = grid[int(np.argmax(vals))], half / 10   # the best point so far
    return centre


def search_sigmas(evaluate: Callable[[tuple[float, ...]], float], start: Sequence[float],
                  free: Sequence[bool] = (True, True, True), bounds=DEFAULT_BOUNDS,
                  step_factor: float = 2.0, min_factor: float = 1.04, max_evals: int = 60,
                  conv: float = 30.0, flat_tol: float = 1e-5, max_factor: float = 8.0) -> SearchResult:
    """Maximise ``evaluate(params)`` over the ``free`` parameters (see the module docstring).

    ``step_factor``: first trust radius (a factor per parameter); ``min_factor``: stop when the radius
    is below this factor; ``max_factor``: the largest radius.
    """
    score = _Scorer(evaluate, free, bounds, conv, max_evals)
    axes = [i for i in range(len(start)) if free[i]]
    fixed = [float(v) for v in start]
    n = len(axes)
    lo_b = np.array([math.log(bounds[i][0]) for i in axes])
    hi_b = np.array([math.log(bounds[i][1]) for i in axes])

    def to_params(u):
        q = list(fixed)
        for k, i in enumerate(axes):
            q[i] = math.exp(float(u[k]))
        return tuple(q)

    pts: dict[tuple[float, ...], tuple[np.ndarray, float]] = {}

    def f(u):
        p, v = score(to_params(u))
        if v > -math.inf:
            pts[p] = (np.array([math.log(p[i]) for i in axes]), v)
        return p, v

    if n == 0:
        f(np.zeros(0))
        return score.finish(flat_tol)
    p0, v0 = f(np.array([math.log(max(fixed[i], 1e-12)) for i in axes]))
    best_p = p0
    r = math.log(step_factor)
    r_min, r_max = math.log(min_factor), math.log(max_factor)
    n_terms = (n + 1) * (n + 2) // 2

    def design(centre, radius):
        """Star points, then +radius along each pair of axes, around ``centre``."""
        out = []
        for k in range(n):
            for sgn in (1.0, -1.0):
                u = centre.copy()
                u[k] += sgn * radius
                out.append(u)
        for a in range(n):
            for b in range(a + 1, n):
                u = centre.copy()
                u[a] += radius
                u[b] += radius
                out.append(u)
        return out

    while not score.exhausted and r >= r_min:
        centre, v_best = pts[best_p]
        # the model's points: all within twice the radius, at least the n_terms + n nearest ones
        ranked = sorted(pts.values(), key=lambda t: float(np.max(np.abs(t[0] - centre))))
        dist = np.array([float(np.max(np.abs(u - centre))) for u, _ in ranked])
        near = ranked[:max(int(np.sum(dist <= 2 * r * (1 + 1e-9))), n_terms + n)]
        z = np.array([(u - centre) / r for u, _ in near])
        a_mat = _quadratic_terms(z)
        if len(near) < n_terms or np.linalg.matrix_rank(a_mat / np.maximum(np.abs(a_mat).max(axis=0), 1e-300),
                                                             tol=1e-6) < n_terms:
            todo = [u for u in design(centre, r) if score.snap(to_params(u)) not in score.cache]
            if not todo:  # the grid or the bounds merge the design points: work at a smaller scale
                r /= 2
                continue
            p, v = f(todo[0])
            if v > v_best:
                best_p = p
            continue
        vals = np.array([v for _, v in near])
        scale = max(float(np.abs(vals - v_best).max()), 1e-300)
        w = 1.0 / (1.0 + (dist[:len(near)] / (2 * r)) ** 2)  # nearer points count more
        coef = np.linalg.lstsq(a_mat * w[:, None], w * (vals - v_best) / scale, rcond=None)[0]
        lo = np.maximum(-1.0, (lo_b - centre) / r)
        hi = np.minimum(1.0, (hi_b - centre) / r)
        zs = _model_argmax(coef, n, lo, hi)
        cand = score.snap(to_params(centre + r * zs))
        if np.max(np.abs(zs)) < 0.25 or cand in score.cache:
            r /= 2  # the model puts the optimum at (or next to) the best point: look closer
            continue
        p, v = f(centre + r * zs)
        if v > v_best:
            best_p = p
            if np.max(np.abs(zs)) > 0.9:
                r = min(2 * r, r_max)
        else:
            r /= 2
    return score.finish(flat_tol)
