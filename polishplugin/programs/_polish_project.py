"""The inputs of Bayesian polishing, shared by ``motion_refine`` (polishing) and ``motion_train`` (training).

* the command-line groups both programs accept (RELION ``relion_motion_refine`` spelling): one function
  per group, :func:`add_general_args`, :func:`add_reference_args`, :func:`add_motion_args`;
* :func:`prepare_run`: the checks, the device choice and :func:`load_project`, which reads particles,
  optics, ``corrected_micrographs.star``, the per-movie motion STAR files and the reference through
  :mod:`polishplugin.io` into a :class:`PolishProject` (ALGORITHMS.md 1.3, 1.4);
* :func:`load_micrograph`: one micrograph's particle frames (the movie streamed frame by frame), reference
  predictions and initial tracks, computed with :mod:`polishplugin.core` (ALGORITHMS.md 1.5, 1.9).

Conventions (RELION):

* ``frames_rfft[p, f]`` is the rfft (forward ``/M^2`` of the ``M = sqMg`` movie box, then Fourier-cropped
  to the particle box ``N``) of the **negated** movie frame around particle ``p``; DC = 0.  No power
  normalisation (that is ``core.motion.prepare.normalize_whiten_inplace``).
* Boxes: :mod:`polishplugin.core.polish.extract`.
* Tracks and ``initial_tracks_px`` are displacements in particle pixels (xy), absolute (incl. global drift).
* ``positions_px`` are ``rlnCoordinateX/Y`` (coordinate pixels; the GP kernel distance uses them).
* Paths in STAR files are resolved by :func:`polishplugin.io.particles.resolve_relion_path`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.geometry import euler_to_matrix
from ..core.motion.data import MotionData
from ..core.polish.bfactors import fsc_cutoff_shell
from ..io import labels as L
from ..io.movies import (MovieMetadata, is_eer, iter_raw_frames, movie_frame_count, read_corrected_micrographs,
                         read_movie_metadata)
from ..io.mrc import read_mrc
from ..io.particles import ParticleTable, read_particles, resolve_relion_path
from ..io.postprocess import read_postprocess
from ..io.star import StarError
from ._cli import ProgramError

__all__ = ["add_general_args", "add_reference_args", "add_motion_args", "choose_device", "prepare_run",
           "PolishProject", "Reference", "MicrographData", "load_project", "load_micrograph", "predictions",
           "particle_geometry", "coords_pixel_size", "movie_frames", "detector_correction", "eer_rendering",
           "release_buffers"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ arguments
def add_general_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("General")
    g.add_argument("--i", required=True, help="Input particle STAR file (RELION 3.1+, with data_optics)")
    g.add_argument("--o", required=True, help="Output directory")
    g.add_argument("--corr_mic", default="", help="corrected_micrographs.star from motion correction")
    g.add_argument("--first_frame", type=int, default=1, help="First movie frame (1-based)")
    g.add_argument("--last_frame", type=int, default=-1, help="Last movie frame (1-based; -1: all)")
    g.add_argument("--only_do_unfinished", action="store_true",
                   help="Skip micrographs whose outputs already exist")
    g.add_argument("--verb", type=int, default=1, help="Verbosity")
    g.add_argument("--j", type=int, default=1, help="Threads (numpy/OpenCL decide their own; kept for RELION)")
    g.add_argument("--B_parts", type=int, default=-1,
                   help="Accepted for RELION compatibility; the FCCs of all micrographs are always used")
    g.add_argument("--min_MG", type=int, default=0, help="First micrograph index (0-based)")
    g.add_argument("--max_MG", type=int, default=-1, help="Last micrograph index (-1: all)")
    g.add_argument("--mps", type=float, default=-1.0, help="Movie pixel size (Å; default from the movie metadata)")
    g.add_argument("--cps", type=float, default=-1.0,
                   help="Coordinate pixel size (Å; default movie pixel size x binning)")
    g.add_argument("--hot", type=float, default=-1.0,
                   help="Clip raw pixel values above this (hot pixels; <= 0: no clipping)")
    g.add_argument("--eer_upsampling", type=int, default=-1,
                   help="EER rendering: 1 (detector size) or 2 (twice it); default from the movie metadata STAR")
    g.add_argument("--eer_grouping", type=int, default=-1,
                   help="EER raw frames per fraction; default from the movie metadata STAR")
    g.add_argument("--device", default="",
                   help="'' = fastest measured per step (projections on OpenCL when present, CC maps numpy); "
                        "'cpu' = numpy only; 'P:D' = OpenCL platform P, device D for the OpenCL steps")


def add_reference_args(parser: argparse.ArgumentParser) -> None:
    r = parser.add_argument_group("Reference")
    r.add_argument("--f", default="", help="postprocess.star (half maps, mask and FSC)")
    r.add_argument("--m1", default="", help="Half map 1 (default from --f)")
    r.add_argument("--m2", default="", help="Half map 2 (default from --f)")
    r.add_argument("--mask", default="", help="Mask applied to the half maps (default from --f)")
    r.add_argument("--angpix_ref", type=float, default=-1.0, help="Reference pixel size (default from header)")
    r.add_argument("--pad", type=int, default=2, help="Padding of the reference projector")


def add_motion_args(parser: argparse.ArgumentParser) -> None:
    m = parser.add_argument_group("Motion fit")
    m.add_argument("--fdose", type=float, default=-1.0,
                   help="Electron dose per frame (e/Å²; default rlnMicrographDoseRate of the first movie)")
    m.add_argument("--s_vel", type=float, default=0.5, help="Velocity sigma [Å/dose]")
    m.add_argument("--s_div", type=float, default=5000.0, help="Divergence sigma [Å]")
    m.add_argument("--s_acc", type=float, default=2.0, help="Acceleration sigma [Å/dose] (<0: off)")
    m.add_argument("--params_file", default="", help="File with 's_vel s_div s_acc' (overrides the three)")
    m.add_argument("--cc_pad", type=float, default=1.0, help="Cross-correlation padding (only 1 supported)")
    m.add_argument("--dmg_a", type=float, default=3.40, help="Damage model parameter a")
    m.add_argument("--dmg_b", type=float, default=-1.06, help="Damage model parameter b")
    m.add_argument("--dmg_c", type=float, default=-0.54, help="Damage model parameter c")
    m.add_argument("--max_iters", type=int, default=10000, help="Maximum L-BFGS iterations")
    m.add_argument("--eps", type=float, default=1e-5, help="L-BFGS convergence threshold")
    m.add_argument("--no_whiten", action="store_true", help="Do not whiten the noise spectrum")
    m.add_argument("--absolute_params", action="store_true", help="Do not scale the sigmas by the dose")
    m.add_argument("--gi", action="store_true", help="Initialise from the global CC track, not the motion model")
    m.add_argument("--sq_exp_ker", action="store_true", help="Squared-exponential kernel")
    m.add_argument("--max_ed", type=int, default=-1, help="Maximum number of eigen-deformations")
    m.add_argument("--mot_range", type=float, default=50.0, help="Motion range in px (training CC crop)")


# ------------------------------------------------------------------------------------------ device
def choose_device(args) -> tuple[str, str | None]:
    """``--device`` through :func:`~polishplugin.core.opencl.runtime.choose_backend`: ``("numpy", None)``
    or ``("opencl", name or None)``; a named device is also made the OpenCL runtime's default."""
    from ..core.opencl.runtime import ENV_DEVICE, OpenCLUnavailable, choose_backend

    dev = (getattr(args, "device", "") or "").strip()
    try:
        backend, device = choose_backend(dev)
    except OpenCLUnavailable as exc:
        raise ProgramError(f"--device {dev}: {exc}") from None
    if device is not None:
        os.environ[ENV_DEVICE] = device  # the OpenCL runtime picks this device
    return backend, device


