"""Inputs of Bayesian polishing: particles, optics, motion-correction metadata, reference, movies.

``load_project(args)`` reads everything that is shared by all micrographs (ALGORITHMS.md 1.3, 1.4);
``load_micrograph(project, mic_index, first_frame, last_frame)`` streams one movie frame by frame
(``mrcfile.mmap``; TIFF through ``tifffile`` page by page) and returns a :class:`MicrographData` with
the extracted particle frames, the reference predictions and the initial tracks (ALGORITHMS.md 1.5, 1.9).

Conventions (RELION):

* ``frames_rfft[p, f]`` is the rfft (forward ``/M^2`` of the ``M = sqMg`` movie box, then Fourier-cropped
  to the particle box ``N``) of the **negated** movie frame around particle ``p``; DC = 0.  No power
  normalisation (that is ``core.motion.prepare.normalize_particle_frames``).
* Boxes are cut at ``x0 = round(xpO * angpix / movie_angpix) - M/2`` with ``xpO = (int)(coords_angpix *
  xC / angpix)``; pixels outside the micrograph are clamped to the edge.
* Tracks and ``initial_tracks_px`` are displacements in particle pixels (xy), absolute (incl. global drift).
* ``positions_px`` are ``rlnCoordinateX/Y`` (coordinate pixels; the GP kernel distance uses them).
* Paths in STAR files are resolved like RELION (relative to the current directory = project directory);
  if not found there, relative to the folder of the STAR file that names them and its parents.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import labels as L
from ..io.mrc import read_mrc
from ..io.star import read_star
from ..core.ctf import CtfParams, ctf_2d
from ..core.geometry import euler_to_matrix
from ._cli import ProgramError

__all__ = ["PolishProject", "MicrographData", "MovieInfo", "load_project", "load_micrograph",
           "read_movie_info", "iter_movie_frames", "extract_boxes", "micrograph_root", "resolve_path",
           "initial_tracks", "write_tracks", "read_tracks", "strip_job_prefix"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- paths
def resolve_path(name: str, *relative_to: str | os.PathLike) -> Path:
    """A path named in a STAR file: as is (absolute or cwd-relative), else under ``relative_to`` dirs
    and their parents (up to 3 levels).  Returns the first existing candidate, else ``Path(name)``."""
    p = Path(str(name))
    if p.is_absolute() or p.exists():
        return p
    for base in relative_to:
        b = Path(base).resolve()
        for d in [b, *list(b.parents)[:3]]:
            if (d / p).exists():
                return d / p
    return p


def strip_job_prefix(name: str) -> str:
    """``MotionCorr/job002/Movies/a.mrc`` -> ``Movies/a.mrc`` (RELION ``decomposePipelineFileName``)."""
    parts = Path(str(name)).parts
    for i in range(len(parts) - 1):
        if parts[i].startswith("job") and parts[i][3:].isdigit() and i >= 1:
            return str(Path(*parts[i + 1:]))
    return str(name).lstrip("/")


def micrograph_root(out_dir: str | os.PathLike, micrograph_name: str) -> Path:
    """``<out>/<micrograph name without Job/jobNNN/ prefix and extension>`` (RELION output naming)."""
    rel = Path(strip_job_prefix(micrograph_name))
    if rel.is_absolute():
        rel = Path(rel.name)
    return Path(out_dir) / rel.with_suffix("")


# ------------------------------------------------------------------------------------------- movies
@dataclass
class MovieInfo:
    """What the per-movie motion STAR (``rlnMicrographMetadata``) says about one movie."""

    metadata_path: Path
    movie_path: Path
    width: int
    height: int
    n_frames: int
    binning: float
    movie_angpix: float
    dose_per_frame: float
    pre_exposure: float
    start_frame: int  # 1-based first frame used by motion correction
    global_shift: np.ndarray  # (n_frames_in_table, 2) unbinned movie px, indexed by frame number - 1
    local_coeffs: np.ndarray | None  # (36,) or None
    gain_path: Path | None


def read_movie_info(metadata_path: str | os.PathLike, mps: float = -1.0) -> MovieInfo:
    """Read a RELION per-movie STAR (``data_general``, ``data_global_shift``, ``data_local_motion_model``)."""
    metadata_path = Path(metadata_path)
    blocks = read_star(metadata_path)
    if "general" not in blocks:
        raise ProgramError(f"motion-correction STAR file {metadata_path} has no data_general block")
    g = blocks["general"].iloc[0]

    def get(label, default=None):
        return g[label] if label in g.index else default

    movie_name = get(L.MICROGRAPH_MOVIE_NAME)
    if movie_name is None:
        raise ProgramError(f"motion-correction STAR file {metadata_path} names no movie "
                           f"({L.MICROGRAPH_MOVIE_NAME} is missing)")
    movie_path = resolve_path(str(movie_name), metadata_path.parent)
    angpix = float(mps) if mps and mps > 0 else float(get(L.MICROGRAPH_ORIGINAL_PIXEL_SIZE, -1.0))
    if not angpix > 0:
        raise ProgramError(f"motion-correction STAR file {metadata_path} has no "
                           f"{L.MICROGRAPH_ORIGINAL_PIXEL_SIZE}; give the movie pixel size with --mps")
    gs = blocks.get("global_shift")
    if gs is not None and len(gs):
        nums = np.asarray(gs[L.MICROGRAPH_FRAME_NUMBER], np.int64)
        table = np.zeros((int(nums.max()), 2))
        table[nums - 1, 0] = np.asarray(gs[L.MICROGRAPH_SHIFT_X], np.float64)
        table[nums - 1, 1] = np.asarray(gs[L.MICROGRAPH_SHIFT_Y], np.float64)
    else:
        table = np.zeros((0, 2))
    coeffs = None
    lm = blocks.get("local_motion_model")
    if lm is not None and len(lm) and int(get(L.MOTION_MODEL_VERSION, 0) or 0) == 1:
        coeffs = np.zeros(36)
        idx = np.asarray(lm[L.MOTION_MODEL_COEFFS_IDX], np.int64)
        coeffs[idx] = np.asarray(lm[L.MOTION_MODEL_COEFF], np.float64)
    gain = get(L.MICROGRAPH_GAIN_NAME)
    gain_path = resolve_path(str(gain), metadata_path.parent) if gain not in (None, "", "None") else None
    return MovieInfo(metadata_path=metadata_path, movie_path=movie_path,
                     width=int(get(L.IMAGE_SIZE_X, 0)), height=int(get(L.IMAGE_SIZE_Y, 0)),
                     n_frames=int(get(L.IMAGE_SIZE_Z, 0)), binning=float(get(L.MICROGRAPH_BINNING, 1.0)),
                     movie_angpix=angpix, dose_per_frame=float(get(L.MICROGRAPH_DOSE_RATE, 1.0)),
                     pre_exposure=float(get(L.MICROGRAPH_PRE_EXPOSURE, 0.0)),
                     start_frame=int(get(L.MICROGRAPH_START_FRAME, 1)), global_shift=table,
                     local_coeffs=coeffs, gain_path=gain_path)


def _open_movie(path: Path):
    """(n_frames, height, width, getter(i) -> float32 frame, closer)."""
    if not path.exists():
        raise ProgramError(f"movie {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        try:
            tif = tifffile.TiffFile(str(path))
            pages = tif.pages
            h, w = pages[0].shape[-2:]
            n_pages = len(pages)
        except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds for damaged files
            raise ProgramError(f"movie {path} cannot be read ({exc}); is it truncated or not a TIFF file?") from None

        def get_tif(i):  # RELION flips TIFF movies along the slow axis on read
            try:
                return np.asarray(pages[i].asarray(), np.float32)[::-1]
            except Exception as exc:  # noqa: BLE001
                raise ProgramError(f"movie {path} cannot be read at frame {i + 1} ({exc}); is it truncated?") from None

        return n_pages, h, w, get_tif, tif.close
    import mrcfile
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = mrcfile.mmap(str(path), mode="r", permissive=True)
    except (ValueError, OSError, EOFError) as exc:
        raise ProgramError(f"movie {path} cannot be read ({exc})") from None
    data = m.data
    if data is None:
        m.close()
        raise ProgramError(f"movie {path} cannot be read (truncated MRC file?)")
    if data.ndim == 2:
        data = data[None]

    def get_mrc(i):
        return np.asarray(data[i], np.float32)

    return data.shape[0], data.shape[1], data.shape[2], get_mrc, m.close


def movie_frame_count(path: Path) -> int:
    """Number of frames of a movie file (header only)."""
    total, _, _, _, close = _open_movie(path)
    close()
    return int(total)


def iter_movie_frames(info: MovieInfo, first_frame: int, n_frames: int):
    """Yield ``(f, -gain * frame)`` for frames ``first_frame .. first_frame+n_frames-1`` (0-based), one
    frame in memory at a time (RELION ``MovieLoader::readDense``: contrast inverted)."""
    total, _, _, get, close = _open_movie(info.movie_path)
    try:
        if first_frame + n_frames > total:
            raise ProgramError(f"movie {info.movie_path} has {total} frames; frames {first_frame + 1} to "
                               f"{first_frame + n_frames} were asked for (--first_frame/--last_frame)")
        gain = None
        if info.gain_path is not None and info.gain_path.exists() and info.gain_path.suffix.lower() in (".mrc", ".mrcs"):
            gain, _ = read_mrc(info.gain_path)
            gain = gain.reshape(gain.shape[-2:])
        for f in range(n_frames):
            frame = np.negative(get(first_frame + f), dtype=np.float32)  # one pass: float16 -> float32, negated
            # a float64 sum of float32 values is finite unless a value is NaN or Inf (one pass, no mask)
            if not np.isfinite(frame.sum(dtype=np.float64)):
                raise ProgramError(f"movie {info.movie_path} frame {first_frame + f + 1} contains NaN or Inf values")
            if gain is not None and gain.shape == frame.shape:
                frame *= gain
            yield f, frame
    finally:
        close()


def box_origins(coords_xy: np.ndarray, coords_angpix: float, angpix: float, movie_angpix: float,
                box_movie: int) -> np.ndarray:
    """Top-left corner (x0, y0) in movie pixels of each particle's box (RELION ``extractMovieStackFS``)."""
    xpo = np.trunc(coords_angpix * np.asarray(coords_xy, np.float64) / angpix)
    centre = np.sign(xpo * angpix / movie_angpix) * np.floor(np.abs(xpo * angpix / movie_angpix) + 0.5)
    return centre.astype(np.int64) - box_movie // 2


