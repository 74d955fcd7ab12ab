"""Movies and their motion-correction records: ``corrected_micrographs.star``, the per-movie motion
STAR files, and the movie frames themselves (MRC/TIFF, streamed one frame at a time).

A per-movie STAR (RELION ``src/micrograph_model.cpp``) has ``data_general`` (a list block: sizes,
movie/gain/defect names, binning, pixel size, dose, voltage, start frame, motion model version),
``data_global_shift`` (frame number, shift x/y in unbinned movie pixels: the *correction* applied to
each frame), optionally ``data_local_motion_model`` (36 third-order polynomial coefficients, 18 for
x then 18 for y) and ``data_hot_pixels``.  The initial tracks of Bayesian polishing are built from
these by :func:`polishplugin.core.motion.initial_tracks.initial_tracks`.

:func:`iter_movie_frames` yields the frames of a movie one at a time (``mrcfile.mmap``; TIFF page by
page through ``tifffile``, flipped along y as RELION reads them), negated and gain-multiplied.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import labels as L
from .mrc import MrcError, read_mrc
from .particles import resolve_relion_path
from .star import StarError, read_star, write_star

__all__ = [
    "MovieMetadata", "MicrographTable", "read_movie_metadata", "write_movie_metadata",
    "read_corrected_micrographs", "write_corrected_micrographs", "micrograph_key",
    "N_LOCAL_COEFFS", "NOT_OBSERVED", "MovieError", "open_movie", "movie_frame_count", "iter_movie_frames",
]

#: Number of coefficients of RELION's third-order polynomial local motion model (18 x + 18 y).
N_LOCAL_COEFFS = 36
#: RELION writes this global shift for frames outside the range used by motion correction.
NOT_OBSERVED = -9999.0

# data_general labels, in RELION's writing order, with the Python field that holds each.
_GENERAL_FIELDS = (
    (L.IMAGE_SIZE_X, "width_px"), (L.IMAGE_SIZE_Y, "height_px"), (L.IMAGE_SIZE_Z, "n_frames"),
    (L.MICROGRAPH_MOVIE_NAME, "movie_name"), (L.MICROGRAPH_GAIN_NAME, "gain_name"),
    (L.MICROGRAPH_DEFECT_FILE, "defect_file"), (L.MICROGRAPH_BINNING, "binning"),
    (L.MICROGRAPH_ORIGINAL_PIXEL_SIZE, "original_pixel_size_a"),
    (L.MICROGRAPH_DOSE_RATE, "dose_per_frame_e_per_a2"),
    (L.MICROGRAPH_PRE_EXPOSURE, "pre_exposure_e_per_a2"), (L.VOLTAGE, "voltage_kv"),
    (L.MICROGRAPH_START_FRAME, "start_frame"), (L.MOTION_MODEL_VERSION, "motion_model_version"),
)
_REQUIRED_GENERAL = (L.IMAGE_SIZE_X, L.IMAGE_SIZE_Y, L.IMAGE_SIZE_Z, L.MICROGRAPH_MOVIE_NAME)
_INT_FIELDS = {"width_px", "height_px", "n_frames", "start_frame", "motion_model_version"}
_STR_FIELDS = {"movie_name", "gain_name", "defect_file"}


@dataclass
class MovieMetadata:
    """The motion-correction record of one movie (RELION per-movie STAR file).

    ``global_shifts_px``: ``(n_frames, 2)`` xy, unbinned movie pixels, row f = frame f+1.
    ``local_coeffs``: ``(36,)`` polynomial coefficients or ``None`` (no local model).
    ``hot_pixels_px``: ``(n, 2)`` xy pixel coordinates or ``None``.
    ``extra_general``: other ``data_general`` labels (EER fields ...), written back unchanged.
    ``original_pixel_size_a``: ``None`` when the file does not give it.
    ``path``: the file it was read from; names in it (movie, gain) are resolved against its project.
    """

    width_px: int
    height_px: int
    n_frames: int
    movie_name: str
    global_shifts_px: np.ndarray
    gain_name: str | None = None
    defect_file: str | None = None
    binning: float = 1.0
    original_pixel_size_a: float | None = None
    dose_per_frame_e_per_a2: float = 1.0
    pre_exposure_e_per_a2: float = 0.0
    voltage_kv: float = 300.0
    start_frame: int = 1
    motion_model_version: int = 0
    local_coeffs: np.ndarray | None = None
    hot_pixels_px: np.ndarray | None = None
    extra_general: dict = field(default_factory=dict)
    path: Path | None = None

    def movie_path(self) -> Path:
        """The movie file, resolved like every path in a RELION STAR file."""
        return resolve_relion_path(self.movie_name, self.path)

    def gain_path(self) -> Path | None:
        """The gain reference, resolved; ``None`` when the movie has none."""
        if self.gain_name in (None, "", "None"):
            return None
        return resolve_relion_path(str(self.gain_name), self.path)


def _as_scalar(value):
    return value.item() if hasattr(value, "item") else value


def read_movie_metadata(path: str | os.PathLike) -> MovieMetadata:
    """Read a per-movie motion STAR file; a clear :class:`StarError` naming the file when unusable."""
    path = Path(path)
    try:
        return _read_movie_metadata(path)
    except StarError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise StarError(f"movie metadata STAR file {path} has an unusable value ({exc})") from None


def _read_movie_metadata(path: Path) -> MovieMetadata:
    blocks = read_star(path)
    if "general" not in blocks or len(blocks["general"]) != 1:
        raise StarError(f"movie metadata STAR file {path} has no data_general block")
    general = blocks["general"].iloc[0].to_dict()
    missing = [c for c in _REQUIRED_GENERAL if c not in general]
    if missing:
        raise StarError(f"movie metadata STAR file {path} lacks required label(s): {', '.join(missing)}")
    values: dict[str, Any] = {}  # MovieMetadata's keyword arguments: str, int or float per field
    for label, name in _GENERAL_FIELDS:
        if label in general:
            v = _as_scalar(general[label])
            values[name] = str(v) if name in _STR_FIELDS else (int(v) if name in _INT_FIELDS else float(v))
    extra = {k: _as_scalar(v) for k, v in general.items() if k not in dict(_GENERAL_FIELDS)}
    shifts = np.zeros((values["n_frames"], 2))
    if "global_shift" in blocks:
        g = blocks["global_shift"]
        need = [L.MICROGRAPH_FRAME_NUMBER, L.MICROGRAPH_SHIFT_X, L.MICROGRAPH_SHIFT_Y]
        if any(c not in g.columns for c in need):
            raise StarError(f"movie metadata STAR file {path}: data_global_shift lacks "
                            f"{', '.join(c for c in need if c not in g.columns)}")
        frames = g[L.MICROGRAPH_FRAME_NUMBER].to_numpy(dtype=np.int64)
        if frames.min() < 1 or frames.max() > values["n_frames"]:
            raise StarError(f"movie metadata STAR file {path}: global shift frame numbers "
                            f"{frames.min()}..{frames.max()} outside 1..{values['n_frames']}")
        shifts[frames - 1, 0] = g[L.MICROGRAPH_SHIFT_X].to_numpy(dtype=np.float64)
        shifts[frames - 1, 1] = g[L.MICROGRAPH_SHIFT_Y].to_numpy(dtype=np.float64)
    coeffs = None
    if "local_motion_model" in blocks:
        m = blocks["local_motion_model"]
        idx = m[L.MOTION_MODEL_COEFFS_IDX].to_numpy(dtype=np.int64)
        if len(idx) != N_LOCAL_COEFFS or sorted(idx) != list(range(N_LOCAL_COEFFS)):
            raise StarError(f"movie metadata STAR file {path}: data_local_motion_model must hold "
                            f"coefficients 0..35, found {len(idx)} rows")
        coeffs = np.zeros(N_LOCAL_COEFFS)
        coeffs[idx] = m[L.MOTION_MODEL_COEFF].to_numpy(dtype=np.float64)
    hot = None
    if "hot_pixels" in blocks:
        h = blocks["hot_pixels"]
        hot = np.stack([h[L.COORDINATE_X].to_numpy(dtype=np.float64),
                        h[L.COORDINATE_Y].to_numpy(dtype=np.float64)], axis=1)
    return MovieMetadata(global_shifts_px=shifts, local_coeffs=coeffs, hot_pixels_px=hot,
                         extra_general=extra, path=path, **values)


def write_movie_metadata(path: str | os.PathLike, meta: MovieMetadata) -> None:
    """Write ``meta`` as a RELION per-movie STAR file (general, global_shift, [model], [hot pixels])."""
    general: dict = {}
    for label, name in _GENERAL_FIELDS:
        value = getattr(meta, name)
        if value is not None:
            general[label] = float(value) if isinstance(value, float) else value
    general.update(meta.extra_general)
    n = meta.n_frames
    shifts = np.asarray(meta.global_shifts_px, dtype=np.float64).reshape(n, 2)
    blocks: dict = {"general": general, "global_shift": pd.DataFrame({
        L.MICROGRAPH_FRAME_NUMBER: np.arange(1, n + 1, dtype=np.int64),
        L.MICROGRAPH_SHIFT_X: shifts[:, 0], L.MICROGRAPH_SHIFT_Y: shifts[:, 1]})}
    if meta.local_coeffs is not None:
        coeffs = np.asarray(meta.local_coeffs, dtype=np.float64).reshape(-1)
        if coeffs.size != N_LOCAL_COEFFS:
            raise ValueError(f"local motion model needs {N_LOCAL_COEFFS} coefficients, got {coeffs.size}")
        blocks["local_motion_model"] = pd.DataFrame({
            L.MOTION_MODEL_COEFFS_IDX: np.arange(N_LOCAL_COEFFS, dtype=np.int64),
            L.MOTION_MODEL_COEFF: coeffs})
    if meta.hot_pixels_px is not None:
        hot = np.asarray(meta.hot_pixels_px, dtype=np.float64).reshape(-1, 2)
        blocks["hot_pixels"] = pd.DataFrame({L.COORDINATE_X: hot[:, 0], L.COORDINATE_Y: hot[:, 1]})
    write_star(path, blocks)


# ------------------------------------------------------------------ corrected_micrographs.star
def micrograph_key(name: str) -> str:
    """A micrograph name without its RELION job prefix, as RELION matches particles to micrographs and
    names polishing outputs (``decomposePipelineFileName``): ``MotionCorr/job002/Movies/a.mrc`` ->
    ``Movies/a.mrc`` (everything up to the first ``jobNNN`` folder below the top one is dropped); a name
    without a job folder loses only a leading ``/``."""
    parts = Path(str(name).strip()).parts
    for i in range(1, len(parts) - 1):
        if parts[i].startswith("job") and parts[i][3:].isdigit():
            return str(Path(*parts[i + 1:]))
    return str(name).strip().lstrip("/")


@dataclass
class MicrographTable:
    """``corrected_micrographs.star``: optics table + one row per motion-corrected micrograph."""

    optics: pd.DataFrame
    micrographs: pd.DataFrame
    path: Path | None = None
    project_dir: Path | None = None
    _index: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.micrographs)

    def names(self) -> list[str]:
        return [str(n) for n in self.micrographs[L.MICROGRAPH_NAME]]

    def metadata_path(self, row: int) -> Path:
        """The per-movie STAR of micrograph ``row``, resolved against the project folder."""
        rel = str(self.micrographs[L.MICROGRAPH_METADATA].iloc[row])
        return resolve_relion_path(rel, self.path, self.project_dir)

    def row_of(self, micrograph_name: str) -> int:
        """Row of a micrograph named as in a particle STAR (exact name, else without job prefix; the
        first such row)."""
        stamp = (id(self.micrographs), len(self.micrographs))
        if self._index is None or self._index[0] != stamp:  # built once per table: projects have thousands
            exact: dict[str, int] = {}
            keyed: dict[str, int] = {}
            for i, name in enumerate(self.names()):
                exact.setdefault(name, i)
                keyed.setdefault(micrograph_key(name), i)
            self._index = (stamp, exact, keyed)
        _, exact, keyed = self._index
        row = exact.get(micrograph_name, keyed.get(micrograph_key(micrograph_name)))
        if row is None:
            raise StarError(f"micrographs STAR file {self.path} has no micrograph {micrograph_name}")
        return row

    def pixel_size_a(self, row: int = 0) -> float:
        """``rlnMicrographPixelSize`` (Å) of the optics group of micrograph ``row``."""
        group = int(self.micrographs[L.OPTICS_GROUP].iloc[row]) if L.OPTICS_GROUP in self.micrographs \
            else int(self.optics[L.OPTICS_GROUP].iloc[0])
        optics_row = self.optics[self.optics[L.OPTICS_GROUP] == group]
        return float(optics_row[L.MICROGRAPH_PIXEL_SIZE].iloc[0])


def read_corrected_micrographs(path: str | os.PathLike,
                              project_dir: str | os.PathLike | None = None) -> MicrographTable:
    """Read ``corrected_micrographs.star`` (RELION 3.1+: optics + micrographs)."""
    path = Path(path)
    blocks = read_star(path)
    if "micrographs" not in blocks:
        raise StarError(f"micrographs STAR file {path} has no data_micrographs block")
    mics = blocks["micrographs"]
    missing = [c for c in (L.MICROGRAPH_NAME, L.MICROGRAPH_METADATA) if c not in mics.columns]
    if missing:
        raise StarError(f"micrographs STAR file {path} lacks required column(s): {', '.join(missing)}")
    optics = blocks.get("optics")
    if optics is None or L.MICROGRAPH_PIXEL_SIZE not in optics.columns:
        raise StarError(f"micrographs STAR file {path} lacks an optics table with "
                        f"{L.MICROGRAPH_PIXEL_SIZE}")
    if L.OPTICS_GROUP in mics.columns:
        unknown = sorted({int(g) for g in mics[L.OPTICS_GROUP]} - {int(g) for g in optics[L.OPTICS_GROUP]})
        if unknown:
            raise StarError(f"micrographs STAR file {path}: optics group(s) {unknown} are not in the "
                            "optics table")
    return MicrographTable(optics, mics, path, Path(project_dir) if project_dir is not None else None)


def write_corrected_micrographs(path: str | os.PathLike, table: MicrographTable) -> None:
    """Write a ``corrected_micrographs.star`` (optics + micrographs), atomically."""
    write_star(path, {"optics": table.optics, "micrographs": table.micrographs})


# ------------------------------------------------------------------ movie frames
class MovieError(MrcError):
    """A movie (MRC or TIFF) that does not exist, cannot be read or holds NaN/Inf; names the file."""


def open_movie(path: str | os.PathLike):
    """``(n_frames, height, width, frame(i) -> float32 array, close())`` of a movie file (MRC memory-mapped,
    TIFF page by page)."""
    path = Path(path)
    if not path.exists():
        raise MovieError(f"movie {path} does not exist")
    if path.suffix.lower() in (".tif", ".tiff"):
        return _open_tiff(path)
    import mrcfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = mrcfile.mmap(str(path), mode="r", permissive=True)
    except (ValueError, OSError, EOFError) as exc:
        raise MovieError(f"movie {path} cannot be read ({exc})") from None
    data = m.data
    if data is None:
        m.close()
        raise MovieError(f"movie {path} cannot be read (truncated MRC file?)")
    if data.ndim == 2:
        data = data[None]

    def frame(i):
        return np.asarray(data[i], np.float32)

    return data.shape[0], data.shape[1], data.shape[2], frame, m.close


def _open_tiff(path: Path):
    import tifffile

    try:
        tif = tifffile.TiffFile(str(path))
        pages = tif.pages
        h, w = pages[0].shape[-2:]
        n_pages = len(pages)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds for damaged files
        raise MovieError(f"movie {path} cannot be read ({exc}); is it truncated or not a TIFF file?") from None

    def frame(i):  # RELION flips TIFF movies along the slow axis on read
        try:
            return np.asarray(pages[i].asarray(), np.float32)[::-1]
        except Exception as exc:  # noqa: BLE001
            raise MovieError(f"movie {path} cannot be read at frame {i + 1} ({exc}); is it truncated?") from None

    return n_pages, h, w, frame, tif.close


def movie_frame_count(path: str | os.PathLike) -> int:
    """Number of frames of a movie file (header only)."""
    total, _, _, _, close = open_movie(path)
    close()
    return int(total)


def iter_movie_frames(movie_path: str | os.PathLike, first_frame: int, n_frames: int,
                      gain_path: str | os.PathLike | None = None):
    """Yield ``(f, -gain * frame)`` for frames ``first_frame .. first_frame+n_frames-1`` (0-based), one
    frame in memory at a time (RELION ``MovieLoader::readDense``: contrast inverted).  The gain is applied
    when ``gain_path`` is an existing MRC file of the frame's shape."""
    movie_path = Path(movie_path)
    total, _, _, get, close = open_movie(movie_path)
    try:
        if first_frame + n_frames > total:
            raise MovieError(f"movie {movie_path} has {total} frames; frames {first_frame + 1} to "
                             f"{first_frame + n_frames} were asked for (--first_frame/--last_frame)")
        gain = None
        gain_path = None if gain_path is None else Path(gain_path)
        if gain_path is not None and gain_path.exists() and gain_path.suffix.lower() in (".mrc", ".mrcs"):
            gain, _ = read_mrc(gain_path)
            gain = gain.reshape(gain.shape[-2:])
        for f in range(n_frames):
            frame = np.negative(get(first_frame + f), dtype=np.float32)  # one pass: float16 -> float32, negated
            # a float64 sum of float32 values is finite unless a value is NaN or Inf (one pass, no mask)
            if not np.isfinite(frame.sum(dtype=np.float64)):
                raise MovieError(f"movie {movie_path} frame {first_frame + f + 1} contains NaN or Inf values")
            if gain is not None and gain.shape == frame.shape:
                frame *= gain
            yield f, frame
    finally:
        close()
