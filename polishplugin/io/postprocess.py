"""``postprocess.star`` (RELION relion_postprocess): ``data_general`` + ``data_fsc`` + optional ``data_guinier``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels as L
from .star import StarError, read_star, write_star

__all__ = ["PostprocessResult", "read_postprocess", "write_postprocess"]


def _column(table: pd.DataFrame, label: str, path: Path, block: str) -> np.ndarray:
    if label not in table.columns:
        raise StarError(f"STAR file {path}: data_{block} lacks column {label}")
    return table[label].to_numpy()


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


def write_postprocess(path: str | os.PathLike, result: PostprocessResult) -> None:
    """Write ``postprocess.star`` (general, fsc, [guinier]) in RELION layout, atomically."""
    blocks: dict = {"general": dict(result.general), "fsc": result.fsc}
    if result.guinier is not None:
        blocks["guinier"] = result.guinier
    write_star(path, blocks)
