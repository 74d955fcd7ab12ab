"""Post-processing files (RELION relion_postprocess): inputs and every output.

* the half maps and mask a run reads (:func:`read_half_maps`, checked; :func:`other_half_name`);
* ``postprocess.star``: ``data_general`` + ``data_fsc`` + optional ``data_guinier``
  (:func:`read_postprocess`, :func:`write_postprocess`; the tables built by :func:`fsc_table` and
  :func:`guinier_table` in RELION's column order);
* ``<o>_fsc.xml`` (EMDB FSC XML) and ``<o>_fsc.dat`` (two columns) of the corrected FSC;
* :func:`postprocess_paths`: the name of every output of a run with ``--o root``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..core.fourier import n_shells, shell_resolution_a
from . import labels as L
from .mrc import MrcError, read_mrc
from .star import atomic_write_text, read_star, required_column as _column, StarError, write_star

__all__ = ["PostprocessResult", "read_postprocess", "write_postprocess", "fsc_table", "guinier_table",
           "FSC_CURVE_LABELS", "GUINIER_CURVE_LABELS", "write_fsc_xml", "read_fsc_xml", "write_fsc_dat",
           "read_fsc_dat", "HalfMaps", "read_half_maps", "other_half_name", "postprocess_paths"]

#: FSC curves of ``data_fsc`` in RELION's column order: name -> label
FSC_CURVE_LABELS = {
    "corrected": L.FOURIER_SHELL_CORRELATION_CORRECTED,
    "particle_mask_fraction": L.FOURIER_SHELL_CORRELATION_PARTICLE_MASK_FRACTION,
    "particle_molweight": L.FOURIER_SHELL_CORRELATION_PARTICLE_MOL_WEIGHT,
    "unmasked": L.FOURIER_SHELL_CORRELATION_UNMASKED_MAPS,
    "masked": L.FOURIER_SHELL_CORRELATION_MASKED_MAPS,
    "random_masked": L.CORRECTED_FOURIER_SHELL_CORRELATION_PHASE_RANDOMIZED_MASKED_MAPS,
}
#: Guinier curves of ``data_guinier`` in RELION's column order: name -> label
GUINIER_CURVE_LABELS = {"original": L.LOG_AMPLITUDES_ORIGINAL, "mtf": L.LOG_AMPLITUDES_M_T_F_CORRECTED,
                        "weighted": L.LOG_AMPLITUDES_WEIGHTED, "sharpened": L.LOG_AMPLITUDES_SHARPENED}
#: tolerance of the [0, 1] mask check (RELION: 1e-6)
MASK_TOLERANCE = 1e-6
#: relative tolerance for two half maps' pixel sizes
ANGPIX_TOLERANCE = 1e-3


# ------------------------------------------------------------------ postprocess.star
@dataclass
class PostprocessResult:
    """``postprocess.star``: ``general`` (label -> value), ``fsc`` and ``guinier`` tables."""

    general: dict
    fsc: pd.DataFrame
    guinier: pd.DataFrame | None = None
    path: Path | None = None

    @property
    def final_resolution_a(self) -> float:
        return float(self.general[L.FINAL_RESOLUTION])

    @property
    def bfactor_a2(self) -> float | None:
        value = self.general.get(L.BFACTOR_USED_FOR_SHARPENING)
        return None if value is None else float(value)

    def half_maps(self) -> tuple[str | None, str | None]:
        return self.general.get(L.UNFILTERED_MAP_HALF1), self.general.get(L.UNFILTERED_MAP_HALF2)

    @property
    def mask_name(self) -> str | None:
        return self.general.get(L.MASK_NAME)

    @property
    def guinier_fit(self) -> tuple[float, float] | None:
        """``(slope, intercept)`` of the auto-B Guinier fit, None without one."""
        if L.FITTED_SLOPE_GUINIER_PLOT not in self.general:
            return None
        return float(self.general[L.FITTED_SLOPE_GUINIER_PLOT]), float(self.general[L.FITTED_INTERCEPT_GUINIER_PLOT])

    def fsc_curve(self, label: str = L.FOURIER_SHELL_CORRELATION_CORRECTED) -> tuple[np.ndarray, np.ndarray]:
        """``(resolution 1/Å, FSC)`` for one FSC column (default: the corrected one)."""
        return (self.fsc[L.RESOLUTION].to_numpy(dtype=np.float64),
                _column(self.fsc, label, self.path, "fsc").astype(np.float64))


def read_postprocess(path: str | os.PathLike) -> PostprocessResult:
    """Read a RELION ``postprocess.star``; StarError naming the file when blocks are missing."""
    path = Path(path)
    blocks = read_star(path)
    for name in ("general", "fsc"):
        if name not in blocks:
            raise StarError(f"postprocess STAR file {path} has no data_{name} block")
    general = {k: (v.item() if hasattr(v, "item") else v) for k, v in blocks["general"].iloc[0].items()}
    for label in (L.SPECTRAL_INDEX, L.RESOLUTION):
        _column(blocks["fsc"], label, path, "fsc")
    return PostprocessResult(general, blocks["fsc"], blocks.get("guinier"), path)


def write_postprocess(path: str | os.PathLike, result: PostprocessResult, comments: tuple[str, ...] = ()) -> None:
    """Write ``postprocess.star`` (general, fsc, [guinier]) in RELION layout, atomically."""
    blocks: dict = {"general": dict(result.general), "fsc": result.fsc}
    if result.guinier is not None:
        blocks["guinier"] = result.guinier
    write_star(path, blocks, comments=comments)


def fsc_table(box: int, angpix: float, curves: Mapping[str, np.ndarray | None]) -> pd.DataFrame:
    """``data_fsc``: shell index, resolution (1/Å; shell 0 at 999 Å as RELION), resolution (Å), then
    the ``curves`` named as in :data:`FSC_CURVE_LABELS` (None: column left out) in RELION's order."""
    unknown = set(curves) - set(FSC_CURVE_LABELS)
    if unknown:
        raise ValueError(f"unknown FSC curve(s) {sorted(unknown)}; known: {list(FSC_CURVE_LABELS)}")
    n = n_shells(box)
    res_a = shell_resolution_a(box, angpix, n)
    cols: dict[str, np.ndarray] = {L.SPECTRAL_INDEX: np.arange(n), L.RESOLUTION: 1.0 / res_a,
                                   L.ANGSTROM_RESOLUTION: res_a}
    for name, label in FSC_CURVE_LABELS.items():
        curve = curves.get(name)
        if curve is not None:
            cols[label] = curve
    return pd.DataFrame(cols)


