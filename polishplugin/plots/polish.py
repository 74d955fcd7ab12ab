"""Plots of the polishing outputs (Agg-safe): per-frame B-factors and scales, particle tracks, logfile.pdf.

Used by ``motion_refine`` (logfile.pdf) and by ``viewers/viewer_polish.py``.  RELION's style: tracks
scaled x30 drawn at the particles' coordinates (black), track starts as blue markers, the mean track at
the micrograph centre (blue, red start), Y axis flipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["plot_bfactors", "plot_scales", "plot_tracks", "write_logfile", "TRACK_SCALE"]

TRACK_SCALE = 30.0


def _figure(size=(6.0, 4.0)):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def plot_bfactors(bfac: np.ndarray, fig=None):
    fig = fig or _figure()
    ax = fig.add_subplot(111)
    ax.plot(np.arange(len(bfac)), bfac, "o-", color="tab:blue")
    ax.set_title("Polishing B-factors")
    ax.set_xlabel("movie frame")
    ax.set_ylabel("B-factor")
    ax.grid(color="0.85")
    return fig


def plot_scales(lnk: np.ndarray, fig=None):
    fig = fig or _figure()
    ax = fig.add_subplot(111)
    ax.plot(np.arange(len(lnk)), lnk, "o-", color="tab:red")
    ax.set_title("Polishing scale-factors")
    ax.set_xlabel("movie frame")
    ax.set_ylabel("Scale-factor")
    ax.grid(color="0.85")
    return fig


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
    ax.set_title(title, fontsize=8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.invert_yaxis()
    return fig


def write_logfile(out_dir: str, names: list[str], project=None) -> Path:
    """bfactors.png/.eps, scalefactors.png/.eps, ``<root>_tracks.eps`` and logfile.pdf (B-factors, scales,
    one tracks page per micrograph)."""
    from matplotlib.backends.backend_pdf import PdfPages

    from ..io import labels as L
    from ..io.star import read_star
    from ..programs._polish_io import micrograph_root

    out = Path(out_dir)
    figs = []
    bstar = out / "bfactors.star"
    if bstar.exists():
        t = read_star(bstar)["perframe_bfactors"]
        fb = plot_bfactors(np.asarray(t[L.BFACTOR_USED_FOR_SHARPENING], np.float64))
        fs = plot_scales(np.asarray(t[L.FITTED_INTERCEPT_GUINIER_PLOT], np.float64))
        for fig, stem in ((fb, "bfactors"), (fs, "scalefactors")):
            fig.savefig(out / f"{stem}.png", dpi=100)
            fig.savefig(out / f"{stem}.eps")
        figs += [fb, fs]
    pdf_path = out / "logfile.pdf"
    tmp = out / f".logfile.pdf.tmp{os.getpid()}"
    with PdfPages(str(tmp)) as pdf:
        for fig in figs:
            pdf.savefig(fig)
        for i, name in enumerate(names):
            tpath = Path(str(micrograph_root(out_dir, name)) + "_tracks.star")
            if not tpath.exists():
                continue
            blocks = read_star(tpath)
            n_p = int(blocks["general"][L.PARTICLE_NUMBER].iloc[0])
            tr = np.stack([np.stack([np.asarray(blocks[str(p)][L.ORIGIN_X_ANGST], np.float64),
                                     np.asarray(blocks[str(p)][L.ORIGIN_Y_ANGST], np.float64)], -1)
                           for p in range(n_p)])
            if project is not None:
                idx = project.mic_names.index(name)
                df = project.particles.iloc[project.mic_rows[idx]]
                coords = np.stack([np.asarray(df[L.COORDINATE_X], np.float64),
                                   np.asarray(df[L.COORDINATE_Y], np.float64)], -1)
                info = project.movie_infos[idx]
                cps = project.cps if project.cps > 0 else info.movie_angpix * info.binning
                size = (info.width * info.movie_angpix / cps, info.height * info.movie_angpix / cps) \
                    if info.width else None
            else:
                coords = np.zeros((n_p, 2))
                cps, size = 1.0, None
            fig = plot_tracks(coords, tr, cps, title=name, mic_size_px=size)
            fig.savefig(str(micrograph_root(out_dir, name)) + "_tracks.eps")  # RELION's per-micrograph EPS
            pdf.savefig(fig)
    os.replace(tmp, pdf_path)
    return pdf_path


def polish_figures(out_dir: str | os.PathLike, max_micrographs: int = 10) -> list[tuple[str, object]]:
    """``[(name, Figure)]``: B-factors, scales, then the tracks of up to ``max_micrographs`` micrographs."""
    from ..io import labels as L
    from ..io.star import read_star

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
