"""Local-resolution plots: histogram inside the mask, slices coloured by local resolution.

The figure functions are Agg-safe (``matplotlib.figure.Figure``, no pyplot state) and are used both by
``polishplugin local_resolution`` (PNG/PDF next to the maps) and by :class:`PolishLocalResViewer`
inside Scipion.  The Scipion class is defined only when pyworkflow is importable.
"""

from __future__ import annotations


import numpy as np
from matplotlib.figure import Figure

from .postprocess import save_pdf, save_png, save_pngs_and_pdf  # shared atomic writers (re-exported)

__all__ = ["histogram_values", "histogram_figure", "slices_figure", "save_png", "save_pdf", "locres_range",
           "save_locres_figures"]


def histogram_values(locres: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Local resolutions of voxels with ``mask > 0.5`` (all voxels with ``locres > 0`` without mask)."""
    sel = (locres > 0) if mask is None else ((mask > 0.5) & (locres > 0))
    return np.asarray(locres[sel], np.float64)


def locres_range(values: np.ndarray) -> tuple[float, float]:
    """A colour range for the local resolutions: the 2nd .. 98th percentile (rounded outward to 0.1 Å)."""
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [2, 98])
    lo, hi = np.floor(lo * 10) / 10, np.ceil(hi * 10) / 10
    return (float(lo), float(hi if hi > lo else lo + 0.1))


def histogram_figure(values: np.ndarray, title: str = "Local resolution") -> Figure:
    """Histogram of local resolutions (Å) with the median marked."""
    fig = Figure(figsize=(6, 4))
    # fixed margins instead of tight_layout (which draws the figure once more to measure it)
    fig.subplots_adjust(left=0.14, right=0.96, bottom=0.13, top=0.91)
    ax = fig.add_subplot(111)
    if values.size:
        # one filled step artist (not one rectangle per bin): the same bars, a fraction of the drawing time
        counts, edges = np.histogram(values, bins=min(50, max(10, int(np.sqrt(values.size)))))
        ax.stairs(counts, edges, fill=True, color="steelblue")
        ax.stairs(counts, edges, color="black", linewidth=0.5)
        med = float(np.median(values))
        ax.axvline(med, color="red", linestyle="--", label=f"median {med:.2f} Å")
        ax.legend()
    ax.set_xlabel("local resolution (Å)")
    ax.set_ylabel("voxels")
    ax.set_title(title)
    return fig


def slices_figure(density: np.ndarray, locres: np.ndarray, mask: np.ndarray | None = None,
                  vrange: tuple[float, float] | None = None,
                  title: str = "Local resolution on the map (central slices)") -> Figure:
    """Central z, y, x slices of ``density`` in grey with the local resolution overlaid in colour
    (where ``mask > 0.5``, or ``locres > 0``), and a colour bar in Å."""
    box = density.shape[0]
    sel = (locres > 0) if mask is None else ((mask > 0.5) & (locres > 0))
    lo, hi = vrange if vrange is not None else locres_range(locres[sel])
    fig = Figure(figsize=(12, 4.2))
    axes = [fig.add_subplot(1, 3, k + 1) for k in range(3)]
    image = None
    for k, (ax, name) in enumerate(zip(axes, ("z", "y", "x"))):
        index = [slice(None)] * 3
        index[k] = box // 2
        d = density[tuple(index)]
        r = np.where(sel[tuple(index)], locres[tuple(index)], np.nan)
        ax.imshow(d, cmap="gray", origin="lower")
        image = ax.imshow(r, cmap="jet_r", vmin=lo, vmax=hi, alpha=0.6, origin="lower")
        ax.set_title(f"{name} = {box // 2}")
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="local resolution (Å)")
    fig.suptitle(title)
    return fig


def save_locres_figures(locres: np.ndarray, filtered: np.ndarray, mask: np.ndarray | None,
                        paths: dict[str, str]) -> tuple[np.ndarray, tuple[float, float]]:
    """The figures of ``polishplugin local_resolution``: histogram (``paths["histogram_png"]``), slices
    (``paths["slices_png"]``) and both in ``paths["histogram_pdf"]`` (names from
    :func:`polishplugin.io.local_resolution.locres_paths`).  Returns the histogram's values and the
    colour range used."""
    values = histogram_values(locres, mask)
    vrange = locres_range(values)
    hist = histogram_figure(values, "Local resolution" + (" inside the mask" if mask is not None else ""))
    slices = slices_figure(filtered, locres, mask, vrange)
    save_pngs_and_pdf([(hist, paths["histogram_png"]), (slices, paths["slices_png"])], paths["histogram_pdf"])
    return values, vrange