def prepare_run(args) -> "PolishProject":
    """Checks shared by both programs, the output folder, :func:`load_project` and the device choice."""
    if getattr(args, "cc_pad", 1.0) != 1.0:
        raise ProgramError("--cc_pad other than 1 is not supported")
    Path(args.o.rstrip("/") or ".").mkdir(parents=True, exist_ok=True)
    project = load_project(args)
    project.backend = choose_device(args)[0]  # the reference projections
    return project


# ------------------------------------------------------------------------------------------ project
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

    def release(self) -> None:
        """Drop the projectors (built again on demand): a 256-px reference's two are ~2 GB."""
        self._projectors.clear()

    def projector(self, half: int):
        if half not in self._projectors:
            from ..core.polish.projection import make_projector

            self._projectors[half] = make_projector(self.half1 if half == 1 else self.half2, pad=self.pad,
                                                    r_max_px=self.r_max_px)
        return self._projectors[half]


@dataclass
class PolishProject:
    """Everything shared by the micrographs of one polishing run."""

    table: ParticleTable
    mic_names: list[str]                 # micrographs (particle order of first appearance) with a movie
    mic_rows: list[np.ndarray]           # particle row indices per micrograph
    movies: list[MovieMetadata]          # per micrograph; original_pixel_size_a = the movie pixel size used
    reference: Reference
    first_frame: int                     # 0-based
    n_frames: int
    dose_per_frame: float
    cps: float = -1.0
    backend: str = "numpy"               # projector backend ("numpy", "opencl")
    hot: float = -1.0                    # --hot: raw values above it are clipped (<= 0: none)
    _mtf_cache: dict = field(default_factory=dict)
    _gain_cache: dict = field(default_factory=dict)

    @property
    def particles(self) -> pd.DataFrame:
        return self.table.particles

    @property
    def optics(self) -> pd.DataFrame:
        return self.table.optics

    @property
    def particle_star(self) -> Path:
        return Path(self.table.path)

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
                from ..core.fourier import frequency_grid
                from ..io.mtf import read_mtf

                path = resolve_relion_path(str(name), self.particle_star)
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
class MicrographData(MotionData):
    """One micrograph, ready for motion estimation (see module docstring for conventions): the particle
    frames (:class:`~polishplugin.core.motion.data.MotionData`) and the movie they were read from."""

    movie_angpix: float = 0.0
    box_movie: int = 0
    movie: MovieMetadata | None = None
    ctfs: np.ndarray | None = None       # (n_p, N, N//2+1) float32


