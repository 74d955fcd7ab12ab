"""Bayesian-polishing files (RELION ``relion_motion_refine``), one reader and one writer each:

* ``bfactors.star``: per-frame B-factors and log scales;
* the ``opt_params`` text files: one line ``s_vel s_div s_acc`` (RELION ``opt_params_all_groups.txt``);
* ``<micrograph>_tracks.star``: ``data_general`` (number of particles) and one block per particle with
  its track in Å (``rlnOriginXAngst/YAngst`` per frame);
* ``<micrograph>_FCC_{cc,w0,w1}.mrc``: the per-frame Fourier cross-correlation tables;
* ``tsc_trace.star``: every evaluation of the sigma training (ours; RELION writes no trace).

:func:`micrograph_root` names the per-micrograph outputs as RELION does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels as L
from .movies import micrograph_key
from .mrc import read_mrc, write_mrc
from .star import atomic_write_text, read_star, required_column as _column, StarError, write_star

__all__ = ["FrameBfactors", "read_bfactors", "write_bfactors", "OptParams", "read_opt_params", "write_opt_params",
           "micrograph_root", "read_tracks", "write_tracks", "FCC_PARTS", "read_fcc_tables", "write_fcc_tables",
           "TSC_TRACE_BLOCK", "TscTrace", "read_tsc_trace", "write_tsc_trace"]

_PERFRAME_BLOCK = "perframe_bfactors"


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


# ------------------------------------------------------------------ per-micrograph outputs
def micrograph_root(out_dir: str | os.PathLike, micrograph_name: str) -> Path:
    """``<out>/<micrograph name without Job/jobNNN/ prefix and extension>`` (RELION output naming): the
    per-micrograph files are ``<root>_tracks.star``, ``<root>_FCC_cc.mrc``, ``<root>_shiny.mrcs`` ..."""
    return Path(out_dir) / Path(micrograph_key(micrograph_name)).with_suffix("")


def write_tracks(path: str | os.PathLike, tracks_px: np.ndarray, angpix: float = 1.0) -> None:
    """``<root>_tracks.star`` from tracks ``(n_p, n_f, 2)`` in pixels of ``angpix`` Å (written in Å)."""
    tracks_a = np.asarray(tracks_px, np.float64) * angpix
    blocks: dict = {"general": {L.PARTICLE_NUMBER: int(tracks_a.shape[0])}}
    for p in range(tracks_a.shape[0]):
        blocks[str(p)] = pd.DataFrame({L.ORIGIN_X_ANGST: tracks_a[p, :, 0], L.ORIGIN_Y_ANGST: tracks_a[p, :, 1]})
    write_star(path, blocks)


def read_tracks(path: str | os.PathLike, angpix: float = 1.0) -> np.ndarray:
    """Tracks ``(n_p, n_f, 2)`` of a ``_tracks.star`` file in pixels of ``angpix`` Å (default: in Å)."""
    path = Path(path)
    blocks = read_star(path)
    if "general" not in blocks or L.PARTICLE_NUMBER not in blocks["general"].columns:
        raise StarError(f"tracks STAR file {path} has no data_general block with {L.PARTICLE_NUMBER}")
    n_p = int(blocks["general"][L.PARTICLE_NUMBER].iloc[0])
    missing = [str(p) for p in range(n_p) if str(p) not in blocks]
    if missing:
        raise StarError(f"tracks STAR file {path} has {n_p} particles but no data_{missing[0]} block")
    out = [np.stack([_column(blocks[str(p)], L.ORIGIN_X_ANGST, path, str(p)).astype(np.float64),
                     _column(blocks[str(p)], L.ORIGIN_Y_ANGST, path, str(p)).astype(np.float64)], axis=-1)
           for p in range(n_p)]
    return np.asarray(out).reshape(n_p, -1, 2) / angpix


#: the three per-frame FCC tables of a micrograph: ``<root>_FCC_<part>.mrc``, each ``(n_frames, shells)``
FCC_PARTS = ("cc", "w0", "w1")


def write_fcc_tables(root: str | os.PathLike, tables: tuple[np.ndarray, np.ndarray, np.ndarray],
                     angpix: float) -> None:
    """Write the ``cc``, ``w0`` and ``w1`` tables as float32 MRC images ``<root>_FCC_<part>.mrc``."""
    for part, table in zip(FCC_PARTS, tables):
        write_mrc(f"{root}_FCC_{part}.mrc", np.asarray(table).astype(np.float32), angpix)


def read_fcc_tables(root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The three FCC tables of ``root`` as float64 ``(n_frames, shells)`` arrays (NaN kept); ``None`` when
    any of the three files is missing."""
    tables = []
    for part in FCC_PARTS:
        path = f"{root}_FCC_{part}.mrc"
        if not os.path.exists(path):
            return None
        arr, _ = read_mrc(path, check_finite=False)
        tables.append(arr.astype(np.float64).reshape(arr.shape[-2:]))
    return tables[0], tables[1], tables[2]


