"""Matplotlib figures of a post-processing run (Agg-safe; no Scipion imports).

Used by ``polishplugin postprocess`` (``logfile.pdf``, ``<o>_fsc.png``, ``<o>_guinier.png``) and by
the Scipion viewer.  Every function takes arrays or a :class:`~polishplugin.io.postprocess.PostprocessResult`
(``*_from_star``: a ``postprocess.star`` read by :func:`polishplugin.io.postprocess.read_postprocess`) and
returns or saves a ``matplotlib.figure.Figure``.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from ..core.postprocess import AUTOB_MIN_SHELLS, GUINIER_MISSING
from ..io import labels as L
from ..io.postprocess import PostprocessResult, read_postprocess

__all__ = ["fsc_figure", "fsc_comparison_figure",
           "guinier_figure", "slices_figure", "fsc_figure_from_result", "guinier_figure_from_result",
           "fsc_figure_from_star", "guinier_figure_from_star", "autob_fit_extent", "guinier_fit_span",
           "figures_from_star", "save_postprocess_pngs",
           "save_postprocess_figures", "save_png", "save_pdf", "save_figure", "save_pngs_and_pdf",
           "write_raster_pdf"]

# column -> (legend, colour, style) of the FSC plot; RELION: corrected black, unmasked green,
# masked blue, phase-randomised red
_FSC_STYLE = {
    L.FOURIER_SHELL_CORRELATION_CORRECTED: ("corrected", "black", 2.0),
    L.FOURIER_SHELL_CORRELATION_UNMASKED_MAPS: ("unmasked maps", "green", 1.0),
    L.FOURIER_SHELL_CORRELATION_MASKED_MAPS: ("masked maps", "blue", 1.0),
    L.CORRECTED_FOURIER_SHELL_CORRELATION_PHASE_RANDOMIZED_MASKED_MAPS: ("phase-randomised masked maps", "red", 1.0),
}
_GUINIER_STYLE = {
    L.LOG_AMPLITUDES_ORIGINAL: "original",
    L.LOG_AMPLITUDES_M_T_F_CORRECTED: "MTF-corrected",
    L.LOG_AMPLITUDES_WEIGHTED: "FSC-weighted",
    L.LOG_AMPLITUDES_SHARPENED: "sharpened",
}


def fsc_figure(inv_res: np.ndarray, curves: dict[str, np.ndarray], resolution_a: float | None = None,
               title: str | None = None, fig: Figure | None = None) -> Figure:
    """FSC curves against 1/Å with the 0.143 line (in the legend); ``curves`` maps a legend to values.

    ``title`` (e.g. "before polishing") heads the plot, followed by the FSC-0.143 resolution when
    ``resolution_a`` is given.  ``fig``: draw into this figure (e.g. a Scipion plotter's) instead of a new one.
    """
    fig = Figure(figsize=(7, 4.5)) if fig is None else fig
    ax = fig.add_subplot(111)
    styles = {v[0]: v for v in _FSC_STYLE.values()}
    for name, values in curves.items():
        _, colour, width = styles.get(name, (name, None, 1.0))
        ax.plot(inv_res, values, label=name, color=colour, linewidth=width)
    ax.axhline(0.143, color="grey", linestyle="--", linewidth=0.8, label="FSC = 0.143")
    ax.axhline(0.0, color="grey", linewidth=0.5)
    head = title or "Fourier shell correlation"
    if resolution_a:
        ax.axvline(1.0 / resolution_a, color="grey", linestyle=":", linewidth=0.8)
        head += f": resolution (FSC 0.143) = {resolution_a:.2f} Å"
    ax.set_title(head)
    ax.set_xlabel("resolution (1/Å)")
    ax.set_ylabel("Fourier shell correlation")
    ax.set_ylim(-0.1, 1.05)
    ax.legend(fontsize=8)
    return fig


def fsc_comparison_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str,
                          fig: Figure | None = None) -> Figure:
    """Corrected FSC curves of several maps in one plot: ``curves`` maps a legend to ``(1/Å, FSC,
    FSC-0.143 resolution in Å)``; the 0.143 line is labelled and each resolution marked."""
    fig = Figure(figsize=(7, 4.5)) if fig is None else fig
    ax = fig.add_subplot(111)
    for (name, (inv_res, fsc, res)), colour in zip(curves.items(), ("tab:blue", "tab:red", "black", "tab:green")):
        ax.plot(inv_res, fsc, color=colour, linewidth=1.5, label=f"{name}: {res:.2f} Å")
        ax.axvline(1.0 / res, color=colour, linestyle=":", linewidth=0.8)
    ax.axhline(0.143, color="grey", linestyle="--", linewidth=0.8, label="FSC = 0.143")
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("resolution (1/Å)")
    ax.set_ylabel("Fourier shell correlation (corrected)")
    ax.set_ylim(-0.1, 1.05)
    ax.legend(fontsize=8)
    return fig


def guinier_figure(res_sq: np.ndarray, curves: dict[str, np.ndarray], bfactor_a2: float | None = None,
                   fig: Figure | None = None, fit: tuple[float, float] | None = None,
                   fit_range_a: tuple[float, float] = (10.0, 0.0), title: str | None = None,
                   fit_shells: int | None = None) -> Figure:
    """Guinier plot: ln(amplitude) against 1/res^2; points at -99 (empty shells) are hidden.

    ``fit = (slope, intercept)`` shades the fit range ``fit_range_a`` (low, high resolution in Å; high 0
    = the last point) and draws the fitted line only over it; ``fit_shells`` (the shells the fit used)
    is written in the legend and flagged when fewer than :data:`AUTOB_MIN_SHELLS`.
    """
    fig = Figure(figsize=(7, 4.5)) if fig is None else fig
    ax = fig.add_subplot(111)
    for name, values in curves.items():
        y = np.where(np.asarray(values) <= GUINIER_MISSING + 1e-6, np.nan, values)
        ax.plot(res_sq, y, "-", label=name)
    if fit is not None:
        x0, x1 = guinier_fit_span(res_sq, curves, fit_range_a)
        shells = "" if fit_shells is None else f", {fit_shells} shells"
        few = fit_shells is not None and fit_shells < AUTOB_MIN_SHELLS
        ax.axvspan(x0, x1, color="tab:red" if few else "0.85", alpha=0.25 if few else 0.5, zorder=0,
                   label=f"auto-B fit range{shells}" + (" (too few)" if few else ""))
        xs = np.linspace(x0, x1, 2)
        ax.plot(xs, fit[1] + fit[0] * xs, "--", color="black", label="fitted line")
    head = f"{title}: Guinier plot" if title else "Guinier plot"
    if bfactor_a2 is not None:
        head += f" (B-factor used for sharpening = {bfactor_a2:.2f} Å²)"
    ax.set_title(head, fontsize=10)
    ax.set_xlabel("resolution² (1/Å²)")
    ax.set_ylabel("ln(amplitude) (arbitrary units)")
    ax.legend(fontsize=8)
    return fig


def guinier_fit_span(res_sq: np.ndarray, curves: dict[str, np.ndarray],
                     fit_range_a: tuple[float, float]) -> tuple[float, float]:
    """The 1/res^2 interval of the auto-B fit: from ``fit_range_a[0]`` Å to ``fit_range_a[1]`` Å (0: the
    last shell that has an amplitude in every curve, as the FSC-weighted curve that is fitted)."""
    res_sq = np.asarray(res_sq, np.float64)
    ok = np.ones(res_sq.shape, bool)
    for values in curves.values():
        ok &= np.asarray(values) > GUINIER_MISSING + 1e-6
    last = float(res_sq[ok].max()) if ok.any() else float(np.max(res_sq))
    x0 = 1.0 / fit_range_a[0] ** 2 if fit_range_a[0] > 0 else 0.0
    x1 = min(1.0 / fit_range_a[1] ** 2, last) if fit_range_a[1] > 0 else last
    return x0, max(x1, x0)


def slices_figure(maps: dict[str, np.ndarray], fig: Figure | None = None, title: str | None = None) -> Figure:
    """Central xy, xz and yz slices of each map (one row per map); ``title`` above them."""
    fig = Figure(figsize=(9, 3 * max(len(maps), 1))) if fig is None else fig
    for row, (name, vol) in enumerate(maps.items()):
        c = [s // 2 for s in vol.shape]
        for col, (cut, label) in enumerate([(vol[c[0]], "xy"), (vol[:, c[1]], "xz"), (vol[:, :, c[2]], "yz")]):
            ax = fig.add_subplot(len(maps), 3, 3 * row + col + 1)
            ax.imshow(cut, cmap="gray", origin="lower")
            ax.set_title(f"{name} ({label})", fontsize=8)
            ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def fsc_figure_from_result(post: PostprocessResult, fig: Figure | None = None, title: str | None = None) -> Figure:
    """FSC figure of a post-processing result (all FSC columns it has); ``title`` e.g. "after polishing"."""
    fsc = post.fsc
    curves = {_FSC_STYLE[c][0]: fsc[c].to_numpy() for c in _FSC_STYLE if c in fsc.columns}
    res = post.general.get(L.FINAL_RESOLUTION)
    return fsc_figure(fsc[L.RESOLUTION].to_numpy(), curves, float(res) if res is not None else None, title=title,
                      fig=fig)


def autob_fit_extent(post: PostprocessResult,
                     fit_range_a: tuple[float, float] = (10.0, 0.0)) -> tuple[tuple[float, float], int | None]:
    """The auto-B fit's resolution range (Å) and shell count as the post-processing recorded them
    (``fit_range_a`` and None for a postprocess.star without them, e.g. RELION's)."""
    g = post.general
    shells = g.get(L.POLISH_AUTOB_FIT_SHELLS)
    if L.POLISH_AUTOB_FIT_LOWRES in g and L.POLISH_AUTOB_FIT_HIGHRES in g:
        fit_range_a = (float(g[L.POLISH_AUTOB_FIT_LOWRES]), float(g[L.POLISH_AUTOB_FIT_HIGHRES]))
    return fit_range_a, None if shells is None else int(shells)


def guinier_figure_from_result(post: PostprocessResult, fig: Figure | None = None,
                               fit_range_a: tuple[float, float] = (10.0, 0.0),
                               title: str | None = None) -> Figure | None:
    """Guinier figure of a post-processing result (None without a data_guinier table); the fit range
    is the one recorded in the result when present, else ``fit_range_a``."""
    gui = post.guinier
    if gui is None:
        return None
    gcurves = {label: gui[c].to_numpy() for c, label in _GUINIER_STYLE.items() if c in gui.columns}
    fit_range_a, shells = autob_fit_extent(post, fit_range_a)
    return guinier_figure(gui[L.RESOLUTION_SQUARED].to_numpy(), gcurves, post.bfactor_a2, fig=fig,
                          fit=post.guinier_fit, fit_range_a=fit_range_a, title=title, fit_shells=shells)


def fsc_figure_from_star(path: str | os.PathLike, fig: Figure | None = None, title: str | None = None) -> Figure:
    """FSC figure of a postprocess.star file (all FSC columns it has)."""
    return fsc_figure_from_result(read_postprocess(path), fig, title)


def guinier_figure_from_star(path: str | os.PathLike, fig: Figure | None = None,
                             fit_range_a: tuple[float, float] = (10.0, 0.0),
                             title: str | None = None) -> Figure | None:
    """Guinier figure of a postprocess.star file (None without a data_guinier table)."""
    return guinier_figure_from_result(read_postprocess(path), fig, fit_range_a, title)


def figures_from_star(path: str | os.PathLike, title: str | None = None) -> tuple[Figure, Figure | None]:
    """FSC and Guinier figures of a postprocess.star file."""
    post = read_postprocess(path)
    return fsc_figure_from_result(post, title=title), guinier_figure_from_result(post, title=title)


def save_postprocess_pngs(star_path: str | os.PathLike, out_dir: str | os.PathLike,
                          maps: dict[str, np.ndarray] | None = None, title: str | None = None) -> list[str]:
    """Save ``fsc.png``, ``guinier.png`` (and ``slices.png`` when ``maps`` are given) under
    ``out_dir``; ``title`` (e.g. "before polishing") heads each plot; returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    fig_fsc, fig_gui = figures_from_star(star_path, title)
    for name, fig in (("fsc.png", fig_fsc), ("guinier.png", fig_gui),
                      ("slices.png", slices_figure(maps, title=title) if maps else None)):
        if fig is not None:
            path = os.path.join(out_dir, name)
            save_png(fig, path)
            written.append(path)
    return written


def save_postprocess_figures(post: PostprocessResult, paths: dict[str, str],
                             fit_range_a: tuple[float, float] = (10.0, 0.0)) -> None:
    """The figures of ``polishplugin postprocess``: ``paths["fsc_png"]``, ``paths["guinier_png"]`` and
    both as the pages of ``paths["logfile"]`` (names from :func:`polishplugin.io.postprocess.postprocess_paths`),
    each drawn once (:func:`save_pngs_and_pdf`)."""
    figs = [(fsc_figure_from_result(post), paths["fsc_png"]),
            (guinier_figure_from_result(post, fit_range_a=fit_range_a), paths["guinier_png"])]
    save_pngs_and_pdf([(fig, png) for fig, png in figs if fig is not None], paths["logfile"])


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save a figure as PNG atomically (temporary name, then rename)."""
    save_figure(fig, path, dpi)


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save a figure atomically (temporary name, then rename) in the format its suffix names (png, eps, pdf)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    fmt = os.path.splitext(str(path))[1].lstrip(".").lower() or "png"
    tmp = f"{path}.tmp{os.getpid()}.{fmt}"
    fig.savefig(tmp, dpi=dpi, format=fmt)
    os.replace(tmp, path)


#: zlib level of the PNGs and PDF images of :func:`save_pngs_and_pdf`: 3 instead of PIL's 6 encodes the
#: 1200 x 420 local-resolution slices in 21 instead of 47 ms for a 7 % larger file (line plots: +1.5 %)
_ZLIB_LEVEL = 3


def save_pngs_and_pdf(figs: list[tuple[Figure, str]], pdf_path: str | os.PathLike, dpi: int = 100) -> None:
    """Draw each figure once with Agg, save it as its PNG and all of them as the pages of ``pdf_path``
    (every file atomically).

    The PDF pages are the PNG images (:func:`write_raster_pdf`, lossless at ``dpi``): a program's log
    PDF costs two zlib streams instead of a second, vector rendering of every figure (matplotlib's PDF
    backend: its import plus ~50 ms a figure, about a quarter of ``polishplugin postprocess`` at 160^3 on
    the 2-core VM; ``bench/README.md``).
    """
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    pages = []
    for fig, png in figs:
        canvas = FigureCanvasAgg(fig)
        dpi_before = fig.dpi
        fig.set_dpi(dpi)
        canvas.draw()
        rgba = np.array(canvas.buffer_rgba())
        fig.set_dpi(dpi_before)
        tmp = f"{png}.tmp{os.getpid()}.png"
        mpl.image.imsave(tmp, rgba, format="png", dpi=dpi, pil_kwargs={"compress_level": _ZLIB_LEVEL},
                         metadata={"Software": f"Matplotlib version{mpl.__version__}, https://matplotlib.org/"})
        os.replace(tmp, png)
        pages.append(rgba[:, :, :3])
    write_raster_pdf(pages, pdf_path, dpi)


def write_raster_pdf(images: list[np.ndarray], path: str | os.PathLike, dpi: float = 100.0) -> None:
    """RGB images (``(height, width, 3)`` uint8) as the pages of a PDF, one image filling each page
    (``dpi`` pixels per inch, Flate-compressed, lossless), written atomically."""
    import zlib

    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for image in images:
        h, w = image.shape[:2]
        data = zlib.compress(np.ascontiguousarray(image, np.uint8).tobytes(), _ZLIB_LEVEL)
        pw, ph = w * 72.0 / dpi, h * 72.0 / dpi
        n = len(objects) + 1                     # this page's object number; contents n+1, image n+2
        content = f"q {pw:.3f} 0 0 {ph:.3f} 0 0 cm /Im0 Do Q".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw:.3f} {ph:.3f}] "
                       f"/Resources << /XObject << /Im0 {n + 2} 0 R >> >> /Contents {n + 1} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        objects.append(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
                       b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n" % (w, h, len(data))
                       + data + b"\nendstream")
        kids.append(n)
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode()
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    tmp = f"{path}.tmp{os.getpid()}.pdf"
    with open(tmp, "wb") as fh:
        fh.write(out)
    os.replace(tmp, path)


def save_pdf(figs: list[Figure], path: str | os.PathLike) -> None:
    """Several figures as pages of one PDF (``logfile.pdf``), written atomically."""
    from matplotlib.backends.backend_pdf import PdfPages
    tmp = f"{path}.tmp{os.getpid()}.pdf"
    with PdfPages(tmp) as pdf:
        for fig in figs:
            pdf.savefig(fig)
    os.replace(tmp, path)