def guinier_table(res_sq: np.ndarray, curves: Mapping[str, np.ndarray],
                  intercept: float | None = None) -> pd.DataFrame:
    """``data_guinier``: 1/res^2, the ln-amplitude ``curves`` named as in :data:`GUINIER_CURVE_LABELS`
    (RELION's order) and, after an auto-B fit, its intercept on every row."""
    cols = {L.RESOLUTION_SQUARED: np.asarray(res_sq)}
    for name, label in GUINIER_CURVE_LABELS.items():
        if name in curves:
            cols[label] = curves[name]
    if intercept is not None:
        cols[L.LOG_AMPLITUDES_INTERCEPT] = np.full(cols[L.RESOLUTION_SQUARED].size, intercept)
    return pd.DataFrame(cols)


# ------------------------------------------------------------------ FSC XML / dat
def write_fsc_xml(path: str | os.PathLike, inv_res: np.ndarray, fsc: np.ndarray, title: str) -> None:
    """EMDB FSC XML (x = 1/Å, y = FSC, 6 decimals), atomically."""
    rows = "".join(f"  <coordinate>\n    <x>{x:.6f}</x>\n    <y>{y:.6f}</y>\n  </coordinate>\n"
                   for x, y in zip(inv_res, fsc))
    atomic_write_text(path, f'<fsc title="{title}" xaxis="Resolution (A-1)" yaxis="Correlation Coefficient">\n'
                            f"{rows}</fsc>\n")


def _coordinate(element: ET.Element, tag: str) -> float:
    text = element.findtext(tag)
    if text is None:
        raise ValueError(f"a <coordinate> lacks <{tag}>")
    return float(text)


def read_fsc_xml(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, str]:
    """``(inv_res, fsc, title)`` of an EMDB FSC XML file; StarError naming the file when unreadable."""
    try:
        root = ET.parse(str(path)).getroot()
        x = np.array([_coordinate(c, "x") for c in root.iter("coordinate")])
        y = np.array([_coordinate(c, "y") for c in root.iter("coordinate")])
    except FileNotFoundError:
        raise StarError(f"FSC XML file {path} does not exist") from None
    except (ET.ParseError, TypeError, ValueError) as exc:
        raise StarError(f"FSC XML file {path} is not a valid EMDB FSC file ({exc})") from None
    return x, y, root.get("title", "")


