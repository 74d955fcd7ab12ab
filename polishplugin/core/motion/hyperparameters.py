"""Search over (s_vel, s_div, s_acc) maximising the held-out TSC, and RELION's result rounding.

RELION (ALGORITHMS 1.14) runs Nelder-Mead on ``z = (s_vel*1e4, s_div, s_acc*1e3)`` from
``(0.6, 10000, 3)`` with step 3000 and no bounds; its training objective is flat and a run can drift
(s_div to ~1e5, s_vel to 7.7).  Ours is a bounded compass (pattern) search in log space:

* start at RELION's ``(s_vel_0, s_div_0, s_acc_0)``; every candidate is rounded to RELION's output grid
  (multiples of 0.0015 Å/dose, 15 Å, 0.015 Å/dose) and evaluations are cached, so the result is always a
  point that was actually scored and written exactly as evaluated;
* poll ``x * step^{±1}`` along each axis (greedy: accept the first improvement, then repeat the
  successful direction with a doubled step); when no poll point improves, halve the log-step;
  stop when the step falls below ``min_factor`` or after ``max_evals`` evaluations;
* parameters stay inside ``bounds`` (a guard against the runaway drift);
* ``flat`` is reported when all scores differ by less than ``flat_tol`` (relative): the data cannot
  tell the parameters apart, and the defaults are as good as any.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

__all__ = ["SCALES", "DEFAULT_BOUNDS", "round_params", "format_params", "SearchResult", "compass_search"]

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


def compass_search(evaluate: Callable[[tuple[float, ...]], float], start: Sequence[float],
                   free: Sequence[bool] = (True, True, True), bounds=DEFAULT_BOUNDS,
                   step_factor: float = 2.0, min_factor: float = 1.04, max_evals: int = 60,
                   conv: float = 30.0, flat_tol: float = 1e-5) -> SearchResult:
    """Maximise ``evaluate(params)`` over the ``free`` parameters; see the module docstring."""
    cache: dict[tuple[float, ...], float] = {}
    res = SearchResult(best=(), best_score=-math.inf)

    def snap(p):
        q = []
        for i, v in enumerate(p):
            if free[i]:
                lo, hi = bounds[i]
                v = min(max(v, lo), hi)
            q.append(v)
        q = list(round_params(q, conv))
        for i in range(len(q)):  # never round a free parameter down to 0
            if free[i] and q[i] <= 0:
                q[i] = conv * 0.5 / SCALES[i]
        return tuple(q)

    def score(p):
        p = snap(p)
        if p not in cache:
            if len(cache) >= max_evals:
                return p, -math.inf
            value = float(evaluate(p))
            cache[p] = value
            res.trace.append((p, value))
            log.info("evaluation %d: s_vel %.5g s_div %.5g s_acc %.5g -> TSC %.12g",
                     len(res.trace), p[0], p[1], p[2], value)
            if value > res.best_score:
                res.best, res.best_score = p, value
        return p, cache[p]

    x, fx = score(tuple(float(v) for v in start))
    log_step = math.log(step_factor)
    axes = [i for i in range(len(x)) if free[i]]
    while log_step >= math.log(min_factor) and len(cache) < max_evals:
        improved = False
        for i in axes:
            for sign in (1.0, -1.0):
                cand = list(x)
                cand[i] = x[i] * math.exp(sign * log_step)
                p, fp = score(tuple(cand))
                if p != x and fp > fx:
                    x, fx, improved = p, fp, True
                    step = log_step
                    while len(cache) < max_evals:  # keep going in the successful direction
                        step *= 2.0
                        cand = list(x)
                        cand[i] = x[i] * math.exp(sign * step)
                        q, fq = score(tuple(cand))
                        if q == x or fq <= fx:
                            break
                        x, fx = q, fq
                    break
        if not improved:
            log_step *= 0.5
    values = [v for _, v in res.trace]
    scale = max(abs(res.best_score), 1e-30)
    res.flat = len(values) > 1 and (max(values) - min(values)) / scale < flat_tol
    res.n_evals = len(res.trace)
    return res
