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
from .mrc import MrcError
from .particles import resolve_relion_path
from .star import StarError, read_star, write_star

__all__ = [
    "MovieMetadata", "MicrographTable", "read_movie_metadata", "write_movie_metadata",
    "read_corrected_micrographs", "write_corrected_micrographs", "micrograph_key",
    "N_LOCAL_COEFFS", "NOT_OBSERVED", "MovieError", "MovieFile", "open_movie", "movie_frame_count",
    "iter_raw_frames", "iter_movie_frames", "MovieWriter", "is_eer", "TIFF_SUFFIXES", "EER_SUFFIXES",
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

    def defect_path(self) -> Path | None:
        """The defect file (``rlnMicrographDefectFile``), resolved; ``None`` when the movie has none."""
        if self.defect_file in (None, "", "None"):
            return None
        return resolve_relion_path(str(self.defect_file), self.path)

    def eer_settings(self) -> tuple[int | None, int | None]:
        """``(rlnEERUpsampling, rlnEERGrouping)`` of ``data_general`` (``None`` where absent)."""
        values = []
        for label in (L.MICROGRAPH_EER_UPSAMPLING, L.MICROGRAPH_EER_GROUPING):
            v = self.extra_general.get(label)
            values.append(None if v is None or str(v) in ("", "None") or int(v) < 1 else int(v))
        return values[0], values[1]


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
    """A movie (MRC, TIFF or EER) that does not exist, cannot be read or holds NaN/Inf; names the file."""


#: movie file extensions read as TIFF and as EER (RELION ``EERRenderer::isEER``)
TIFF_SUFFIXES = (".tif", ".tiff")
EER_SUFFIXES = (".eer", ".ecc")
_MRC_HEADER = 1024
_MODE_4BIT = 101


def is_eer(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in EER_SUFFIXES


@dataclass
class MovieFile:
    """An open movie: ``n_frames``, ``height`` x ``width`` (the rendering size for EER), ``frame(i)`` (the raw
    frame ``i`` as float32: counts, not negated, no gain) and ``close()``."""

    path: Path
    n_frames: int
    height: int
    width: int
    _frame: Any
    _close: Any

    def frame(self, i: int) -> np.ndarray:
        return self._frame(i)

    def close(self) -> None:
        self._close()

    # the old tuple interface: n, h, w, frame, close = open_movie(...)
    def __iter__(self):
        return iter((self.n_frames, self.height, self.width, self._frame, self._close))


def open_movie(path: str | os.PathLike, eer_upsampling: int = 1, eer_grouping: int = 1) -> MovieFile:
    """Open a movie for reading frame by frame: MRC (modes 0, 1, 2, 6, 12 memory-mapped; mode 101, 4-bit,
    unpacked per frame), TIFF (page by page, flipped along y as RELION reads them) or EER (fractions of
    ``eer_grouping`` raw frames rendered at ``eer_upsampling``, :mod:`polishplugin.io.eer`)."""
    path = Path(path)
    if not path.exists():
        raise MovieError(f"movie {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return _open_tiff(path)
    if suffix in EER_SUFFIXES:
        from .eer import EerError, EerMovie

        try:
            eer = EerMovie(path, eer_upsampling, eer_grouping)
        except EerError as exc:
            raise MovieError(str(exc)) from None

        def eer_frame(i):
            try:
                return eer.frame(i).astype(np.float32)
            except EerError as exc:
                raise MovieError(str(exc)) from None

        return MovieFile(path, eer.n_frames, eer.height, eer.width, eer_frame, eer.close)
    if _mrc_mode(path) == _MODE_4BIT:
        return _open_mrc_4bit(path)
    import mrcfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = mrcfile.mmap(str(path), mode="r", permissive=True)
    except (ValueError, OSError, EOFError) as exc:
        raise MovieError(f"movie {path} cannot be read ({exc}); is it truncated or not an MRC file?") from None
    data = m.data
    if data is None:
        m.close()
        raise MovieError(f"movie {path} cannot be read (truncated MRC file, or an unsupported MRC mode?)")
    if data.ndim == 2:
        data = data[None]

    def frame(i):
        return np.asarray(data[i], np.float32)

    return MovieFile(path, data.shape[0], data.shape[1], data.shape[2], frame, m.close)


def _mrc_mode(path: Path) -> int:
    """The MRC header's mode word (-1 when the file is too short to tell)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if len(head) < 16:
        return -1
    mode = int(np.frombuffer(head, "<i4", 4)[3])
    return mode if 0 <= mode < 1 << 16 else int(np.frombuffer(head, ">i4", 4)[3])


def _mrc_4bit_geometry(path: Path) -> tuple[int, int, int, int]:
    """``(nx, ny, nz, data offset)`` of a mode-101 MRC file (little-endian, as SerialEM writes them)."""
    with open(path, "rb") as fh:
        head = fh.read(_MRC_HEADER)
    if len(head) < _MRC_HEADER:
        raise MovieError(f"movie {path} cannot be read (MRC header truncated)")
    nx, ny, nz = (int(v) for v in np.frombuffer(head, "<i4", 3))
    nsymbt = int(np.frombuffer(head, "<i4", 1, 92)[0])
    return nx, ny, nz, _MRC_HEADER + nsymbt


def _open_mrc_4bit(path: Path) -> MovieFile:
    """Mode 101: 4-bit unsigned pixels, two per byte, the first in the low nibble, packed over the whole
    frame (RELION and IMOD; ``nx * ny`` must be even)."""
    nx, ny, nz, offset = _mrc_4bit_geometry(path)
    if nx < 1 or ny < 1 or nz < 1 or (nx * ny) % 2:
        raise MovieError(f"movie {path}: a 4-bit MRC (mode 101) needs nx * ny even, got {nx} x {ny} x {nz}")
    frame_bytes = nx * ny // 2
    if path.stat().st_size < offset + nz * frame_bytes:
        raise MovieError(f"movie {path} cannot be read: the 4-bit MRC file is truncated "
                         f"({path.stat().st_size} bytes for {nz} frames of {nx} x {ny})")
    fh = open(path, "rb")

    def frame(i):
        fh.seek(offset + i * frame_bytes)
        b = np.frombuffer(fh.read(frame_bytes), np.uint8)
        out = np.empty(2 * frame_bytes, np.float32)
        out[0::2] = b & 15
        out[1::2] = b >> 4
        return out.reshape(ny, nx)

    return MovieFile(path, nz, ny, nx, frame, fh.close)


def _open_tiff(path: Path) -> MovieFile:
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
            raise MovieError(f"movie {path} cannot be read at frame {i + 1} ({exc}); is it truncated, or "
                             "compressed without the imagecodecs package?") from None

    return MovieFile(path, n_pages, h, w, frame, tif.close)


def movie_frame_count(path: str | os.PathLike, eer_upsampling: int = 1, eer_grouping: int = 1) -> int:
    """Number of frames (EER: fractions) of a movie file (header only)."""
    movie = open_movie(path, eer_upsampling, eer_grouping)
    movie.close()
    return int(movie.n_frames)


def iter_raw_frames(movie_path: str | os.PathLike, first_frame: int, n_frames: int, eer_upsampling: int = 1,
                    eer_grouping: int = 1):
    """Yield ``(f, frame)`` for frames ``first_frame .. first_frame+n_frames-1`` (0-based) as stored (float32
    counts, TIFF flipped, EER rendered), one frame in memory at a time; NaN/Inf is a :class:`MovieError`."""
    movie_path = Path(movie_path)
    movie = open_movie(movie_path, eer_upsampling, eer_grouping)
    try:
        if first_frame + n_frames > movie.n_frames:
            raise MovieError(f"movie {movie_path} has {movie.n_frames} frames; frames {first_frame + 1} to "
                             f"{first_frame + n_frames} were asked for (--first_frame/--last_frame)")
        for f in range(n_frames):
            frame = movie.frame(first_frame + f)
            # a float64 sum of float32 values is finite unless a value is NaN or Inf (one pass, no mask)
            if not np.isfinite(frame.sum(dtype=np.float64)):
                raise MovieError(f"movie {movie_path} frame {first_frame + f + 1} contains NaN or Inf values")
            yield f, frame
            del frame  # not held while the next frame is read: one frame in memory (377 MB for a K3 frame)
    finally:
        movie.close()


def iter_movie_frames(movie_path: str | os.PathLike, first_frame: int, n_frames: int,
                      gain_path: str | os.PathLike | None = None, eer_upsampling: int = 1, eer_grouping: int = 1):
    """Yield ``(f, -gain * frame)`` for frames ``first_frame .. first_frame+n_frames-1`` (0-based), one frame
    in memory at a time (RELION ``MovieLoader::readDense``: contrast inverted).  ``gain_path``: a gain
    reference read by :func:`polishplugin.io.detector.read_gain` (its shape must fit the movie).  Polishing
    applies gain and defects in ``core.polish.detector`` on :func:`iter_raw_frames` instead."""
    gain = None
    if gain_path is not None:
        from .detector import read_gain

        movie = open_movie(movie_path, eer_upsampling, eer_grouping)
        movie.close()
        gain = read_gain(gain_path, (movie.height, movie.width), movie_path,
                         eer_upsampling if is_eer(movie_path) else None)
    for f, frame in iter_raw_frames(movie_path, first_frame, n_frames, eer_upsampling, eer_grouping):
        frame = np.negative(frame, dtype=np.float32)
        if gain is not None:
            frame *= gain
        yield f, frame


# ------------------------------------------------------------------ movie writers
class MovieWriter:
    """Write a movie frame by frame (memory stays one frame) and rename it into place on close.

    ``fmt``: ``"mrc"`` (float32, or float16 with ``float16``), ``"mrc4"`` (mode 101: integers 0..15),
    ``"tiff"`` (8-bit LZW, one page per frame, stored flipped along y so that RELION's reader and
    :func:`open_movie` give the frames back).  EER movies are written by :func:`polishplugin.io.eer.write_eer`.
    """

    def __init__(self, path: str | os.PathLike, fmt: str, n_frames: int, shape: tuple[int, int], angpix: float,
                 float16: bool = False):
        self.path = Path(path)
        self.fmt = fmt
        self.shape = (int(shape[0]), int(shape[1]))
        self.n_frames = int(n_frames)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "mrc":
            from .mrc import MrcStackWriter

            self._mrc = MrcStackWriter(self.path, n_frames, self.shape, angpix, float16=float16)
        elif fmt == "mrc4":
            h, w = self.shape
            if (h * w) % 2:
                raise ValueError(f"a 4-bit MRC movie needs an even number of pixels per frame, got {w} x {h}")
            self._fh = open(self._tmp, "wb")
            self._fh.write(_mrc_4bit_header(w, h, n_frames, angpix))
        elif fmt == "tiff":
            import tifffile

            self._tif = tifffile.TiffWriter(str(self._tmp))
        else:
            raise ValueError(f"unknown movie format {fmt!r} (mrc, mrc4, tiff)")

    def __setitem__(self, index: int, frame: np.ndarray) -> None:
        """Frame ``index``; frames of 4-bit and TIFF movies come in order (they are appended)."""
        if self.fmt == "mrc":
            self._mrc[index] = frame
            return
        data = np.asarray(frame).reshape(self.shape)
        if not np.issubdtype(data.dtype, np.integer):
            data = np.rint(data)
        if self.fmt == "mrc4":
            b = np.clip(data, 0, 15).astype(np.uint8).ravel()
            self._fh.write((b[0::2] | (b[1::2] << 4)).tobytes())
        else:
            self._tif.write(np.clip(data, 0, 255).astype(np.uint8)[::-1], compression="lzw",
                            photometric="minisblack", contiguous=False)

    def close(self) -> None:
        if self.fmt == "mrc":
            self._mrc.close()
            return
        (self._fh if self.fmt == "mrc4" else self._tif).close()
        os.replace(self._tmp, self.path)

    def __enter__(self) -> "MovieWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self.fmt == "mrc":
            self._mrc.__exit__(exc_type, exc, tb)
        else:
            (self._fh if self.fmt == "mrc4" else self._tif).close()
            self._tmp.unlink(missing_ok=True)


def _mrc_4bit_header(nx: int, ny: int, nz: int, angpix: float) -> bytes:
    """An MRC2014 header of a mode-101 image stack (little-endian)."""
    head = np.zeros(256, "<i4")
    head[0:4] = (nx, ny, nz, _MODE_4BIT)
    head[7:10] = (nx, ny, nz)                                    # mx, my, mz
    head[10:13] = np.array([nx * angpix, ny * angpix, nz * angpix], "<f4").view("<i4")
    head[13:16] = np.array([90.0, 90.0, 90.0], "<f4").view("<i4")
    head[16:19] = (1, 2, 3)
    head[22] = 0                                                 # ispg 0: image stack
    head[27] = 20140                                             # nversion
    raw = bytearray(head.tobytes())
    raw[208:212] = b"MAP "
    raw[212:216] = bytes((0x44, 0x44, 0, 0))                     # machine stamp: little-endian
    return bytes(raw)