def write_fsc_dat(path: str | os.PathLike, inv_res: np.ndarray, fsc: np.ndarray) -> None:
    """Two columns ``1/Å FSC`` (6 decimals), atomically."""
    atomic_write_text(path, "".join(f"{x:.6f} {y:.6f}\n" for x, y in zip(inv_res, fsc)))


def read_fsc_dat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(inv_res, fsc)`` of a two-column ``_fsc.dat`` file."""
    try:
        data = np.loadtxt(path, ndmin=2)
    except FileNotFoundError:
        raise StarError(f"FSC file {path} does not exist") from None
    except ValueError as exc:
        raise StarError(f"FSC file {path} is not two columns of numbers ({exc})") from None
    if data.shape[1] != 2:
        raise StarError(f"FSC file {path} has {data.shape[1]} columns, expected 2")
    return data[:, 0], data[:, 1]


# ------------------------------------------------------------------ inputs
@dataclass
class HalfMaps:
    """Two half maps (float32, cubic, same shape), an optional mask in [0, 1] and the pixel size."""

    half1: np.ndarray
    half2: np.ndarray
    mask: np.ndarray | None
    angpix: float
    half2_name: str


def other_half_name(half1: str) -> str:
    """RELION ``getTheOtherHalf``: the half-2 file name, ``half1`` -> ``half2`` in the base name."""
    path = Path(half1)
    if "half1" not in path.name:
        raise MrcError(f"cannot guess the second half map from {half1}: its name has no 'half1'; give --i2")
    return str(path.with_name(path.name.replace("half1", "half2")))


def read_half_maps(half1: str, half2: str = "", mask: str = "", angpix: float = -1.0) -> HalfMaps:
    """Read and check the half maps (``half2`` empty: :func:`other_half_name`) and the mask.

    ``angpix <= 0``: the pixel size of half 1's header.  Raises :class:`MrcError` (one sentence naming
    the file) for maps that are not cubic 3D, of different shapes or pixel sizes, a missing pixel size,
    or a mask of another shape or with values outside [0, 1].
    """
    half2_name = half2 or other_half_name(half1)
    h1, angpix1 = read_mrc(half1)
    h2, angpix2 = read_mrc(half2_name)
    if h1.ndim != 3 or len(set(h1.shape)) != 1:
        raise MrcError(f"half map {half1} is not a cubic 3D map (shape {h1.shape})")
    if h1.shape != h2.shape:
        raise MrcError(f"half maps {half1} {h1.shape} and {half2_name} {h2.shape} have different shapes")
    if angpix1 > 0 and angpix2 > 0 and abs(angpix1 - angpix2) > ANGPIX_TOLERANCE * max(angpix1, angpix2):
        raise MrcError(f"half maps {half1} ({angpix1:g} Å) and {half2_name} ({angpix2:g} Å) "
                       "have different pixel sizes")
    angpix = angpix if angpix > 0 else angpix1
    if not angpix > 0:
        raise MrcError(f"half map {half1} has no pixel size in its header; give --angpix")
    mask_map = None
    if mask:
        mask_map, _ = read_mrc(mask)
        if mask_map.shape != h1.shape:
            raise MrcError(f"mask {mask} has shape {mask_map.shape}, the half maps {h1.shape}")
        if mask_map.min() < -MASK_TOLERANCE or mask_map.max() > 1 + MASK_TOLERANCE:
            raise MrcError(f"mask {mask} has values outside [0, 1] "
                           f"(min {mask_map.min():g}, max {mask_map.max():g})")
    # float32 throughout: single-precision FFTs (FSC sums are accumulated in float64)
    return HalfMaps(h1, h2, mask_map, float(angpix), half2_name)


def postprocess_paths(root: str) -> dict[str, str]:
    """Every output of ``polishplugin postprocess --o root`` (RELION names)."""
    folder = os.path.dirname(root) or "."
    paths = {key: root + suffix for key, suffix in (
        ("map", ".mrc"), ("masked", "_masked.mrc"), ("star", ".star"), ("fsc_xml", "_fsc.xml"),
        ("fsc_dat", "_fsc.dat"), ("fsc_png", "_fsc.png"), ("guinier_png", "_guinier.png"),
        ("half1", "_half1.mrc"), ("half2", "_half2.mrc"))}
    paths["logfile"] = os.path.join(folder, "logfile.pdf")
    return paths
