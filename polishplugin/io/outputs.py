"""Readers (and writers, for round trips) of the programs' output files, as plain dataclasses.

Viewers, protocol summaries and tests read program outputs through these functions only:

* ``postprocess.star`` (``data_general`` + ``data_fsc`` + optional ``data_guinier``);
* ``bfactors.star`` (``data_perframe_bfactors``: 0-based frame, B-factor, log scale);
* ``opt_params`` text files (one line ``s_vel s_div s_acc``; RELION ``opt_params_all_groups.txt``);
* a refinement's ``model.star`` (resolution and gold-standard FSC of class 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels as L
from .star import StarError, atomic_write_text, read_star, write_star

__all__ = [
    "PostprocessResult", "read_postprocess", "write_postprocess",
    "FrameBfactors", "read_bfactors", "write_bfactors",
    "OptParams", "read_opt_params", "write_opt_params",
    "ModelFsc", "read_model_fsc",
]

_PERFRAME_BLOCK = "perframe_bfactors"


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


# ------------------------------------------------------------------ bfactors.star
@dataclass
class FrameBfactors:
    """Per-frame B-factors of Bayesian polishing: ``frames`` 0-based, ``bfactor_a2``, ``log_scale``
    (RELION ``rlnFittedInterceptGuinierPlot`` = ln of the frame's scale)."""

    frames: np.ndarray
    bfactor_a2: np.ndarray
    log_scale: np.ndarray

    @property
    def scale(self) -> np.ndarray:
        return np.exp(self.log_scale)


def read_bfactors(path: str | os.PathLike) -> FrameBfactors:
    """Read ``bfactors.star`` (``data_perframe_bfactors``)."""
    path = Path(path)
    blocks = read_star(path)
    if _PERFRAME_BLOCK not in blocks:
        raise StarError(f"B-factor STAR file {path} has no data_{_PERFRAME_BLOCK} block")
    t = blocks[_PERFRAME_BLOCK]
    return FrameBfactors(_column(t, L.MOVIE_FRAME_NUMBER, path, _PERFRAME_BLOCK).astype(np.int64),
                         _column(t, L.BFACTOR_USED_FOR_SHARPENING, path, _PERFRAME_BLOCK).astype(np.float64),
                         _column(t, L.FITTED_INTERCEPT_GUINIER_PLOT, path, _PERFRAME_BLOCK).astype(np.float64))


def write_bfactors(path: str | os.PathLike, table: FrameBfactors) -> None:
    """Write ``bfactors.star`` as RELION does."""
    write_star(path, {_PERFRAME_BLOCK: pd.DataFrame({
        L.MOVIE_FRAME_NUMBER: np.asarray(table.frames, dtype=np.int64),
        L.BFACTOR_USED_FOR_SHARPENING: np.asarray(table.bfactor_a2, dtype=np.float64),
        L.FITTED_INTERCEPT_GUINIER_PLOT: np.asarray(table.log_scale, dtype=np.float64)})})


# ------------------------------------------------------------------ opt_params
@dataclass(frozen=True)
class OptParams:
    """Polishing hyper-parameters: σ_vel (Å/dose), σ_div (Å), σ_acc (Å/dose; −1 = no acceleration)."""

    s_vel: float
    s_div: float
    s_acc: float


def read_opt_params(path: str | os.PathLike) -> OptParams:
    """Read an ``opt_params`` file: three whitespace-separated numbers ``s_vel s_div s_acc``."""
    path = Path(path)
    try:
        tokens = path.read_text().split()
    except FileNotFoundError:
        raise StarError(f"parameter file {path} does not exist") from None
    try:
        values = [float(t) for t in tokens[:3]]
    except ValueError:
        values = []
    if len(values) != 3 or not all(np.isfinite(values)):
        raise StarError(f"parameter file {path} must hold three numbers 's_vel s_div s_acc', "
                        f"found {' '.join(tokens[:5])!r}")
    return OptParams(*values)


def write_opt_params(path: str | os.PathLike, params: OptParams) -> None:
    """Write ``"s_vel s_div s_acc\\n"`` with 6 significant digits (C++ iostream default)."""
    atomic_write_text(path, f"{params.s_vel:.6g} {params.s_div:.6g} {params.s_acc:.6g}\n")


# ------------------------------------------------------------------ model.star
@dataclass
class ModelFsc:
    """Resolution and gold-standard FSC of a refinement's ``model.star`` (class 1)."""

    current_resolution_a: float
    spectral_index: np.ndarray
    resolution_per_a: np.ndarray
    fsc: np.ndarray
    general: dict = field(default_factory=dict)


def read_model_fsc(path: str | os.PathLike, class_number: int = 1) -> ModelFsc:
    """Read ``rlnCurrentResolution`` and ``rlnGoldStandardFsc`` from a ``model.star``."""
    path = Path(path)
    blocks = read_star(path)
    block = f"model_class_{class_number}"
    if "model_general" not in blocks or block not in blocks:
        raise StarError(f"model STAR file {path} lacks data_model_general or data_{block}")
    general = {k: (v.item() if hasattr(v, "item") else v) for k, v in blocks["model_general"].iloc[0].items()}
    t = blocks[block]
    return ModelFsc(float(general.get(L.CURRENT_RESOLUTION, np.nan)),
                    _column(t, L.SPECTRAL_INDEX, path, block).astype(np.int64),
                    _column(t, L.RESOLUTION, path, block).astype(np.float64),
                    _column(t, L.GOLD_STANDARD_FSC, path, block).astype(np.float64), general)
