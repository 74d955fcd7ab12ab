"""Plots of the polishing outputs (Agg-safe): per-frame B-factors and scales, particle tracks, logfile.pdf.

Used by ``motion_refine`` (logfile.pdf) and by ``viewers/viewer_polish.py``.  RELION's style: tracks
scaled x30 drawn at the particles' coordinates (black), track starts as blue markers, the mean track at
the micrograph centre (blue, red start), Y axis flipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .postprocess import save_figure

__all__ = ["plot_bfactors", "plot_scales", "plot_tracks", "tracks_figure", "TracksPage", "write_logfile",
           "polish_figures", "write_viewer_pngs", "TRACK_SCALE", "FRAME_AXIS"]

TRACK_SCALE = 30.0


def _figure(size=(6.0, 4.0)):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=size)


FRAME_AXIS = "movie frame (1 = first frame used)"


def _frame_numbers(n: int) -> np.ndarray:
    """1-based frame numbers for the x axis (bfactors.star counts frames from 0)."""
    return np.arange(1, n + 1)


def _per_frame(values: np.ndarray, fig, planted: np.ndarray | None, title: str, ylabel: str, colour: str):
    fig = fig or _figure()
    ax = fig.add_subplot(111)
    ax.plot(_frame_numbers(len(values)), values, "o-", color=colour, label="fitted")
    if planted is not None:
        ax.plot(_frame_numbers(len(planted)), planted, "s--", color="black", ms=3, label="planted (simulation)")
        ax.legend(fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(FRAME_AXIS)
    ax.set_ylabel(ylabel)
    ax.grid(color="0.85")
    return fig


def plot_bfactors(bfac: np.ndarray, fig=None, planted: np.ndarray | None = None, title: str = "Polishing B-factors"):
    """Per-frame B-factors (Å²) against the movie frame; ``planted`` (a simulation's truth) drawn beside."""
    return _per_frame(bfac, fig, planted, title, "B-factor (Å²)", "tab:blue")


def plot_scales(lnk: np.ndarray, fig=None, planted: np.ndarray | None = None,
                title: str = "Polishing scale-factors"):
    """Per-frame ln(scale) (the Guinier intercept of each frame's fit) against the movie frame."""
    return _per_frame(lnk, fig, planted, title, "ln(scale-factor) (no unit)", "tab:red")


def plot_tracks(coords_px: np.ndarray, tracks_a: np.ndarray, coords_angpix: float, title: str = "",
                mic_size_px: tuple[float, float] | None = None, fig=None):
    """Tracks (n_p, n_f, 2) in Å drawn x30 at ``coords_px`` (micrograph px)."""
    fig = fig or _figure((6.0, 6.0))
    ax = fig.add_subplot(111)
    t = np.asarray(tracks_a, np.float64) / coords_angpix * TRACK_SCALE
    rel = t - t[:, :1]
    for p in range(t.shape[0]):
        ax.plot(coords_px[p, 0] + rel[p, :, 0], coords_px[p, 1] + rel[p, :, 1], "k-", lw=0.7)
    ax.plot(coords_px[:, 0], coords_px[:, 1], "b.", ms=3)
    if mic_size_px is not None:
        cx, cy = mic_size_px[0] / 2.0, mic_size_px[1] / 2.0
    else:
        cx, cy = coords_px[:, 0].mean(), coords_px[:, 1].mean()
    mean = rel.mean(0)
    ax.plot(cx + mean[:, 0], cy + mean[:, 1], "b-", lw=1.5)
    ax.plot([cx], [cy], "r.", ms=6)
    ax.set_xlabel(f"X (in pixels; trajectory scaled by {TRACK_SCALE:g})")
    ax.set_ylabel(f"Y (in pixels; trajectory scaled by {TRACK_SCALE:g})")
    ax.set_title(f"particle tracks{': ' + title if title else ''} (scaled x{TRACK_SCALE:g}; red dot: mean track start)",
                 fontsize=8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.invert_yaxis()
    return fig


class TracksPage(NamedTuple):
    """One micrograph's page of logfile.pdf: ``root`` (``<root>_tracks.star`` is read, ``<root>_tracks.eps``
    written), title, particle coordinates (micrograph px), their pixel size (Å) and the micrograph size."""

    root: str
    title: str
    coords_px: np.ndarray | None
    coords_angpix: float
    mic_size_px: tuple[float, float] | None = None


def tracks_figure(tracks_star: str | os.PathLike, coords_px: np.ndarray | None = None, coords_angpix: float = 1.0,
                  title: str = "", mic_size_px: tuple[float, float] | None = None):
    """:func:`plot_tracks` of a ``_tracks.star`` file (coordinates unknown: all tracks drawn at 0, 0)."""
    from ..io.polish import read_tracks

    tracks_a = read_tracks(tracks_star)
    coords = np.zeros((tracks_a.shape[0], 2)) if coords_px is None else coords_px
    return plot_tracks(coords, tracks_a, coords_angpix, title=title, mic_size_px=mic_size_px)


def _bfactor_figures(out: Path) -> list[tuple[str, object]]:
    """``[("bfactors", Figure), ("scalefactors", Figure)]`` of ``<out>/bfactors.star`` ([] when absent)."""
    from ..io.polish import read_bfactors

    bstar = out / "bfactors.star"
    if not bstar.exists():
        return []
    table = read_bfactors(bstar)
    return [("bfactors", plot_bfactors(table.bfactor_a2)), ("scalefactors", plot_scales(table.log_scale))]


def write_logfile(out_dir: str | os.PathLike, pages: list[TracksPage]) -> Path:
    """bfactors.png/.eps, scalefactors.png/.eps, ``<root>_tracks.eps`` and logfile.pdf (B-factors, scales,
    one tracks page per micrograph whose ``_tracks.star`` exists)."""
    from matplotlib.backends.backend_pdf import PdfPages

    out = Path(out_dir)
    figs = _bfactor_figures(out)
    for stem, fig in figs:
        save_figure(fig, out / f"{stem}.png")
        save_figure(fig, out / f"{stem}.eps")
    pdf_path = out / "logfile.pdf"
    tmp = out / f".logfile.pdf.tmp{os.getpid()}"
    with PdfPages(str(tmp)) as pdf:
        for _, fig in figs:
            pdf.savefig(fig)
        for page in pages:
            tpath = Path(page.root + "_tracks.star")
            if not tpath.exists():
                continue
            fig = tracks_figure(tpath, page.coords_px, page.coords_angpix, page.title, page.mic_size_px)
            save_figure(fig, page.root + "_tracks.eps")  # RELION's per-micrograph EPS
            pdf.savefig(fig)
    os.replace(tmp, pdf_path)
    return pdf_path


def polish_figures(out_dir: str | os.PathLike, max_micrographs: int = 10) -> list[tuple[str, object]]:
    """``[(name, Figure)]``: B-factors, scales, then the tracks of up to ``max_micrographs`` micrographs
    (drawn at the coordinates of their ``_shiny.star`` when it exists)."""
    from ..io import labels as L
    from ..io.particles import read_particles

    out = Path(out_dir)
    figs = _bfactor_figures(out)
    for tpath in sorted(out.rglob("*_tracks.star"))[:max_micrographs]:
        stem = str(tpath)[: -len("_tracks.star")]
        shiny = Path(stem + "_shiny.star")
        coords, angpix = None, 1.0
        if shiny.exists():
            table = read_particles(shiny)
            coords = np.stack([table.particles[L.COORDINATE_X].to_numpy(np.float64),
                               table.particles[L.COORDINATE_Y].to_numpy(np.float64)], -1)
            angpix = float(table.optics[L.IMAGE_PIXEL_SIZE].iloc[0])
        figs.append((Path(stem).name + "_tracks", tracks_figure(tpath, coords, angpix, title=Path(stem).name)))
    return figs


def write_viewer_pngs(out_dir: str | os.PathLike, dest: str | os.PathLike, max_micrographs: int = 10) -> list[str]:
    """Save :func:`polish_figures` as PNGs in ``dest`` (atomic); returns the paths."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in polish_figures(out_dir, max_micrographs):
        path = dest / f"viewer_{name}.png"
        save_figure(fig, path)
        paths.append(str(path))
    return paths