# ------------------------------------------------------------------------------------------ loading
def _load_reference(args) -> Reference:
    """Half maps (--m1/--m2, else named by --f), masked (--mask, else named by --f), and the FSC cut-off."""
    pp_path = Path(args.f) if getattr(args, "f", "") else None
    m1 = getattr(args, "m1", "") or ""
    m2 = getattr(args, "m2", "") or ""
    mask_name = getattr(args, "mask", "") or ""
    pp = None
    if pp_path is not None:
        pp = read_postprocess(pp_path)
        if not m1:
            named = pp.half_maps()
            if named[0] is None or named[1] is None:
                raise ProgramError(f"postprocess STAR file {pp_path} does not name the half maps "
                                   f"({L.UNFILTERED_MAP_HALF1}/{L.UNFILTERED_MAP_HALF2})")
            m1, m2 = str(named[0]), str(named[1])
        if not mask_name and pp.mask_name is not None:
            mask_name = str(pp.mask_name)
    if not m1 or not m2:
        raise ProgramError("no reference: give --f postprocess.star or both --m1 and --m2")
    h1, a1 = read_mrc(resolve_relion_path(m1, pp_path))
    h2, _ = read_mrc(resolve_relion_path(m2, pp_path))
    if h1.shape != h2.shape:
        raise ProgramError(f"half maps {m1} and {m2} have different shapes {h1.shape} and {h2.shape}")
    if h1.ndim != 3 or len(set(h1.shape)) != 1:
        raise ProgramError(f"half map {m1} is not a cube (shape {h1.shape})")
    angpix_ref = float(getattr(args, "angpix_ref", -1) or -1)
    if angpix_ref <= 0:
        angpix_ref = a1
    if mask_name and mask_name not in ("None", ""):
        mpath = resolve_relion_path(mask_name, pp_path)
        mask, _ = read_mrc(mpath)
        if mask.shape != h1.shape:
            raise ProgramError(f"mask {mpath} has shape {mask.shape} but the half maps have {h1.shape}")
        if mask.min() < -1e-3 or mask.max() > 1 + 1e-3:
            raise ProgramError(f"mask {mpath} has values outside [0, 1]")
        h1 = h1 * mask
        h2 = h2 * mask
    fsc = None
    if pp is not None and L.FOURIER_SHELL_CORRELATION_CORRECTED in pp.fsc.columns:
        fsc = np.asarray(pp.fsc[L.FOURIER_SHELL_CORRELATION_CORRECTED], np.float64)
    elif pp is not None:
        log.warning("postprocess STAR %s has no corrected FSC; using all frequencies up to Nyquist", pp_path)
    return Reference(half1=h1, half2=h2, angpix=angpix_ref, box=h1.shape[0], fsc=fsc,
                     k_out=fsc_cutoff_shell(fsc, h1.shape[0]), pad=max(1, int(getattr(args, "pad", 2) or 2)))