# ------------------------------------------------------------------ tsc_trace.star
TSC_TRACE_BLOCK = "tsc_trace"
_TRACE_COLUMNS = (("evaluation", L.POLISH_EVALUATION), ("s_vel", L.POLISH_SIGMA_VEL), ("s_div", L.POLISH_SIGMA_DIV),
                  ("s_acc", L.POLISH_SIGMA_ACC), ("tsc", L.POLISH_TSC))


@dataclass
class TscTrace:
    """The sigma training's record: ``evaluations`` (columns evaluation 1.., s_vel, s_div, s_acc, tsc; one
    row per evaluation, in order), the chosen parameters and their TSC, whether the TSC was flat, and how
    many micrographs and particles were trained on."""

    evaluations: pd.DataFrame
    best: OptParams
    best_tsc: float
    flat: bool = False
    n_micrographs: int = 0
    n_particles: int = 0

    def __len__(self) -> int:
        return len(self.evaluations)


def write_tsc_trace(path: str | os.PathLike, trace: TscTrace) -> None:
    """Write ``tsc_trace.star``: ``data_general`` (chosen parameters and summary) + ``data_tsc_trace``.
    TSCs are written with 10 significant digits (they differ in the 5th)."""
    ev = trace.evaluations
    table = pd.DataFrame({L.POLISH_EVALUATION: np.arange(1, len(ev) + 1),
                          L.POLISH_SIGMA_VEL: np.asarray(ev["s_vel"], np.float64),
                          L.POLISH_SIGMA_DIV: np.asarray(ev["s_div"], np.float64),
                          L.POLISH_SIGMA_ACC: np.asarray(ev["s_acc"], np.float64),
                          L.POLISH_TSC: [f"{float(v):.10g}" for v in ev["tsc"]]})
    general = {L.POLISH_SIGMA_VEL: float(trace.best.s_vel), L.POLISH_SIGMA_DIV: float(trace.best.s_div),
               L.POLISH_SIGMA_ACC: float(trace.best.s_acc), L.POLISH_TSC: f"{float(trace.best_tsc):.10g}",
               L.POLISH_TSC_IS_FLAT: int(trace.flat), L.POLISH_NR_MICROGRAPHS: int(trace.n_micrographs),
               L.POLISH_NR_PARTICLES: int(trace.n_particles)}
    write_star(path, {"general": general, TSC_TRACE_BLOCK: table},
               comments=["TSC (held-out score) of every evaluation of the polishing-parameter training"])


def read_tsc_trace(path: str | os.PathLike) -> TscTrace:
    """Read ``tsc_trace.star`` (see :func:`write_tsc_trace`)."""
    path = Path(path)
    blocks = read_star(path)
    for block in ("general", TSC_TRACE_BLOCK):
        if block not in blocks:
            raise StarError(f"TSC trace STAR file {path} has no data_{block} block")
    t = blocks[TSC_TRACE_BLOCK]
    evaluations = pd.DataFrame({name: _column(t, label, path, TSC_TRACE_BLOCK) for name, label in _TRACE_COLUMNS})
    g = blocks["general"]
    value = {label: _column(g, label, path, "general")[0] for label in (
        L.POLISH_SIGMA_VEL, L.POLISH_SIGMA_DIV, L.POLISH_SIGMA_ACC, L.POLISH_TSC)}
    optional = {label: int(g[label].iloc[0]) if label in g.columns else 0 for label in (
        L.POLISH_TSC_IS_FLAT, L.POLISH_NR_MICROGRAPHS, L.POLISH_NR_PARTICLES)}
    return TscTrace(evaluations, OptParams(float(value[L.POLISH_SIGMA_VEL]), float(value[L.POLISH_SIGMA_DIV]),
                                           float(value[L.POLISH_SIGMA_ACC])),
                    float(value[L.POLISH_TSC]), bool(optional[L.POLISH_TSC_IS_FLAT]),
                    optional[L.POLISH_NR_MICROGRAPHS], optional[L.POLISH_NR_PARTICLES])