def extract_boxes(frame: np.ndarray, corners_xy: np.ndarray, box_movie: int, box_out: int) -> np.ndarray:
    """Cut ``box_movie`` boxes at integer ``corners_xy`` (n, 2) from ``frame`` (edge-clamped), rfft them
    (``/M^2``), Fourier-crop to ``box_out`` and zero the DC term.  Returns complex64 (n, N, N//2+1)."""
    import scipy.fft

    frame = np.asarray(frame, dtype=np.float32)  # one conversion per frame (float16/memory-mapped movies)
    h, w = frame.shape
    corners = np.asarray(corners_xy, np.int64).reshape(-1, 2)
    n = corners.shape[0]
    boxes = _box_buffer(n, box_movie)
    ar = np.arange(box_movie)
    for i, (x0, y0) in enumerate(corners):
        if x0 >= 0 and y0 >= 0 and x0 + box_movie <= w and y0 + box_movie <= h:
            boxes[i] = frame[y0:y0 + box_movie, x0:x0 + box_movie]
        else:  # edge-clamped gather only for boxes that leave the micrograph
            xs = np.clip(x0 + ar, 0, w - 1)
            ys = np.clip(y0 + ar, 0, h - 1)
            boxes[i] = frame[np.ix_(ys, xs)]
    ft = scipy.fft.rfft2(boxes, workers=-1)  # float32 in -> complex64 out
    ft = np.ascontiguousarray(fourier_crop(ft, box_movie, box_out), dtype=np.complex64)
    ft *= np.float32(1.0 / (box_movie * box_movie))
    ft[:, 0, 0] = 0
    return ft


