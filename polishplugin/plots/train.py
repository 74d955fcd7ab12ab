"""Polishing training plots: the held-out score (TSC) of every evaluation and the chosen parameters.

:func:`plot_tsc_trace` (Agg-safe, returns a Figure) and :func:`write_train_png` read ``tsc_trace.star``;
the Scipion viewer (``viewers/viewer_polish_train.py``) shows them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .postprocess import save_figure

__all__ = ["plot_tsc_trace", "write_train_png"]


def plot_tsc_trace(trace_star: str | os.PathLike, params: tuple[float, float, float] | None = None):
    """Figure: TSC per evaluation (best so far as a line), the three sigmas per evaluation below."""
    from matplotlib.figure import Figure

    from ..io.polish import read_tsc_trace

    t = read_tsc_trace(trace_star).evaluations
    ev = np.asarray(t.evaluation, int)
    tsc = np.asarray(t.tsc, np.float64)
    fig = Figure(figsize=(7, 7))
    ax = fig.add_subplot(2, 1, 1)
    ax.plot(ev, tsc, "o", ms=4, color="tab:blue", label="evaluation")
    ax.plot(ev, np.maximum.accumulate(tsc), "-", color="tab:red", label="best so far")
    best = int(np.argmax(tsc))
    title = "Polishing training: held-out TSC"
    if params is None:
        params = (t.s_vel.iloc[best], t.s_div.iloc[best], t.s_acc.iloc[best])
    title += f"\nchosen s_vel {params[0]:g}, s_div {params[1]:g}, s_acc {params[2]:g}"
    ax.set_title(title)
    ax.set_xlabel("evaluation")
    ax.set_ylabel("TSC")
    ax.legend(loc="lower right")
    ax2 = fig.add_subplot(2, 1, 2)
    for col, name in (("s_vel", "s_vel (Å/dose)"), ("s_div", "s_div / 1000 (Å)"), ("s_acc", "s_acc (Å/dose)")):
        values = np.asarray(t[col], np.float64) / (1000.0 if col == "s_div" else 1.0)
        ax2.plot(ev, values, ".-", label=name)
    ax2.set_yscale("log")
    ax2.set_xlabel("evaluation")
    ax2.set_ylabel("sigma (unit in legend)")
    ax2.set_title("sigmas tried per evaluation", fontsize=10)
    ax2.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def write_train_png(trace_star: str | os.PathLike, png: str | os.PathLike) -> str:
    """Save :func:`plot_tsc_trace` as a PNG (atomic); returns the path."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    save_figure(plot_tsc_trace(trace_star), png)
    return str(png)