_REQUIRED = (L.MICROGRAPH_NAME, L.COORDINATE_X, L.COORDINATE_Y, L.ANGLE_ROT, L.ANGLE_TILT, L.ANGLE_PSI,
             L.DEFOCUS_U)


def _read_particles(path: Path) -> ParticleTable:
    """The particle table (RELION 3.1+ with optics) with the columns and optics values polishing needs."""
    table = read_particles(path)
    for lab in _REQUIRED:
        if lab not in table.particles.columns:
            raise ProgramError(f"particle STAR file {path} has no {lab} column")
    for _, row in table.optics.iterrows():
        group = int(row[L.OPTICS_GROUP])
        if not float(row[L.IMAGE_PIXEL_SIZE]) > 0:
            raise ProgramError(f"particle STAR file {path}: optics group {group} has no {L.IMAGE_PIXEL_SIZE}")
        if L.IMAGE_SIZE not in row.index or not int(row[L.IMAGE_SIZE]) > 0:
            raise ProgramError(f"particle STAR file {path}: optics group {group} has no {L.IMAGE_SIZE} "
                               "(a RELION 3.1+ file with a data_optics block is needed)")
    return table


def _check_scaling(project: "PolishProject") -> None:
    """Optics groups may differ from the reference and from each other in pixel size and box (RELION rescales
    the predictions), but a particle pixel finer than its movie pixel would need upsampling."""
    for name, rows, meta in zip(project.mic_names, project.mic_rows, project.movies):
        group = int(project.particles[L.OPTICS_GROUP].iloc[rows[0]])
        opt = project.optics_row(group)
        ps, box = float(opt[L.IMAGE_PIXEL_SIZE]), int(opt[L.IMAGE_SIZE])
        movie_ps = float(meta.original_pixel_size_a)
        if ps < movie_ps * (1 - 1e-3):
            raise ProgramError(
                f"particle STAR file {project.particle_star}: optics group {group} has pixel size {ps:g} Å (box "
                f"{box}), finer than the {movie_ps:g} Å pixels of its movie {meta.movie_path()} (micrograph {name}); "
                "polishing cannot scale particles up: pixel sizes and boxes must match the movies")