_BOXES: dict = {}


def _box_buffer(n: int, box: int) -> np.ndarray:
    """A reused float32 ``(n, box, box)`` scratch array: a fresh 50 MB array per frame costs more in page
    faults than the copy into it (every cell is overwritten before use)."""
    key = box
    buf = _BOXES.get(key)
    if buf is None or buf.shape[0] < n:
        _BOXES.clear()
        buf = _BOXES[key] = np.empty((n, box, box), np.float32)
    return buf[:n]


def fourier_crop(ft: np.ndarray, box_in: int, box_out: int) -> np.ndarray:
    """Crop rfft images (..., M, M//2+1) to (..., N, N//2+1) (RELION ``cropCorner2D``; Nyquist row from +N/2)."""
    if box_in == box_out:
        return ft
    if box_out > box_in:
        raise ProgramError(f"cannot crop a {box_in}-pixel box to a larger {box_out}-pixel box")
    h = box_out // 2 + 1
    rows = np.concatenate([np.arange(h), np.arange(box_in - (box_out - h), box_in)])
    return ft[..., rows, :h]


# --------------------------------------------------------------------------------------- tracks
def _poly_basis(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(u), u, u * u, v, v * v, u * v], axis=-1)


def initial_tracks(info: MovieInfo, coords_xy: np.ndarray, coords_angpix: float, angpix: float,
                   first_frame: int, n_frames: int, use_local: bool = True) -> np.ndarray:
    """Initial tracks (n_p, n_f, 2) in particle px from the motion-correction model (ALGORITHMS.md 1.9):
    ``-(movie_angpix/angpix) * (globalShift[F-1] + poly(F - start, u, v))`` with F = first_frame + f + 1."""
    coords = np.asarray(coords_xy, np.float64).reshape(-1, 2)
    n_p = coords.shape[0]
    frames = first_frame + np.arange(n_frames) + 1  # 1-based movie frame numbers
    glob = np.zeros((n_frames, 2))
    if info.global_shift.shape[0]:
        ok = frames - 1 < info.global_shift.shape[0]
        glob[ok] = info.global_shift[frames[ok] - 1]
    shift = np.broadcast_to(glob[None], (n_p, n_frames, 2)).copy()
    if use_local and info.local_coeffs is not None and info.width > 0 and info.height > 0:
        u = coords[:, 0] * coords_angpix / (info.movie_angpix * info.width) - 0.5
        v = coords[:, 1] * coords_angpix / (info.movie_angpix * info.height) - 0.5
        b = _poly_basis(u, v)  # (n_p, 6)
        z = (frames - info.start_frame).astype(np.float64)
        zz = np.stack([z, z * z, z ** 3], axis=-1)  # (n_f, 3)
        c = info.local_coeffs
        for axis in range(2):
            cm = c[18 * axis:18 * axis + 18].reshape(6, 3)  # [basis j, power]
            shift[..., axis] += np.einsum("pj,fk,jk->pf", b, zz, cm)
    return -(info.movie_angpix / angpix) * shift


