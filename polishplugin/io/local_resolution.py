"""Local-resolution outputs (RELION ``relion_postprocess --locres``): file names, the per-point FSC
STAR file, the ChimeraX colouring script and the short-name links.

``<o>_locres_fscs.star`` is a valid STAR file: ``data_locres_points`` (centre ``x = kk``, ``y = ii``,
``z = jj`` in px from the box centre, resolution in Å), then one ``data_fsc_KKKKK_IIIII_JJJJJ`` table
per point with postprocess.star's FSC columns (:func:`polishplugin.io.postprocess.fsc_table`).
"""

from __future__ import annotations

import os
import shutil
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.local_resolution import PointResult
from . import labels as L
from .postprocess import _column, fsc_table
from .star import StarError, atomic_write_text, read_star, write_star

__all__ = ["locres_paths", "relion_integer_string", "point_table_name", "write_locres_fscs",
           "read_locres_fscs", "chimerax_script", "write_chimerax_script", "link_output"]

POINTS_BLOCK = "locres_points"


def locres_paths(root: str) -> dict[str, str]:
    """Every output file of a run with ``--o root`` (RELION names), and the short-name links in its folder."""
    paths = {key: root + suffix for key, suffix in (
        ("locres", "_locres.mrc"), ("filtered", "_locres_filtered.mrc"), ("fscs", "_locres_fscs.star"),
        ("histogram_png", "_histogram.png"), ("histogram_pdf", "_histogram.pdf"),
        ("slices_png", "_slices.png"), ("chimerax", "_chimerax.cxc"))}
    folder = os.path.dirname(root) or "."
    paths["locres_link"] = os.path.join(folder, "locres.mrc")
    paths["filtered_link"] = os.path.join(folder, "locres_filtered.mrc")
    return paths


def relion_integer_string(value: int, width: int = 5) -> str:
    """RELION ``integerToString(v, width)``: zero-padded, a minus sign taking one of the places."""
    v = int(value)
    digits = str(abs(v)).rjust(width - (1 if v < 0 else 0), "0")
    return ("-" + digits) if v < 0 else digits


def point_table_name(point: tuple[int, int, int]) -> str:
    """``fsc_KKKKK_IIIII_JJJJJ`` as RELION names a point's table."""
    return "fsc_" + "_".join(relion_integer_string(v) for v in point)


def write_locres_fscs(path: str | os.PathLike, points: Sequence[PointResult], fsc_unmasked: np.ndarray, box: int,
                      angpix: float, comments: tuple[str, ...] = ()) -> None:
    """Write ``<o>_locres_fscs.star`` (points table + one FSC table per point, in ``points`` order)."""
    blocks: dict = {POINTS_BLOCK: pd.DataFrame({
        L.COORDINATE_X: [p.point[0] for p in points], L.COORDINATE_Y: [p.point[1] for p in points],
        L.COORDINATE_Z: [p.point[2] for p in points],
        L.ANGSTROM_RESOLUTION: [p.resolution_a for p in points]})}
    for p in points:
        blocks[point_table_name(p.point)] = fsc_table(box, angpix, {
            "corrected": p.fsc_true, "unmasked": fsc_unmasked, "masked": p.fsc_masked,
            "random_masked": p.fsc_random_masked})
    write_star(path, blocks, comments=comments)


def read_locres_fscs(path: str | os.PathLike) -> tuple[list[PointResult], np.ndarray | None]:
    """``(points, fsc_unmasked)`` of a ``_locres_fscs.star`` file (unmasked FSC None without points)."""
    blocks = read_star(path)
    if POINTS_BLOCK not in blocks:
        raise StarError(f"local-resolution STAR file {path} has no data_{POINTS_BLOCK} block")
    summary = blocks[POINTS_BLOCK]
    points, unmasked = [], None
    for row in summary.itertuples(index=False):
        centre = (int(getattr(row, L.COORDINATE_X)), int(getattr(row, L.COORDINATE_Y)),
                  int(getattr(row, L.COORDINATE_Z)))
        name = point_table_name(centre)
        if name not in blocks:
            raise StarError(f"local-resolution STAR file {path} has no data_{name} block")
        table = blocks[name]

        def column(label: str, table=table, name=name) -> np.ndarray:  # this point's table and block name
            return _column(table, label, path, name).astype(np.float64)

        unmasked = column(L.FOURIER_SHELL_CORRELATION_UNMASKED_MAPS)
        points.append(PointResult(centre, float(getattr(row, L.ANGSTROM_RESOLUTION)),
                                  column(L.FOURIER_SHELL_CORRELATION_CORRECTED),
                                  column(L.FOURIER_SHELL_CORRELATION_MASKED_MAPS),
                                  column(L.CORRECTED_FOURIER_SHELL_CORRELATION_PHASE_RANDOMIZED_MASKED_MAPS)))
    return points, unmasked


def chimerax_script(map_path: str, locres_path: str, vrange: tuple[float, float],
                    level: float | None = None) -> str:
    """ChimeraX commands: open the (sharpened) map as #1 and the local-resolution map as #2, colour
    #1's surface by #2 (red = best resolution, blue = worst) and add a colour key."""
    lo, hi = vrange
    mid = 0.5 * (lo + hi)
    lines = [f"open {map_path}", f"open {locres_path}", "volume #2 hide"]
    if level is not None:
        lines.append(f"volume #1 level {level:.6g}")
    lines += [f"color sample #1 map #2 palette {lo:.2f},red:{mid:.2f},white:{hi:.2f},blue",
              f"key red:{lo:.2f} white:{mid:.2f} blue:{hi:.2f} pos 0.05,0.08 size 0.3,0.04",
              '2dlabels text "local resolution (A)" xpos 0.05 ypos 0.13 size 16',
              "view"]
    return "\n".join(lines) + "\n"


def _script_path(path: str, folder: str) -> str:
    """``path`` as the script names it: its base name when it lies in the script's folder, else absolute."""
    path_abs = os.path.abspath(path)
    return os.path.basename(path) if os.path.dirname(path_abs) == os.path.abspath(folder) else path_abs


def write_chimerax_script(path: str, map_path: str, locres_path: str, vrange: tuple[float, float]) -> None:
    """Write :func:`chimerax_script` atomically; maps beside the script are named relative to it."""
    folder = os.path.dirname(path) or "."
    atomic_write_text(path, chimerax_script(_script_path(map_path, folder), _script_path(locres_path, folder),
                                            vrange))


def link_output(target: str, link: str) -> None:
    """``link`` -> ``target`` (relative symlink in the same folder; a copy where links fail)."""
    if os.path.abspath(target) == os.path.abspath(link):
        return
    try:
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.basename(target), link)
    except OSError:
        shutil.copyfile(target, link)