def _movie_records(args, table: ParticleTable) -> tuple[list[str], list[np.ndarray], list[MovieMetadata]]:
    """Micrographs of the particles (order of first appearance), their particle rows and motion records."""
    if not getattr(args, "corr_mic", ""):
        raise ProgramError("--corr_mic (corrected_micrographs.star from motion correction) is required")
    cpath = Path(args.corr_mic)
    mics = read_corrected_micrographs(cpath)
    names, rows, mic_rows, missing = [], [], [], []
    for name, idx in table.group_by_micrograph():
        try:
            mic_rows.append(mics.row_of(name))
        except StarError:
            missing.append(name)
            continue
        names.append(name)
        rows.append(idx)
    if missing:
        raise ProgramError(f"particle STAR file {table.path}: micrograph {missing[0]} (and {len(missing) - 1} more) "
                           f"of the particles has no movie in {cpath}")
    mps = float(getattr(args, "mps", -1) or -1)
    movies = []
    for name, idx, row in zip(names, rows, mic_rows):
        mpath = mics.metadata_path(row)
        if not mpath.exists():
            meta = mics.micrographs[L.MICROGRAPH_METADATA].iloc[row]
            raise ProgramError(f"motion-correction STAR file {meta} of micrograph {name} (named in {cpath}) "
                               f"does not exist")
        movies.append(_eer_settings(_movie_record(read_movie_metadata(mpath), mps, name, table, idx), args))
    return names, rows, movies


def _movie_record(meta: MovieMetadata, mps: float, name: str, table: ParticleTable, rows: np.ndarray) -> MovieMetadata:
    """``meta`` with the movie pixel size used (``--mps``, else the file's), checked against the optics group."""
    if mps > 0:
        meta = dataclasses.replace(meta, original_pixel_size_a=mps)
    elif meta.original_pixel_size_a is None or not meta.original_pixel_size_a > 0:
        raise ProgramError(f"motion-correction STAR file {meta.path} has no {L.MICROGRAPH_ORIGINAL_PIXEL_SIZE}; "
                           f"give the movie pixel size with --mps")
    movie_angpix = float(meta.original_pixel_size_a)
    group = int(table.particles[L.OPTICS_GROUP].iloc[rows[0]])
    opt_row = table.optics[table.optics[L.OPTICS_GROUP] == group].iloc[0]
    orig = opt_row.get(L.MICROGRAPH_ORIGINAL_PIXEL_SIZE, None)
    if mps <= 0 and orig is not None and float(orig) > 0 and abs(float(orig) - movie_angpix) > 0.01 * movie_angpix:
        raise ProgramError(f"movie pixel size {movie_angpix:g} Å in {meta.path} does not match "
                           f"{L.MICROGRAPH_ORIGINAL_PIXEL_SIZE} {float(orig):g} Å of optics group {group} in "
                           f"{table.path}; pixel sizes must match (or give the movie pixel size with --mps)")
    if not meta.movie_path().exists():
        raise ProgramError(f"movie {meta.movie_path()} of micrograph {name} (named in {meta.path}) does not exist")
    for what, path in (("gain reference", meta.gain_path()), ("defect file", meta.defect_path())):
        if path is not None and not path.exists():
            raise ProgramError(f"{what} {path} of micrograph {name} (named in {meta.path}) does not exist")
    return meta


def _eer_settings(meta: MovieMetadata, args) -> MovieMetadata:
    """An EER movie's rendering (rlnEERUpsampling, rlnEERGrouping) from its STAR, else from --eer_upsampling /
    --eer_grouping, stored in ``extra_general``; missing or changed settings are errors (RELION refuses to
    polish at another rendering than motion correction's)."""
    if not is_eer(meta.movie_path()):
        return meta
    given = (int(getattr(args, "eer_upsampling", -1) or -1), int(getattr(args, "eer_grouping", -1) or -1))
    stored = meta.eer_settings()
    chosen = []
    for label, option, g, s in zip((L.MICROGRAPH_EER_UPSAMPLING, L.MICROGRAPH_EER_GROUPING),
                                   ("--eer_upsampling", "--eer_grouping"), given, stored):
        if s is not None and g > 0 and g != s:
            raise ProgramError(f"{option} {g} differs from {label} {s} in {meta.path}: polishing must render EER "
                               "movies as motion correction did")
        if s is None and g <= 0:
            raise ProgramError(f"movie {meta.movie_path()} is an EER movie but its metadata STAR file {meta.path} "
                               f"has no {label}; give {option}")
        chosen.append(s if s is not None else g)
    if chosen[0] not in (1, 2):
        raise ProgramError(f"{L.MICROGRAPH_EER_UPSAMPLING} of {meta.path} must be 1 or 2, got {chosen[0]}")
    extra = dict(meta.extra_general)
    extra[L.MICROGRAPH_EER_UPSAMPLING], extra[L.MICROGRAPH_EER_GROUPING] = chosen
    return dataclasses.replace(meta, extra_general=extra)