def write_tracks(path: str | os.PathLike, tracks_px: np.ndarray, angpix: float) -> None:
    """``<root>_tracks.star``: data_general (rlnParticleNumber) + data_0, data_1, ... with the track in Å."""
    from ..io.star import write_star

    tracks_a = np.asarray(tracks_px, np.float64) * angpix
    blocks: dict = {"general": {L.PARTICLE_NUMBER: int(tracks_a.shape[0])}}
    for p in range(tracks_a.shape[0]):
        blocks[str(p)] = pd.DataFrame({L.ORIGIN_X_ANGST: tracks_a[p, :, 0], L.ORIGIN_Y_ANGST: tracks_a[p, :, 1]})
    write_star(path, blocks)


def read_tracks(path: str | os.PathLike, angpix: float) -> np.ndarray:
    """Tracks (n_p, n_f, 2) in pixels of ``angpix`` from a ``_tracks.star`` file."""
    blocks = read_star(path)
    n_p = int(blocks["general"][L.PARTICLE_NUMBER].iloc[0])
    out = [np.stack([np.asarray(blocks[str(p)][L.ORIGIN_X_ANGST], np.float64),
                     np.asarray(blocks[str(p)][L.ORIGIN_Y_ANGST], np.float64)], axis=-1) for p in range(n_p)]
    return np.asarray(out).reshape(n_p, -1, 2) / angpix


# ----------------------------------------------------------------------------------------- project
@dataclass
class Reference:
    """Masked half maps, their projectors (built on demand), pixel size, box and FSC cut-off."""

    half1: np.ndarray
    half2: np.ndarray
    angpix: float
    box: int
    fsc: np.ndarray | None
    k_out: int
    pad: int = 2
    #: projections are zero beyond this radius (reference px); None = Nyquist.  Training sets it just above
    #: k_out: it never looks at higher frequencies and projects less than half the pixels
    r_max_px: float | None = None
    _projectors: dict = field(default_factory=dict)

    def projector(self, half: int):
        if half not in self._projectors:
            from ..core.polish.projection import make_projector

            self._projectors[half] = make_projector(self.half1 if half == 1 else self.half2, pad=self.pad,
                                                    r_max_px=self.r_max_px)
        return self._projectors[half]


@dataclass
class PolishProject:
    """Everything shared by the micrographs of one polishing run."""

    particles: pd.DataFrame
    optics: pd.DataFrame
    particle_star: Path
    mic_names: list[str]                 # micrographs (particle order of first appearance) with a movie
    mic_rows: list[np.ndarray]           # particle row indices per micrograph
    movie_infos: list[MovieInfo]
    reference: Reference
    first_frame: int                     # 0-based
    n_frames: int
    dose_per_frame: float
    cps: float = -1.0
    star_version: int = 50001
    dropped_micrographs: list[str] = field(default_factory=list)
    backend: str = "numpy"               # projector backend ("numpy", "opencl", "auto")
    _mtf_cache: dict = field(default_factory=dict)

    def optics_row(self, group: int) -> pd.Series:
        sel = self.optics[self.optics[L.OPTICS_GROUP] == group]
        return sel.iloc[0]

    def mtf_image(self, group: int, box: int, angpix: float) -> np.ndarray | None:
        """MTF of the optics group's detector on the rfft grid (None without ``rlnMtfFileName``).

        RELION multiplies the predictions by it (``ObservationModel::predictObservation``).  The table's
        1/pixel axis is converted with the detector pixel size ``rlnMicrographOriginalPixelSize`` and
        interpolated linearly (values beyond the table keep its end values).
        """
        key = (group, box, angpix)
        if key not in self._mtf_cache:
            opt = self.optics_row(group)
            name = opt.get(L.MTF_FILE_NAME, None) if L.MTF_FILE_NAME in opt.index else None
            if name is None or (isinstance(name, float) and np.isnan(name)) or str(name) in ("", "None"):
                self._mtf_cache[key] = None
            else:
                from ..io.mtf import read_mtf
                from ..core.fourier import frequency_grid

                path = resolve_path(str(name), self.particle_star.parent)
                if not path.exists():
                    raise ProgramError(f"particle STAR file {self.particle_star}: optics group {group} names the "
                                       f"MTF file {name}, which does not exist")
                mtf = read_mtf(path)
                det = float(opt.get(L.MICROGRAPH_ORIGINAL_PIXEL_SIZE, angpix) or angpix)
                ky, kx = frequency_grid((box, box))
                res = np.sqrt((kx * kx + ky * ky).astype(np.float64)) / (box * angpix)
                self._mtf_cache[key] = np.interp(res, mtf.frequency_per_a(det), mtf.value).astype(np.float32)
        return self._mtf_cache[key]


