"""Polishing plots: per-frame B-factors and scales, particle tracks per micrograph, logfile.pdf.

Agg-safe figure functions (from ``programs._polish_plots``, shared with ``motion_refine``) plus
:func:`polish_figures`, which reads a polishing output folder (``bfactors.star``, ``*_tracks.star`` and
``*_shiny.star`` for the coordinates).  The Scipion class :class:`PolishParticlesViewer` is defined only
when pyworkflow is importable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..programs._polish_plots import TRACK_SCALE, plot_bfactors, plot_scales, plot_tracks

__all__ = ["polish_figures", "write_viewer_pngs", "plot_bfactors", "plot_scales", "plot_tracks", "TRACK_SCALE"]


def polish_figures(out_dir: str | os.PathLike, max_micrographs: int = 10) -> list[tuple[str, object]]:
    """``[(name, Figure)]``: B-factors, scales, then the tracks of up to ``max_micrographs`` micrographs."""
    from ..convert import labels as L
    from ..convert.star import read_star

    out = Path(out_dir)
    figs = []
    bstar = out / "bfactors.star"
    if bstar.exists():
        t = read_star(bstar)["perframe_bfactors"]
        figs.append(("bfactors", plot_bfactors(np.asarray(t[L.BFACTOR_USED_FOR_SHARPENING], np.float64))))
        figs.append(("scalefactors", plot_scales(np.asarray(t[L.FITTED_INTERCEPT_GUINIER_PLOT], np.float64))))
    for tpath in sorted(out.rglob("*_tracks.star"))[:max_micrographs]:
        stem = str(tpath)[: -len("_tracks.star")]
        blocks = read_star(tpath)
        n_p = int(blocks["general"][L.PARTICLE_NUMBER].iloc[0])
        tr = np.stack([np.stack([np.asarray(blocks[str(p)][L.ORIGIN_X_ANGST], np.float64),
                                 np.asarray(blocks[str(p)][L.ORIGIN_Y_ANGST], np.float64)], -1) for p in range(n_p)])
        shiny = Path(stem + "_shiny.star")
        if shiny.exists():
            b = read_star(shiny)
            parts = b["particles"]
            coords = np.stack([np.asarray(parts[L.COORDINATE_X], np.float64),
                               np.asarray(parts[L.COORDINATE_Y], np.float64)], -1)
            angpix = float(b["optics"][L.IMAGE_PIXEL_SIZE].iloc[0])
        else:
            coords, angpix = np.zeros((n_p, 2)), 1.0
        figs.append((Path(stem).name + "_tracks", plot_tracks(coords, tr, angpix, title=Path(stem).name)))
    return figs


def write_viewer_pngs(out_dir: str | os.PathLike, dest: str | os.PathLike, max_micrographs: int = 10) -> list[str]:
    """Save :func:`polish_figures` as PNGs in ``dest`` (atomic); returns the paths."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in polish_figures(out_dir, max_micrographs):
        path = dest / f"viewer_{name}.png"
        tmp = dest / f".viewer_{name}.tmp.png"
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, path)
        paths.append(str(path))
    return paths


try:  # the Scipion viewer exists only where pyworkflow/pwem are importable
    from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer
except ImportError:  # pragma: no cover - plain installs
    Viewer = None

if Viewer is not None:
    class PolishParticlesViewer(Viewer):
        """Per-frame B-factor and scale plots, particle tracks (x30) and logfile.pdf of a polishing run."""

        _environments = [DESKTOP_TKINTER, WEB_DJANGO]
        _label = "polish - bayesian polishing viewer"

        @classmethod
        def _getTargets(cls):
            from ..protocols.protocol_polish import ProtPolishParticles

            return [ProtPolishParticles]

        def _visualize(self, obj, **kwargs):
            prot = obj
            out = prot._getExtraPath("Polish")
            pngs = write_viewer_pngs(out, prot._getExtraPath("viewer"))
            try:
                from pwem.viewers import DataView

                views = [DataView(p) for p in pngs]
            except Exception:  # pragma: no cover - headless
                views = []
            return views