def eer_rendering(movie: MovieMetadata) -> tuple[int, int]:
    """``(upsampling, grouping)`` to read ``movie`` with (1, 1 for movies that are not EER)."""
    up, group = movie.eer_settings()
    return (up or 1, group or 1) if is_eer(movie.movie_path()) else (1, 1)


def _frame_range(args, names: list[str], movies: list[MovieMetadata]) -> tuple[int, int]:
    """``(first frame 0-based, number of frames)`` from --first_frame/--last_frame, checked on every movie."""
    first = int(getattr(args, "first_frame", 1)) - 1
    last = int(getattr(args, "last_frame", -1))
    if first < 0:
        raise ProgramError("--first_frame must be >= 1")
    n_movie = movies[0].n_frames or movie_frame_count(movies[0].movie_path(), *eer_rendering(movies[0]))
    last0 = n_movie - 1 if last < 1 else last - 1
    n_frames = last0 - first + 1
    if n_frames < 2:
        raise ProgramError(f"--first_frame {first + 1} / --last_frame {last} leave fewer than 2 frames")
    for name, meta in zip(names, movies):
        nf = meta.n_frames or movie_frame_count(meta.movie_path(), *eer_rendering(meta))
        if nf < first + n_frames:
            raise ProgramError(f"movie {meta.movie_path()} of micrograph {name} has {nf} frames, fewer than the "
                               f"{first + n_frames} asked for (--last_frame {last})")
    return first, n_frames


def load_project(args) -> PolishProject:
    """Read particles (--i), reference (--f or --m1/--m2) and motion-correction metadata (--corr_mic)."""
    table = _read_particles(Path(args.i))
    reference = _load_reference(args)
    names, rows, movies = _movie_records(args, table)
    first, n_frames = _frame_range(args, names, movies)
    fdose = float(getattr(args, "fdose", -1) or -1)
    dose = fdose if fdose > 0 else movies[0].dose_per_frame_e_per_a2
    project = PolishProject(table=table, mic_names=names, mic_rows=rows, movies=movies, reference=reference,
                            first_frame=first, n_frames=n_frames, dose_per_frame=dose,
                            cps=float(getattr(args, "cps", -1) or -1), hot=float(getattr(args, "hot", -1) or -1))
    _check_scaling(project)
    return project