@dataclass
class MicrographData:
    """One micrograph, ready for motion estimation (see module docstring for conventions)."""

    name: str
    particle_rows: np.ndarray            # indices into project.particles
    positions_px: np.ndarray             # (n_p, 2) rlnCoordinateX/Y
    frames_rfft: np.ndarray              # (n_p, n_f, N, N//2+1) complex64
    pred_own_rfft: np.ndarray            # (n_p, N, N//2+1) complex64
    pred_opposite_rfft: np.ndarray       # (n_p, N, N//2+1) complex64
    initial_tracks_px: np.ndarray        # (n_p, n_f, 2)
    dose_per_frame: float
    angpix: float
    coords_angpix: float
    box: int
    movie_angpix: float = 0.0
    box_movie: int = 0
    movie: MovieInfo | None = None
    ctfs: np.ndarray | None = None       # (n_p, N, N//2+1) float32


def _read_fsc_k_out(pp: dict, box_ref: int, path: Path) -> tuple[np.ndarray | None, int]:
    fsc_table = pp.get("fsc")
    sh = box_ref // 2 + 1
    if fsc_table is None or L.FOURIER_SHELL_CORRELATION_CORRECTED not in fsc_table.columns:
        log.warning("postprocess STAR %s has no corrected FSC; using all frequencies up to Nyquist", path)
        return None, sh
    fsc = np.asarray(fsc_table[L.FOURIER_SHELL_CORRELATION_CORRECTED], np.float64)
    weight = np.where(fsc >= 0.143, fsc, 0.0)
    k_out = sh
    for i in range(1, min(len(weight), sh)):
        if weight[i] <= 0:
            k_out = i
            break
    return fsc, k_out


