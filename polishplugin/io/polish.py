"""Bayesian-polishing files: ``bfactors.star`` (per-frame B-factors and log scales) and the
``opt_params`` text files (one line ``s_vel s_div s_acc``; RELION ``opt_params_all_groups.txt``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels as L
from .star import StarError, atomic_write_text, read_star, write_star

__all__ = ["FrameBfactors", "read_bfactors", "write_bfactors", "OptParams", "read_opt_params", "write_opt_params"]

_PERFRAME_BLOCK = "perframe_bfactors"


def _column(table: pd.DataFrame, label: str, path: Path, block: str) -> np.ndarray:
    if label not in table.columns:
        raise StarError(f"STAR file {path}: data_{block} lacks column {label}")
    return table[label].to_numpy()


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
