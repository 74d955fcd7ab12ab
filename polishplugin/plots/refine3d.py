"""Plots of a 3D auto-refine run (``polishplugin refine3d``) and its Scipion viewer.

Agg-safe functions that read the run's files and save PNGs: gold-standard FSC per iteration,
resolution and sampling per iteration, angular distribution, central slices of the map.  The Scipion
viewer class (only defined where pyworkflow is importable) draws the same figures.
"""

from __future__ import annotations

import glob
import os
import re
from functools import partial

from ..io.mrc import read_mrc
from ..io.particles import read_particles
from ..io.refine import RefineModel, read_model, read_sampling
from .postprocess import save_figure

__all__ = ["iteration_models", "fsc_per_iteration_figure", "progress_figure", "angular_distribution_figure",
           "map_slices_figure", "save_all_plots", "run_symmetry", "angular_distribution_title"]


def _figure(fig=None, size=(7, 5)):
    if fig is not None:
        return fig
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def iteration_models(root: str) -> list[tuple[int, RefineModel]]:
    """``[(iteration, <root>_it###_model.star), ...]`` in iteration order."""
    out = []
    for path in glob.glob(f"{root}_it[0-9][0-9][0-9]_model.star"):
        m = re.search(r"_it(\d{3})_model\.star$", path)
        out.append((int(m.group(1)), read_model(path)))
    return sorted(out, key=lambda t: t[0])


def fsc_per_iteration_figure(root: str, fig=None, title: str = "3D auto-refine"):
    """Gold-standard FSC of every iteration against resolution (1/Å), with the 0.143 and 0.5 lines."""
    fig = _figure(fig)
    ax = fig.add_subplot(111)
    models = iteration_models(root)
    cmap = __import__("matplotlib").colormaps["viridis"]
    for j, (it, model) in enumerate(models):
        ax.plot(model.resolution_per_a, model.fsc, color=cmap(j / max(len(models) - 1, 1)), label=f"iteration {it}")
    for y, style in ((0.143, "--"), (0.5, ":")):
        ax.axhline(y, ls=style, lw=0.8, color="grey", label=f"FSC = {y:g}")
    ax.set_title(f"{title}:\ngold-standard FSC of the half maps per iteration", fontsize=10)
    ax.set_xlabel("resolution (1/Å)")
    ax.set_ylabel("gold-standard FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.legend(fontsize=7)
    return fig


def progress_figure(root: str, fig=None, title: str = "3D auto-refine"):
    """Resolution (Å) and angular step (degrees) per iteration."""
    fig = _figure(fig)
    ax = fig.add_subplot(111)
    its, res, step = [], [], []
    for it, model in iteration_models(root):
        its.append(it)
        res.append(model.current_resolution_a)
        step.append(360.0 / (6 * 2 ** (model.healpix_order + 1)))
    line = ax.plot(its, res, "o-", label="resolution (Å, gold-standard FSC 0.143)")
    ax.set_title(f"{title}:\nresolution and angular step per iteration", fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel("resolution (Å)")
    ax2 = ax.twinx()
    step_line = ax2.step(its, step, where="mid", color="tab:red", label="angular step (°)")
    ax2.set_ylabel("angular step (°)", color="tab:red")
    ax.legend(handles=line + step_line, fontsize=8, loc="upper right")
    return fig


def angular_distribution_title(symmetry: str | None) -> str:
    """The angular distribution's title: which part of the sphere the refine's directions cover."""
    sym = (symmetry or "").strip().upper()
    if not sym:
        return "angular distribution"
    if sym == "C1":
        return "angular distribution (C1: the whole sphere)"
    return f"angular distribution ({sym} asymmetric unit)"


def angular_distribution_figure(data_star: str, fig=None, symmetry: str | None = None):
    """2D histogram of the viewing directions (rot, tilt) of the particles; ``symmetry`` (the refine's
    point group) is named in the title: with symmetry the directions fill only its asymmetric unit."""
    fig = _figure(fig)
    angles = read_particles(data_star).angles_deg()
    ax = fig.add_subplot(111)
    h = ax.hist2d(angles[:, 0], angles[:, 1], bins=(36, 18),
                  range=[[-180, 180], [0, 180]], cmap="Blues")
    fig.colorbar(h[3], ax=ax, label="particles")
    ax.set_title(angular_distribution_title(symmetry), fontsize=10)
    ax.set_xlabel("rot (°)")
    ax.set_ylabel("tilt (°)")
    return fig


def map_slices_figure(map_path: str, fig=None, title: str = "3D auto-refine map"):
    """Central xy, xz and yz slices of a map."""
    fig = _figure(fig, (9, 3.2))
    vol, _ = read_mrc(map_path)
    c = vol.shape[0] // 2
    for j, (img, name) in enumerate(((vol[c], "xy"), (vol[:, c], "xz"), (vol[:, :, c], "yz"))):
        ax = fig.add_subplot(1, 3, j + 1)
        ax.imshow(img, cmap="gray", origin="lower")
        ax.set_title(f"{name} (central slice)")
        ax.set_axis_off()
    fig.suptitle(f"{title}: {os.path.basename(map_path)}")
    return fig


def run_symmetry(root: str) -> str | None:
    """The point group of a refine run (``<root>_sampling.star``), None when it has no sampling file."""
    path = f"{root}_sampling.star"
    return read_sampling(path).symmetry if os.path.exists(path) else None


def save_all_plots(root: str, out_dir: str | None = None, title: str = "3D auto-refine") -> list[str]:
    """Write the four figures of a run as PNGs (``<root>_fsc.png`` ...); returns the paths."""
    out_dir = out_dir or os.path.dirname(root) or "."
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, os.path.basename(root))
    paths = []
    jobs = [("_fsc.png", partial(fsc_per_iteration_figure, title=title), root),
            ("_progress.png", partial(progress_figure, title=title), root)]
    if os.path.exists(f"{root}_data.star"):
        jobs.append(("_angdist.png", partial(angular_distribution_figure, symmetry=run_symmetry(root)),
                     f"{root}_data.star"))
    if os.path.exists(f"{root}_class001.mrc"):
        jobs.append(("_slices.png", partial(map_slices_figure, title=title), f"{root}_class001.mrc"))
    for suffix, func, arg in jobs:
        fig = func(arg)
        fig.tight_layout()
        save_figure(fig, base + suffix, dpi=90)
        paths.append(base + suffix)
    return paths
