"""Detector MTF STAR files (RELION ``data/mtf_*.star``): ``rlnResolutionInversePixel``, ``rlnMtfValue``.

x is in 1/pixel of the physical detector (0 … 0.5); it becomes 1/Å through the ``--mtf_angpix``
pixel size.  Files RELION would divide by garbage are rejected with a sentence naming the file:
empty tables, missing columns, and what :func:`polishplugin.core.mtf.validate_mtf_table` refuses
(non-increasing x, x outside [0, 0.5], MTF values ≤ 1e-10 or not finite).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.mtf import validate_mtf_table
from . import labels as L
from .star import StarError, read_star, write_star

__all__ = ["Mtf", "read_mtf", "write_mtf", "read_mtf_table"]


@dataclass
class Mtf:
    """An MTF curve: ``frequency_per_px`` (detector pixels, increasing) and ``value``."""

    frequency_per_px: np.ndarray
    value: np.ndarray
    name: str = "mtf"
    path: Path | None = None

    def frequency_per_a(self, mtf_angpix: float) -> np.ndarray:
        """x in 1/Å for a detector pixel of ``mtf_angpix`` Å."""
        return self.frequency_per_px / float(mtf_angpix)


def _validate(freq: np.ndarray, value: np.ndarray, where: str) -> None:
    """:func:`polishplugin.core.mtf.validate_mtf_table`'s check, its sentence after the file name."""
    try:
        validate_mtf_table(freq, value)
    except ValueError as exc:
        raise StarError(f"MTF file {where} is unusable: {exc}") from None


def read_mtf(path: str | os.PathLike) -> Mtf:
    """Read and validate an MTF STAR file (first block holding both columns)."""
    path = Path(path)
    try:
        return _read_mtf(path)
    except StarError:
        raise
    except (ValueError, TypeError) as exc:
        raise StarError(f"MTF file {path} is unusable: a value is not a number ({exc})") from None


def _read_mtf(path: Path) -> Mtf:
    blocks = read_star(path)
    for name, table in blocks.items():
        if L.RESOLUTION_INVERSE_PIXEL in table.columns and L.MTF_VALUE in table.columns:
            freq = table[L.RESOLUTION_INVERSE_PIXEL].to_numpy(dtype=np.float64)
            value = table[L.MTF_VALUE].to_numpy(dtype=np.float64)
            _validate(freq, value, str(path))
            return Mtf(freq, value, name or "mtf", path)
    raise StarError(f"MTF file {path} has no table with {L.RESOLUTION_INVERSE_PIXEL} and {L.MTF_VALUE}")


def write_mtf(path: str | os.PathLike, mtf: Mtf, comments: tuple[str, ...] = ()) -> None:
    """Write an MTF STAR file (validated first), atomically."""
    freq = np.asarray(mtf.frequency_per_px, dtype=np.float64)
    value = np.asarray(mtf.value, dtype=np.float64)
    _validate(freq, value, str(path))
    write_star(path, {mtf.name or "mtf": pd.DataFrame({L.RESOLUTION_INVERSE_PIXEL: freq,
                                                        L.MTF_VALUE: value})}, comments=comments)


def read_mtf_table(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(rlnResolutionInversePixel, rlnMtfValue)`` of an MTF file for sharpening (:func:`read_mtf`'s checks and
    sentences: ``MTF file ... is unusable: ...``, ``MTF file ... has no table ...``)."""
    if not os.path.exists(path):
        raise StarError(f"MTF file {path} does not exist")
    mtf = read_mtf(path)
    return mtf.frequency_per_px, mtf.value
