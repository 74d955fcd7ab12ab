"""3D auto-refine files: a refinement's ``model.star`` (resolution and gold-standard FSC of class 1)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels as L
from .star import StarError, read_star

__all__ = ["ModelFsc", "read_model_fsc"]


def _column(table: pd.DataFrame, label: str, path: Path, block: str) -> np.ndarray:
    if label not in table.columns:
        raise StarError(f"STAR file {path}: data_{block} lacks column {label}")
    return table[label].to_numpy()


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