def _load_reference(args, pp_path: Path | None) -> Reference:
    m1 = getattr(args, "m1", "") or ""
    m2 = getattr(args, "m2", "") or ""
    mask_name = getattr(args, "mask", "") or ""
    pp: dict = {}
    base = [pp_path.parent] if pp_path is not None else []
    if pp_path is not None:
        pp = read_star(pp_path)
        g = pp.get("general")
        if g is None:
            raise ProgramError(f"postprocess STAR file {pp_path} has no data_general block")
        g = g.iloc[0]
        if not m1:
            if L.UNFILTERED_MAP_HALF1 not in g.index or L.UNFILTERED_MAP_HALF2 not in g.index:
                raise ProgramError(f"postprocess STAR file {pp_path} does not name the half maps "
                                   f"({L.UNFILTERED_MAP_HALF1}/{L.UNFILTERED_MAP_HALF2})")
            m1, m2 = str(g[L.UNFILTERED_MAP_HALF1]), str(g[L.UNFILTERED_MAP_HALF2])
        if not mask_name and L.MASK_NAME in g.index:
            mask_name = str(g[L.MASK_NAME])
    if not m1 or not m2:
        raise ProgramError("no reference: give --f postprocess.star or both --m1 and --m2")
    h1, a1 = read_mrc(resolve_path(m1, *base))
    h2, a2 = read_mrc(resolve_path(m2, *base))
    if h1.shape != h2.shape:
        raise ProgramError(f"half maps {m1} and {m2} have different shapes {h1.shape} and {h2.shape}")
    if h1.ndim != 3 or len(set(h1.shape)) != 1:
        raise ProgramError(f"half map {m1} is not a cube (shape {h1.shape})")
    angpix_ref = float(getattr(args, "angpix_ref", -1) or -1)
    if angpix_ref <= 0:
        angpix_ref = a1
    if mask_name and mask_name not in ("None", ""):
        mpath = resolve_path(mask_name, *base)
        mask, _ = read_mrc(mpath)
        if mask.shape != h1.shape:
            raise ProgramError(f"mask {mpath} has shape {mask.shape} but the half maps have {h1.shape}")
        if mask.min() < -1e-3 or mask.max() > 1 + 1e-3:
            raise ProgramError(f"mask {mpath} has values outside [0, 1]")
        h1 = h1 * mask
        h2 = h2 * mask
    fsc, k_out = _read_fsc_k_out(pp, h1.shape[0], pp_path) if pp_path is not None else (None, h1.shape[0] // 2 + 1)
    return Reference(half1=h1, half2=h2, angpix=angpix_ref, box=h1.shape[0], fsc=fsc, k_out=k_out,
                     pad=max(1, int(getattr(args, "pad", 2) or 2)))


def _check_particles(df: pd.DataFrame, path: Path) -> None:
    required = [L.IMAGE_NAME, L.MICROGRAPH_NAME, L.COORDINATE_X, L.COORDINATE_Y, L.ANGLE_ROT, L.ANGLE_TILT,
                L.ANGLE_PSI, L.DEFOCUS_U]
    for lab in required:
        if lab not in df.columns:
            extra = " (RELION would crash here)" if lab == L.IMAGE_NAME else ""
            raise ProgramError(f"particle STAR file {path} has no {lab} column{extra}")
    if len(df) == 0:
        raise ProgramError(f"particle STAR file {path} contains no particles")


def load_project(args) -> PolishProject:
    """Read particles (--i), motion-correction metadata (--corr_mic), reference (--f or --m1/--m2)."""
    from ..io.star import star_version

    pstar = Path(args.i)
    blocks = read_star(pstar)
    if "particles" in blocks:
        particles = blocks["particles"].reset_index(drop=True)
        optics = blocks.get("optics")
    else:
        particles = list(blocks.values())[-1].reset_index(drop=True)
        optics = None
    if optics is None or len(optics) == 0:
        raise ProgramError(f"particle STAR file {pstar} has no data_optics block (RELION 3.1+ format needed)")
    _check_particles(particles, pstar)
    if L.OPTICS_GROUP not in particles.columns:
        particles[L.OPTICS_GROUP] = 1
    if L.OPTICS_GROUP not in optics.columns:
        optics = optics.copy()
        optics[L.OPTICS_GROUP] = np.arange(1, len(optics) + 1)
    for _, row in optics.iterrows():
        ps = row.get(L.IMAGE_PIXEL_SIZE, None)
        if ps is None or not (float(ps) > 0):
            raise ProgramError(f"particle STAR file {pstar}: optics group {int(row[L.OPTICS_GROUP])} has no "
                               f"{L.IMAGE_PIXEL_SIZE}")
        if L.IMAGE_SIZE not in row.index or not int(row[L.IMAGE_SIZE]) > 0:
            raise ProgramError(f"particle STAR file {pstar}: optics group {int(row[L.OPTICS_GROUP])} has no "
                               f"{L.IMAGE_SIZE}")
    missing_groups = set(np.unique(particles[L.OPTICS_GROUP]).tolist()) - set(optics[L.OPTICS_GROUP].tolist())
    if missing_groups:
        raise ProgramError(f"particle STAR file {pstar}: optics group(s) {sorted(missing_groups)} used by "
                           f"particles are not in data_optics")

    pp_path = Path(args.f) if getattr(args, "f", "") else None
    reference = _load_reference(args, pp_path)

    # particles' pixel size / box must match the reference (RELION rescales; we ask for matching inputs)
    for _, row in optics.iterrows():
        ps, box = float(row[L.IMAGE_PIXEL_SIZE]), int(row[L.IMAGE_SIZE])
        if abs(ps - reference.angpix) > 1e-3 * reference.angpix or box != reference.box:
            raise ProgramError(
                f"particle STAR file {pstar}: optics group {int(row[L.OPTICS_GROUP])} has pixel size {ps:g} Å "
                f"and box {box}, but the reference half maps have {reference.angpix:g} Å and box {reference.box}; "
                f"pixel sizes and boxes must match")

    # micrograph -> motion metadata
    if not getattr(args, "corr_mic", ""):
        raise ProgramError("--corr_mic (corrected_micrographs.star from motion correction) is required")
    cpath = Path(args.corr_mic)
    cblocks = read_star(cpath)
    mics = cblocks.get("micrographs", list(cblocks.values())[-1])
    for lab in (L.MICROGRAPH_NAME, L.MICROGRAPH_METADATA):
        if lab not in mics.columns:
            raise ProgramError(f"micrograph STAR file {cpath} has no {lab} column")
    meta_by_name = {}
    for name, meta in zip(mics[L.MICROGRAPH_NAME], mics[L.MICROGRAPH_METADATA]):
        meta_by_name[str(name)] = str(meta)
        meta_by_name.setdefault(strip_job_prefix(str(name)), str(meta))

    names, rows = [], []
    order = pd.unique(particles[L.MICROGRAPH_NAME].astype(str))
    groups = particles.groupby(particles[L.MICROGRAPH_NAME].astype(str), sort=False).indices
    missing = []
    for name in order:
        if name not in meta_by_name and strip_job_prefix(name) not in meta_by_name:
            missing.append(name)
            continue
        names.append(name)
        rows.append(np.asarray(groups[name], np.int64))
    if missing:
        raise ProgramError(f"particle STAR file {pstar}: micrograph {missing[0]} (and {len(missing) - 1} more) "
                           f"of the particles has no movie in {cpath}")
    mps = float(getattr(args, "mps", -1) or -1)
    infos = []
    for name in names:
        meta = meta_by_name.get(name, meta_by_name.get(strip_job_prefix(name)))
        mpath = resolve_path(meta, cpath.parent)
        if not mpath.exists():
            raise ProgramError(f"motion-correction STAR file {meta} of micrograph {name} (named in {cpath}) "
                               f"does not exist")
        infos.append(read_movie_info(mpath, mps))
        group = int(particles[L.OPTICS_GROUP].iloc[rows[len(infos) - 1][0]])
        opt_row = optics[optics[L.OPTICS_GROUP] == group].iloc[0]
        orig = opt_row.get(L.MICROGRAPH_ORIGINAL_PIXEL_SIZE, None) if L.MICROGRAPH_ORIGINAL_PIXEL_SIZE in opt_row.index \
            else None
        if mps <= 0 and orig is not None and float(orig) > 0 and \
                abs(float(orig) - infos[-1].movie_angpix) > 0.01 * infos[-1].movie_angpix:
            raise ProgramError(f"movie pixel size {infos[-1].movie_angpix:g} Å in {mpath} does not match "
                               f"{L.MICROGRAPH_ORIGINAL_PIXEL_SIZE} {float(orig):g} Å of optics group {group} in "
                               f"{pstar}; pixel sizes must match (or give the movie pixel size with --mps)")
        if not infos[-1].movie_path.exists():
            raise ProgramError(f"movie {infos[-1].movie_path} of micrograph {name} (named in {mpath}) does not exist")

    first = int(getattr(args, "first_frame", 1)) - 1
    last = int(getattr(args, "last_frame", -1))
    if first < 0:
        raise ProgramError("--first_frame must be >= 1")
    n_movie = infos[0].n_frames or movie_frame_count(infos[0].movie_path)
    last0 = n_movie - 1 if last < 1 else last - 1
    n_frames = last0 - first + 1
    if n_frames < 2:
        raise ProgramError(f"--first_frame {first + 1} / --last_frame {last} leave fewer than 2 frames")
    for name, info in zip(names, infos):
        nf = info.n_frames or movie_frame_count(info.movie_path)
        if nf < first + n_frames:
            raise ProgramError(f"movie {info.movie_path} of micrograph {name} has {nf} frames, fewer than the "
                               f"{first + n_frames} asked for (--last_frame {last})")
    fdose = float(getattr(args, "fdose", -1) or -1)
    dose = fdose if fdose > 0 else infos[0].dose_per_frame
    return PolishProject(particles=particles, optics=optics, particle_star=pstar, mic_names=names, mic_rows=rows,
                         movie_infos=infos, reference=reference, first_frame=first, n_frames=n_frames,
                         dose_per_frame=dose, cps=float(getattr(args, "cps", -1) or -1),
                         star_version=star_version(pstar))


# ----------------------------------------------------------------------------------------- per mic
def _ctf_params(row: pd.Series, opt: pd.Series) -> CtfParams:
    def val(label, default):
        if label in row.index and not pd.isna(row[label]):
            return float(row[label])
        if label in opt.index and not pd.isna(opt[label]):
            return float(opt[label])
        return default

    du = val(L.DEFOCUS_U, 0.0)
    return CtfParams(defocus_u_a=du, defocus_v_a=val(L.DEFOCUS_V, du), defocus_angle_deg=val(L.DEFOCUS_ANGLE, 0.0),
                     voltage_kv=val(L.VOLTAGE, 200.0), cs_mm=val(L.SPHERICAL_ABERRATION, 2.7),
                     amplitude_contrast=val(L.AMPLITUDE_CONTRAST, 0.0), phase_shift_deg=val(L.PHASE_SHIFT, 0.0),
                     bfactor_a2=val(L.CTF_BFACTOR, 0.0), scale=val(L.CTF_SCALEFACTOR, 1.0))


def particle_geometry(project: PolishProject, rows: np.ndarray):
    """(rotations (n,3,3), origins_px (n,2), ctfs (n,N,N//2+1) float32, subsets (n,), angpix, box)."""
    df = project.particles.iloc[rows]
    group = int(df[L.OPTICS_GROUP].iloc[0])
    opt = project.optics_row(group)
    angpix, box = float(opt[L.IMAGE_PIXEL_SIZE]), int(opt[L.IMAGE_SIZE])
    rots = euler_to_matrix(np.asarray(df[L.ANGLE_ROT], np.float64), np.asarray(df[L.ANGLE_TILT], np.float64),
                           np.asarray(df[L.ANGLE_PSI], np.float64)).reshape(-1, 3, 3)
    if L.ORIGIN_X_ANGST in df.columns:
        origins = np.stack([np.asarray(df[L.ORIGIN_X_ANGST], np.float64),
                            np.asarray(df[L.ORIGIN_Y_ANGST], np.float64)], axis=-1) / angpix
    elif L.ORIGIN_X in df.columns:
        origins = np.stack([np.asarray(df[L.ORIGIN_X], np.float64), np.asarray(df[L.ORIGIN_Y], np.float64)], axis=-1)
    else:
        origins = np.zeros((len(df), 2))
    premult = int(opt.get(L.CTF_DATA_ARE_CTF_PREMULTIPLIED, 0) or 0) == 1
    ctfs = np.empty((len(df), box, box // 2 + 1), np.float32)
    for i, (_, row) in enumerate(df.iterrows()):
        c = ctf_2d(_ctf_params(row, opt), box, angpix)
        ctfs[i] = c * c if premult else c
    if L.RANDOM_SUBSET in df.columns:
        subsets = np.asarray(df[L.RANDOM_SUBSET], np.int64)
        if not np.isin(subsets, (1, 2)).all():
            raise ProgramError(f"particle STAR file {project.particle_star}: {L.RANDOM_SUBSET} must be 1 or 2 "
                               f"(found {sorted(set(subsets.tolist()) - {1, 2})})")
    else:  # RELION needs rlnRandomSubset; we alternate (documented choice)
        subsets = (np.asarray(rows) % 2) + 1
    return rots, origins, ctfs, subsets, angpix, box


def predictions(project: PolishProject, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pred_own, pred_opposite, ctfs) for particle ``rows``: projection at the pose, shifted by -origin, x CTF
    (x the detector MTF when the optics group names one)."""
    from ..core.polish.projection import predict_images

    rots, origins, ctfs, subsets, angpix, box = particle_geometry(project, rows)
    mtf = project.mtf_image(int(project.particles[L.OPTICS_GROUP].iloc[rows[0]]), box, angpix)
    factors = ctfs if mtf is None else ctfs * mtf[None]
    own = np.empty((len(rows), box, box // 2 + 1), np.complex64)
    opp = np.empty_like(own)
    for half in (1, 2):  # one projection call per half map (the OpenCL path copies the map per call)
        pred = predict_images(project.reference.projector(half), rots, origins, factors, backend=project.backend)
        mine = subsets == half
        own[mine] = pred[mine]
        opp[~mine] = pred[~mine]
    return own, opp, ctfs


def coords_pixel_size(project: PolishProject, info: MovieInfo) -> float:
    """Coordinate pixel size: --cps, else movie pixel size x binning."""
    return project.cps if project.cps > 0 else info.movie_angpix * info.binning


def movie_box(box: int, angpix: float, movie_angpix: float) -> int:
    """Particle box in movie pixels ``2*(int)(0.5*s*angpix/movie_angpix + 0.5)``."""
    return 2 * int(0.5 * box * angpix / movie_angpix + 0.5)


_FRAMES: dict = {}


def _frames_buffer(shape: tuple[int, ...]) -> np.ndarray:
    """A reused complex64 array of ``shape`` (grown when needed): the particle frames of one micrograph are
    ~1 GB at box 256 and a fresh array per micrograph costs seconds of page faults on a VM."""
    size = int(np.prod(shape))
    buf = _FRAMES.get("frames")
    if buf is None or buf.size < size:
        _FRAMES.clear()
        buf = _FRAMES["frames"] = np.empty(size, np.complex64)
    return buf[:size].reshape(shape)


def load_micrograph(project: PolishProject, mic_index: int, first_frame: int | None = None,
                    last_frame: int | None = None, with_predictions: bool = True,
                    reuse_buffer: bool = False) -> MicrographData:
    """Extract micrograph ``mic_index``'s particles from its movie, frame by frame (see module docstring).

    ``first_frame``/``last_frame`` are 0-based inclusive movie frame indices (default: the project's range).
    ``reuse_buffer``: the frames go into one array shared by every call with this flag (the previous such
    micrograph's frames are overwritten): for loops that are done with one micrograph before the next.
    """
    first = project.first_frame if first_frame is None else int(first_frame)
    n_f = project.n_frames if last_frame is None else int(last_frame) - first + 1
    info = project.movie_infos[mic_index]
    rows = project.mic_rows[mic_index]
    df = project.particles.iloc[rows]
    group = int(df[L.OPTICS_GROUP].iloc[0])
    opt = project.optics_row(group)
    angpix, box = float(opt[L.IMAGE_PIXEL_SIZE]), int(opt[L.IMAGE_SIZE])
    coords = np.stack([np.asarray(df[L.COORDINATE_X], np.float64), np.asarray(df[L.COORDINATE_Y], np.float64)], -1)
    cps = coords_pixel_size(project, info)
    m = movie_box(box, angpix, info.movie_angpix)
    if m < box:
        raise ProgramError(f"movie {info.movie_path}: movie pixel size {info.movie_angpix:g} Å is larger than the "
                           f"particle pixel size {angpix:g} Å (scaling up is not supported)")
    corners = box_origins(coords, cps, angpix, info.movie_angpix, m)
    shape = (len(rows), n_f, box, box // 2 + 1)
    frames = _frames_buffer(shape) if reuse_buffer else np.empty(shape, np.complex64)
    for f, frame in iter_movie_frames(info, first, n_f):
        frames[:, f] = extract_boxes(frame, corners, m, box)
    tracks0 = initial_tracks(info, coords, cps, angpix, first, n_f)
    if with_predictions:
        own, opp, ctfs = predictions(project, rows)
    else:
        own = opp = np.zeros((len(rows), box, box // 2 + 1), np.complex64)
        ctfs = None
    return MicrographData(name=project.mic_names[mic_index], particle_rows=rows, positions_px=coords,
                          frames_rfft=frames, pred_own_rfft=own, pred_opposite_rfft=opp,
                          initial_tracks_px=tracks0, dose_per_frame=project.dose_per_frame, angpix=angpix,
                          coords_angpix=cps, box=box, movie_angpix=info.movie_angpix, box_movie=m, movie=info,
                          ctfs=ctfs)