# ----------------------------------------------------------------------------------------- per mic
def particle_geometry(project: PolishProject, rows: np.ndarray):
    """(rotations (n,3,3), origins_px (n,2), ctfs (n,N,N//2+1) float32, subsets (n,), angpix, box)."""
    from ..core.ctf import ctf_2d

    part = project.table.subset(rows)
    group = int(part.particles[L.OPTICS_GROUP].iloc[0])
    opt = project.optics_row(group)
    angpix, box = float(opt[L.IMAGE_PIXEL_SIZE]), int(opt[L.IMAGE_SIZE])
    angles = part.angles_deg()
    rots = euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2]).reshape(-1, 3, 3)
    origins = part.origins_px()
    premult = int(opt.get(L.CTF_DATA_ARE_CTF_PREMULTIPLIED, 0) or 0) == 1
    ctfs = np.empty((len(part), box, box // 2 + 1), np.float32)
    for i, params in enumerate(part.ctf_params()):
        c = ctf_2d(params, box, angpix)
        ctfs[i] = c * c if premult else c
    if L.RANDOM_SUBSET in part.particles.columns:
        subsets = part.half_sets()
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
    low_memory = len(rows) * project.n_frames * box * (box // 2 + 1) * 8 > BIG_MICROGRAPH_BYTES
    for half in (1, 2):  # one projection call per half map (the OpenCL path copies the map per call)
        pred = predict_images(project.reference.projector(half), rots, origins, factors, backend=project.backend,
                              box=box, angpix=angpix, angpix_ref=project.reference.angpix)
        mine = subsets == half
        own[mine] = pred[mine]
        opp[~mine] = pred[~mine]
        if low_memory:  # a big micrograph: one projector (~1 GB at box 256) in memory at a time
            project.reference.release()
    return own, opp, ctfs


def coords_pixel_size(project: PolishProject, movie: MovieMetadata) -> float:
    """Coordinate pixel size: --cps, else movie pixel size x binning."""
    return project.cps if project.cps > 0 else movie.original_pixel_size_a * movie.binning


def particle_coordinates(project: PolishProject, mic_index: int) -> np.ndarray:
    """``(n_p, 2)`` rlnCoordinateX/Y of micrograph ``mic_index``'s particles."""
    df = project.particles.iloc[project.mic_rows[mic_index]]
    return np.stack([np.asarray(df[L.COORDINATE_X], np.float64), np.asarray(df[L.COORDINATE_Y], np.float64)], -1)


def detector_correction(project: PolishProject, mic_index: int):
    """The :class:`~polishplugin.core.polish.detector.DetectorCorrection` of micrograph ``mic_index``'s movie:
    its gain (read once per gain file and rendering), defect file, hot pixels and zero-gain pixels, --hot."""
    from ..core.polish.detector import DetectorCorrection, plan_defects
    from ..io.detector import defect_indices, read_gain
    from ..io.movies import open_movie

    movie = project.movies[mic_index]
    path = movie.movie_path()
    up, group = eer_rendering(movie)
    handle = open_movie(path, up, group)  # errors (MovieError, DetectorFileError) name their file
    handle.close()
    shape = (handle.height, handle.width)
    gain = None
    if movie.gain_path() is not None:
        key = (str(movie.gain_path()), shape, up if is_eer(path) else None)
        if key not in project._gain_cache:
            project._gain_cache.clear()  # one gain in memory (a K3 gain is 377 MB)
            project._gain_cache[key] = read_gain(key[0], shape, path, key[2])
        gain = project._gain_cache[key]
    defects = defect_indices(shape, movie.defect_path(), movie.hot_pixels_px, gain, movie.path)
    plan = plan_defects(defects, shape, 4 if is_eer(path) else 2) if defects.size else None
    return DetectorCorrection(gain=gain, defects=plan, hot=project.hot, seed=mic_index)


def movie_frames(project: PolishProject, mic_index: int, first: int, n_frames: int):
    """Yield ``(f, frame)``: micrograph ``mic_index``'s movie frames ``first .. first+n_frames-1`` (0-based), one
    at a time, negated, gain-multiplied and with defects replaced (RELION ``MovieLoader``)."""
    correction = detector_correction(project, mic_index)
    movie = project.movies[mic_index]
    for f, raw in iter_raw_frames(movie.movie_path(), first, n_frames, *eer_rendering(movie)):
        yield f, correction.apply(raw, first + f, in_place=True)
        del raw  # one frame in memory at a time


_FRAMES: dict = {}
#: micrographs whose particle frames take more than this (2 GiB: e.g. 300 particles x 27 frames at box 256) keep
#: one reference projector at a time and none while their frames are extracted and fitted; rebuilding the two
#: costs ~13 s per micrograph at box 256 (2 cores), ~10 % of such a micrograph's time.  The environment variable
#: POLISHPLUGIN_LOW_MEMORY_BYTES sets another threshold (bench/k3_memory.py measures short movies with 0).
BIG_MICROGRAPH_BYTES = int(os.environ.get("POLISHPLUGIN_LOW_MEMORY_BYTES", 2 << 30))


def _frames_buffer(shape: tuple[int, ...]) -> np.ndarray:
    """A reused complex64 array of ``shape`` (grown when needed): the particle frames of one micrograph are
    ~1 GB at box 256 and a fresh array per micrograph costs seconds of page faults on a VM."""
    size = int(np.prod(shape))
    buf = _FRAMES.get("frames")
    if buf is None or buf.size < size:
        _FRAMES.clear()
        buf = _FRAMES["frames"] = np.empty(size, np.complex64)
    return buf[:size].reshape(shape)


def release_buffers(project: PolishProject) -> None:
    """Free what only the motion stage needs (the reused particle-frames array, the projectors) before the
    recombination pass."""
    _FRAMES.clear()
    project.reference.release()


def load_micrograph(project: PolishProject, mic_index: int, first_frame: int | None = None,
                    last_frame: int | None = None, with_predictions: bool = True,
                    reuse_buffer: bool = False) -> MicrographData:
    """Extract micrograph ``mic_index``'s particles from its movie, frame by frame (see module docstring).

    ``first_frame``/``last_frame`` are 0-based inclusive movie frame indices (default: the project's range).
    ``reuse_buffer``: the frames go into one array shared by every call with this flag (the previous such
    micrograph's frames are overwritten): for loops that are done with one micrograph before the next.
    """
    from ..core.motion.initial_tracks import initial_tracks
    from ..core.polish.extract import box_origins, extract_boxes, movie_box

    first = project.first_frame if first_frame is None else int(first_frame)
    n_f = project.n_frames if last_frame is None else int(last_frame) - first + 1
    movie = project.movies[mic_index]
    rows = project.mic_rows[mic_index]
    opt = project.optics_row(int(project.particles[L.OPTICS_GROUP].iloc[rows[0]]))
    angpix, box = float(opt[L.IMAGE_PIXEL_SIZE]), int(opt[L.IMAGE_SIZE])
    coords = particle_coordinates(project, mic_index)
    cps = coords_pixel_size(project, movie)
    movie_angpix = float(movie.original_pixel_size_a)
    m = movie_box(box, angpix, movie_angpix)
    if m < box:
        raise ProgramError(f"movie {movie.movie_path()}: movie pixel size {movie_angpix:g} Å is larger than the "
                           f"particle pixel size {angpix:g} Å (scaling up is not supported)")
    corners = box_origins(coords, cps, angpix, movie_angpix, m)
    shape = (len(rows), n_f, box, box // 2 + 1)
    # predictions first: for big micrographs the projectors are dropped before the frames are extracted, so
    # that the two never share the memory (a K3 movie's 300 particles x 40 frames at box 256 are 3.2 GB)
    if with_predictions:
        own, opp, ctfs = predictions(project, rows)
    else:
        own = opp = np.zeros((len(rows), box, box // 2 + 1), np.complex64)
        ctfs = None
    if np.prod(shape) * 8 > BIG_MICROGRAPH_BYTES:
        project.reference.release()
    frames = _frames_buffer(shape) if reuse_buffer else np.empty(shape, np.complex64)
    for f, frame in movie_frames(project, mic_index, first, n_f):
        extract_boxes(frame, corners, m, box, out=frames[:, f])
        del frame
    local = movie.local_coeffs if movie.motion_model_version == 1 else None
    tracks0 = initial_tracks(coords, cps, angpix, first, n_f, movie.global_shifts_px, movie_angpix,
                             movie.start_frame, local, (movie.width_px, movie.height_px))
    return MicrographData(name=project.mic_names[mic_index], particle_rows=rows, positions_px=coords,
                          frames_rfft=frames, pred_own_rfft=own, pred_opposite_rfft=opp,
                          initial_tracks_px=tracks0, dose_per_frame=project.dose_per_frame, angpix=angpix,
                          coords_angpix=cps, box=box, movie_angpix=movie_angpix, box_movie=m, movie=movie,
                          ctfs=ctfs)
