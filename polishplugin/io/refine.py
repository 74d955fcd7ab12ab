"""3D auto-refine files (``polishplugin refine3d``, RELION ``relion_refine``): one reader and one writer each.

* ``<o>[_itNNN]_model.star``: :class:`RefineModel`, :func:`write_model`, :func:`read_model` (resolution,
  gold-standard FSC, SSNR, noise spectrum, group scale corrections and the iteration's bookkeeping);
* ``<o>[_itNNN]_sampling.star``: :class:`RefineSampling`, :func:`write_sampling`, :func:`read_sampling`;
* ``<o>_itNNN_optimiser.star`` + ``.npz``: :class:`OptimiserState`, :func:`write_optimiser`,
  :func:`read_optimiser` (what ``--continue`` restarts from);
* ``<o>[_itNNN]_data.star``: the input particles with the refined poses, :func:`refined_particles`,
  written with :func:`polishplugin.io.particles.write_particles` and read with ``read_particles``;
* the refine's view of the input particles: :func:`particle_groups`, :func:`norm_corrections`,
  :func:`read_particle_images`;
* ``refine3d_arguments.json`` (the protocol's record of the arguments a run started with, so that Scipion's
  "Continue" goes on only from the same run): :func:`write_run_arguments`, :func:`read_run_arguments`.

Readers raise :class:`StarError` with a sentence naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels as L
from .mrc import read_mrc, read_stack_images
from .particles import ParticleTable
from .star import atomic_write_text, read_star, required_column as _column, StarError, write_star

__all__ = [
    "RefineModel", "write_model", "read_model", "RefineSampling", "write_sampling", "read_sampling",
    "OPTIMISER_VERSION", "OptimiserState", "write_optimiser", "read_optimiser", "RefinedParticles",
    "refined_particles", "particle_groups", "norm_corrections", "read_particle_images", "write_run_arguments",
    "read_run_arguments",
]


def _general(blocks: dict, block: str) -> dict:
    """A list block as ``{label: python value}``."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in blocks[block].iloc[0].items()}


# ------------------------------------------------------------------------------------ model.star
@dataclass
class RefineModel:
    """``<o>_model.star`` of a one-class, one-optics-group auto-refine (RELION ``MlModel::write``).

    Per shell ``0 .. box//2``: ``fsc`` (rlnGoldStandardFsc), ``ssnr`` (rlnSsnrMap) and ``sigma2`` (rlnSigma2Noise
    of optics group 1); ``resolution_per_a`` is ``shell / (box angpix)`` unless given.  Read from a file
    that lacks them, ``ssnr``/``sigma2`` are None and the scalars keep their defaults.
    """

    box: int
    angpix: float
    current_resolution_a: float
    current_size: int
    fsc: np.ndarray
    ssnr: np.ndarray | None = None
    sigma2: np.ndarray | None = None
    pad: int = 2
    tau2_fudge: float = 1.0
    avg_norm: float = 1.0
    sigma_offset_a: float = 0.0
    local: bool = False  # rlnOrientationalPriorMode (local searches)
    local_sigma_deg: float = 0.0  # rlnSigmaPrior{Rot,Tilt,Psi}Angle
    loglik: float = 0.0
    ave_pmax: float = 0.0
    healpix_order: int = 2
    offset_range_px: float = 0.0
    offset_step_px: float = 0.0
    reference_image: str = ""
    acc_rot_deg: float = 999.0
    acc_trans_a: float = 999.0
    group_names: list = field(default_factory=list)
    group_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    group_scales: np.ndarray = field(default_factory=lambda: np.zeros(0))
    resolution_per_a: np.ndarray | None = None

    def __post_init__(self):
        if self.resolution_per_a is None:
            self.resolution_per_a = np.arange(self.box // 2 + 1) / (self.box * self.angpix)

    @property
    def spectral_index(self) -> np.ndarray:
        return np.arange(len(self.fsc))


def write_model(path: str | os.PathLike, m: RefineModel) -> None:
    """Write ``model.star`` atomically (blocks model_general, model_classes, model_class_1, model_groups,
    model_optics_group_1)."""
    if m.ssnr is None or m.sigma2 is None or m.resolution_per_a is None:
        raise ValueError("write_model needs the model's ssnr and sigma2 spectra (a model read without them "
                         "cannot be written back)")
    n = m.box // 2 + 1
    idx = np.arange(n)
    res_a = np.where(idx > 0, m.box * m.angpix / np.maximum(idx, 1), 999.0)
    general = {
        L.REFERENCE_DIMENSIONALITY: 3, L.DATA_DIMENSIONALITY: 2, L.ORIGINAL_IMAGE_SIZE: m.box,
        L.CURRENT_RESOLUTION: m.current_resolution_a, L.CURRENT_IMAGE_SIZE: m.current_size,
        L.PADDING_FACTOR: m.pad, L.IS_HELIX: 0, L.FOURIER_SPACE_INTERPOLATOR: 1,
        L.MIN_RADIUS_NN_INTERPOLATION: 10, L.PIXEL_SIZE: m.angpix, L.NR_CLASSES: 1, L.NR_BODIES: 1,
        L.NR_GROUPS: len(m.group_names), L.NR_OPTICS_GROUPS: 1, L.TAU2_FUDGE_FACTOR: m.tau2_fudge,
        L.NORM_CORRECTION_AVERAGE: m.avg_norm, L.SIGMA_OFFSETS_ANGST: m.sigma_offset_a,
        L.ORIENTATIONAL_PRIOR_MODE: int(m.local),
        L.SIGMA_PRIOR_ROT_ANGLE: m.local_sigma_deg, L.SIGMA_PRIOR_TILT_ANGLE: m.local_sigma_deg,
        L.SIGMA_PRIOR_PSI_ANGLE: m.local_sigma_deg, L.LOG_LIKELIHOOD: m.loglik,
        L.AVERAGE_PMAX: m.ave_pmax,
        L.HEALPIX_ORDER: m.healpix_order, L.OFFSET_RANGE: m.offset_range_px, L.OFFSET_STEP: m.offset_step_px,
    }
    classes = pd.DataFrame({L.REFERENCE_IMAGE: [m.reference_image], L.CLASS_DISTRIBUTION: [1.0],
                            L.ACCURACY_ROTATIONS: [m.acc_rot_deg],
                            L.ACCURACY_TRANSLATIONS_ANGST: [m.acc_trans_a],
                            L.ESTIMATED_RESOLUTION: [m.current_resolution_a],
                            L.OVERALL_FOURIER_COMPLETENESS: [1.0]})
    class1 = pd.DataFrame({L.SPECTRAL_INDEX: idx, L.RESOLUTION: m.resolution_per_a[:n], L.ANGSTROM_RESOLUTION: res_a,
                           L.SSNR_MAP: m.ssnr[:n], L.GOLD_STANDARD_FSC: m.fsc[:n],
                           L.FOURIER_COMPLETENESS: np.ones(n)})
    groups = pd.DataFrame({L.GROUP_NUMBER: np.arange(1, len(m.group_names) + 1), L.GROUP_NAME: m.group_names,
                           L.GROUP_NR_PARTICLES: np.asarray(m.group_counts).astype(np.int64),
                           L.GROUP_SCALE_CORRECTION: m.group_scales})
    optics = pd.DataFrame({L.SPECTRAL_INDEX: idx, L.RESOLUTION: m.resolution_per_a[:n], L.SIGMA2_NOISE: m.sigma2[:n]})
    write_star(path, {"model_general": general, "model_classes": classes, "model_class_1": class1,
                      "model_groups": groups, "model_optics_group_1": optics})


def read_model(path: str | os.PathLike, class_number: int = 1) -> RefineModel:
    """Read a ``model.star`` (ours or RELION's): class ``class_number``'s FSC table is required
    (rlnSpectralIndex, rlnResolution, rlnGoldStandardFsc), everything else is taken where present."""
    path = Path(path)
    blocks = read_star(path)
    block = f"model_class_{class_number}"
    if "model_general" not in blocks or block not in blocks:
        raise StarError(f"model STAR file {path} lacks data_model_general or data_{block}")
    g = _general(blocks, "model_general")
    t = blocks[block]
    _column(t, L.SPECTRAL_INDEX, path, block)
    fsc = _column(t, L.GOLD_STANDARD_FSC, path, block).astype(np.float64)
    resolution = _column(t, L.RESOLUTION, path, block).astype(np.float64)
    box = int(g.get(L.ORIGINAL_IMAGE_SIZE, 2 * (len(fsc) - 1)))
    angpix = float(g.get(L.PIXEL_SIZE, np.nan))
    m = RefineModel(box, angpix, float(g.get(L.CURRENT_RESOLUTION, np.nan)), int(g.get(L.CURRENT_IMAGE_SIZE, box)),
                    fsc, resolution_per_a=resolution)
    if L.SSNR_MAP in t.columns:
        m.ssnr = t[L.SSNR_MAP].to_numpy(np.float64)
    optics = blocks.get("model_optics_group_1")
    if optics is not None and L.SIGMA2_NOISE in optics.columns:
        m.sigma2 = optics[L.SIGMA2_NOISE].to_numpy(np.float64)
    for name, label, kind in (("pad", L.PADDING_FACTOR, int), ("tau2_fudge", L.TAU2_FUDGE_FACTOR, float),
                              ("avg_norm", L.NORM_CORRECTION_AVERAGE, float),
                              ("sigma_offset_a", L.SIGMA_OFFSETS_ANGST, float),
                              ("local", L.ORIENTATIONAL_PRIOR_MODE, bool),
                              ("local_sigma_deg", L.SIGMA_PRIOR_ROT_ANGLE, float),
                              ("loglik", L.LOG_LIKELIHOOD, float), ("ave_pmax", L.AVERAGE_PMAX, float),
                              ("healpix_order", L.HEALPIX_ORDER, int), ("offset_range_px", L.OFFSET_RANGE, float),
                              ("offset_step_px", L.OFFSET_STEP, float)):
        if label in g:
            setattr(m, name, kind(g[label]))
    classes = blocks.get("model_classes")
    if classes is not None and len(classes) >= class_number:
        row = classes.iloc[class_number - 1]
        m.reference_image = str(row.get(L.REFERENCE_IMAGE, ""))
        m.acc_rot_deg = float(row.get(L.ACCURACY_ROTATIONS, m.acc_rot_deg))
        m.acc_trans_a = float(row.get(L.ACCURACY_TRANSLATIONS_ANGST, m.acc_trans_a))
    groups = blocks.get("model_groups")
    if groups is not None and {L.GROUP_NAME, L.GROUP_NR_PARTICLES, L.GROUP_SCALE_CORRECTION} <= set(groups.columns):
        m.group_names = [str(v) for v in groups[L.GROUP_NAME]]
        m.group_counts = groups[L.GROUP_NR_PARTICLES].to_numpy(np.int64)
        m.group_scales = groups[L.GROUP_SCALE_CORRECTION].to_numpy(np.float64)
    return m


# --------------------------------------------------------------------------------- sampling.star
@dataclass
class RefineSampling:
    """``<o>_sampling.star``: the angular and offset sampling of an iteration and its directions (the
    asymmetric unit for global searches, the whole sphere for local ones)."""

    healpix_order: int
    psi_step_deg: float
    offset_range_px: float
    offset_step_px: float
    perturb_instance: float
    perturb_factor: float
    symmetry: str
    local: bool
    local_sigma_deg: float
    directions_deg: np.ndarray  # (n, 2): rot, tilt


def write_sampling(path: str | os.PathLike, s: RefineSampling) -> None:
    """Write ``sampling.star`` atomically (RELION ``HealpixSampling::write`` layout)."""
    general = {
        L.IS_3D_SAMPLING: 1, L.IS_3D_TRANSLATIONAL_SAMPLING: 0, L.HEALPIX_ORDER: s.healpix_order,
        L.HEALPIX_ORDER_ORIGINAL: s.healpix_order, L.TILT_ANGLE_LIMIT: -91.0,
        L.PSI_STEP: s.psi_step_deg, L.PSI_STEP_ORIGINAL: s.psi_step_deg,
        L.OFFSET_RANGE: s.offset_range_px, L.OFFSET_STEP: s.offset_step_px,
        L.OFFSET_RANGE_ORIGINAL: s.offset_range_px, L.OFFSET_STEP_ORIGINAL: s.offset_step_px,
        L.HELICAL_OFFSET_STEP: -1.0, L.SAMPLING_PERTURB_INSTANCE: s.perturb_instance,
        L.SAMPLING_PERTURB_FACTOR: s.perturb_factor, L.SYMMETRY_GROUP: s.symmetry.upper(),
        L.IS_FLIP: 0, L.ORIENTATIONAL_PRIOR_MODE: int(s.local),
        L.SIGMA_PRIOR_ROT_ANGLE: s.local_sigma_deg, L.SIGMA_PRIOR_TILT_ANGLE: s.local_sigma_deg,
        L.SIGMA_PRIOR_PSI_ANGLE: s.local_sigma_deg,
    }
    dirs = pd.DataFrame({L.ANGLE_ROT: s.directions_deg[:, 0], L.ANGLE_TILT: s.directions_deg[:, 1]})
    write_star(path, {"sampling_general": general, "sampling_directions": dirs})


def read_sampling(path: str | os.PathLike) -> RefineSampling:
    """Read a ``sampling.star`` written by :func:`write_sampling` (or RELION)."""
    path = Path(path)
    blocks = read_star(path)
    if "sampling_general" not in blocks or "sampling_directions" not in blocks:
        raise StarError(f"sampling STAR file {path} lacks data_sampling_general or data_sampling_directions")
    g = _general(blocks, "sampling_general")
    d = blocks["sampling_directions"]
    try:
        return RefineSampling(int(g[L.HEALPIX_ORDER]), float(g[L.PSI_STEP]), float(g[L.OFFSET_RANGE]),
                              float(g[L.OFFSET_STEP]), float(g.get(L.SAMPLING_PERTURB_INSTANCE, 0.0)),
                              float(g.get(L.SAMPLING_PERTURB_FACTOR, 0.5)), str(g.get(L.SYMMETRY_GROUP, "C1")),
                              bool(g.get(L.ORIENTATIONAL_PRIOR_MODE, 0)), float(g.get(L.SIGMA_PRIOR_ROT_ANGLE, 0.0)),
                              np.column_stack([_column(d, L.ANGLE_ROT, path, "sampling_directions"),
                                               _column(d, L.ANGLE_TILT, path, "sampling_directions")]
                                              ).astype(np.float64))
    except KeyError as exc:
        raise StarError(f"sampling STAR file {path}: data_sampling_general lacks {exc}") from exc


# -------------------------------------------------------------------------- optimiser.star + .npz
OPTIMISER_VERSION = 3


@dataclass
class OptimiserState:
    """The state ``--continue`` restarts from, after a complete iteration.

    ``options``: the run's options (``vars(args)``: ``o``, ``iter``, ``low_resol_join_halves``,
    ``particle_diameter``, ``ctf``, ``auto_local_healpix_order``, ``flatten_solvent``, ``solvent_mask``,
    ``solvent_mask2`` are also shown in the STAR file);
    ``schedule``: the auto-sampling state as a dict (``AutoSampling`` fields); per particle of the
    input table ``mats (n, 3, 3)``, ``offsets (n, 2)`` px, ``norm (n,)``; per group ``scale``; per
    shell ``sigma2`` and ``ssnr``; ``refs``: the two half references (read back from the MRC files the
    STAR file names; not written by :func:`write_optimiser`, which names ``<it_root>_half{1,2}_class001.mrc``).
    """

    options: dict
    seed: int
    iteration: int
    final: bool
    current_size: int
    resolution_a: float
    acc_rot: float
    acc_trans_px: float
    sigma_off: float
    avg_norm: float
    schedule: dict
    mats: np.ndarray
    offsets: np.ndarray
    sigma2: np.ndarray
    norm: np.ndarray
    scale: np.ndarray
    ssnr: np.ndarray
    refs: dict | None = None


def write_optimiser(it_root: str, s: OptimiserState, angpix: float) -> None:
    """``<it_root>_optimiser.npz`` (exact arrays, options, schedule, state; written first) and
    ``<it_root>_optimiser.star`` (readable state; written last, so that it marks a complete iteration),
    both atomically."""
    npz = f"{it_root}_optimiser.npz"
    tmp = str(Path(npz).with_name(f".{Path(npz).name}.tmp{os.getpid()}.npz"))  # hidden temporary
    state = {"seed": s.seed, "iteration": s.iteration, "final": s.final, "current_size": s.current_size,
             "resolution_a": s.resolution_a, "acc_rot": s.acc_rot, "acc_trans_px": s.acc_trans_px,
             "sigma_off": s.sigma_off, "avg_norm": s.avg_norm}  # exact (json floats round-trip)
    np.savez(tmp, mats=s.mats, offsets=s.offsets, sigma2=s.sigma2, norm=s.norm, scale=s.scale, ssnr=s.ssnr,
             options=np.array(json.dumps(s.options, default=str)), schedule=np.array(json.dumps(s.schedule)),
             state=np.array(json.dumps(state)))
    os.replace(tmp, npz)
    o, sched = s.options, s.schedule
    general = {
        L.OUTPUT_ROOT_NAME: str(o["o"]), L.MODEL_STAR_FILE: f"{it_root}_model.star",
        L.EXPERIMENTAL_DATA_STAR_FILE: f"{it_root}_data.star", L.CURRENT_ITERATION: s.iteration,
        L.NUMBER_OF_ITERATIONS: o["iter"], L.RANDOM_SEED: s.seed, L.DO_AUTO_REFINE: 1,
        L.DO_SPLIT_RANDOM_HALVES: 1, L.JOIN_HALVES_UNTIL_THIS_RESOLUTION: o["low_resol_join_halves"],
        L.PARTICLE_DIAMETER: o["particle_diameter"], L.DO_CORRECT_CTF: int(o["ctf"]),
        L.AUTO_LOCAL_SEARCHES_HEALPIX_ORDER: o["auto_local_healpix_order"],
        L.DO_SOLVENT_FLATTENING: int(bool(o.get("flatten_solvent"))),
        L.SOLVENT_MASK_NAME: str(o.get("solvent_mask") or "None"),
        L.SOLVENT_MASK2_NAME: str(o.get("solvent_mask2") or "None"),
        L.NUMBER_OF_ITER_WITHOUT_RESOLUTION_GAIN: sched["nr_iter_wo_resol_gain"],
        L.BEST_RESOLUTION_THUS_FAR: sched["best_resolution_inv_a"],
        L.NUMBER_OF_ITER_WITHOUT_CHANGING_ASSIGNMENTS: sched["nr_iter_wo_large_changes"],
        L.SMALLEST_CHANGES_ORIENTATIONS: sched["smallest_angle_change"],
        L.SMALLEST_CHANGES_OFFSETS: sched["smallest_offset_change"],
        L.HAS_CONVERGED: int(s.final), L.CURRENT_RESOLUTION: s.resolution_a, L.CURRENT_IMAGE_SIZE: s.current_size,
        L.ACCURACY_ROTATIONS: s.acc_rot, L.ACCURACY_TRANSLATIONS_ANGST: s.acc_trans_px * angpix,
        L.SIGMA_OFFSETS_ANGST: s.sigma_off,
        L.POLISH_OPTIMISER_ARRAYS: npz, L.POLISH_OPTIMISER_VERSION: OPTIMISER_VERSION,
        L.POLISH_REFERENCE_HALF1: f"{it_root}_half1_class001.mrc",
        L.POLISH_REFERENCE_HALF2: f"{it_root}_half2_class001.mrc",
    }
    write_star(f"{it_root}_optimiser.star", {"optimiser_general": general})


def read_optimiser(path: str | os.PathLike) -> OptimiserState:
    """The state of an ``<o>_itNNN_optimiser.star``, with its arrays and half references (StarError
    naming the file when it, or a file it names, is missing, unreadable or of another version)."""
    p = Path(path)
    if not p.exists():
        raise StarError(f"optimiser file {p} does not exist")
    try:
        g = read_star(p)["optimiser_general"].iloc[0]
        version = int(g[L.POLISH_OPTIMISER_VERSION])
        if version == OPTIMISER_VERSION:
            with np.load(Path(str(g[L.POLISH_OPTIMISER_ARRAYS]))) as z:
                arrays = {k: z[k] for k in z.files}
            refs = {h: read_mrc(str(g[label]))[0].astype(np.float64)
                    for h, label in ((1, L.POLISH_REFERENCE_HALF1), (2, L.POLISH_REFERENCE_HALF2))}
    except (KeyError, StarError, OSError, ValueError) as exc:
        raise StarError(f"optimiser file {p} or the files it names cannot be read ({exc})") from exc
    if version != OPTIMISER_VERSION:
        raise StarError(f"optimiser file {p} was written by another version")
    st = json.loads(str(arrays["state"]))
    return OptimiserState(json.loads(str(arrays["options"])), int(st["seed"]), int(st["iteration"]),
                          bool(st["final"]), int(st["current_size"]), float(st["resolution_a"]),
                          float(st["acc_rot"]), float(st["acc_trans_px"]), float(st["sigma_off"]),
                          float(st["avg_norm"]), json.loads(str(arrays["schedule"])), arrays["mats"],
                          arrays["offsets"], arrays["sigma2"], arrays["norm"], arrays["scale"], arrays["ssnr"], refs)


# ------------------------------------------------------------------------------------- data.star
@dataclass
class RefinedParticles:
    """Per particle of the input table (its row order): the refined pose and the iteration's statistics."""

    angles_deg: np.ndarray  # (n, 3) rot, tilt, psi
    offsets_px: np.ndarray  # (n, 2) x, y
    pmax: np.ndarray  # rlnMaxValueProbDistribution
    loglik: np.ndarray  # rlnLogLikeliContribution
    n_significant: np.ndarray  # rlnNrOfSignificantSamples
    half: np.ndarray  # rlnRandomSubset
    norm: np.ndarray  # rlnNormCorrection
    group: np.ndarray  # group index from 0 (rlnGroupNumber - 1, written only where the input has none)


def refined_particles(table: ParticleTable, r: RefinedParticles, angpix: float) -> ParticleTable:
    """``data.star`` of an iteration: the input particles, every input column kept, with the refined
    angles and offsets (Å), class 1, the corrections and the statistics."""
    out = table.subset(np.arange(len(table)))
    parts = out.particles.copy()
    cols = {L.ANGLE_ROT: r.angles_deg[:, 0], L.ANGLE_TILT: r.angles_deg[:, 1], L.ANGLE_PSI: r.angles_deg[:, 2],
            L.ORIGIN_X_ANGST: r.offsets_px[:, 0] * angpix, L.ORIGIN_Y_ANGST: r.offsets_px[:, 1] * angpix,
            L.MAX_VALUE_PROB_DISTRIBUTION: r.pmax, L.LOG_LIKELI_CONTRIBUTION: r.loglik}
    for c, v in cols.items():
        parts[c] = v
    parts[L.CLASS_NUMBER] = 1
    parts[L.NORM_CORRECTION] = r.norm
    if L.GROUP_NUMBER not in parts.columns:
        parts[L.GROUP_NUMBER] = r.group + 1
    parts[L.NR_OF_SIGNIFICANT_SAMPLES] = r.n_significant
    parts[L.RANDOM_SUBSET] = r.half
    out.particles = parts
    return out


# ------------------------------------------------------------------- the refine's input particles
def particle_groups(table: ParticleTable) -> tuple[np.ndarray, list[str]]:
    """Group index of every particle and the group names (RELION: rlnGroupNumber, else rlnGroupName,
    else one group per micrograph, else a single group)."""
    parts = table.particles
    if L.GROUP_NUMBER in parts.columns:  # numeric order, not string order
        nums, idx = np.unique(parts[L.GROUP_NUMBER].to_numpy(np.int64), return_inverse=True)
        return idx.astype(np.int64), [f"group_{n}" for n in nums]
    for col in (L.GROUP_NAME, L.MICROGRAPH_NAME):
        if col in parts.columns:
            names, idx = np.unique(parts[col].astype(str).to_numpy(), return_inverse=True)
            return idx.astype(np.int64), [str(n) for n in names]
    return np.zeros(len(parts), np.int64), ["group_1"]


def norm_corrections(table: ParticleTable) -> np.ndarray:
    """rlnNormCorrection of every particle (1 where the column is absent); StarError unless positive."""
    parts = table.particles
    if L.NORM_CORRECTION not in parts.columns:
        return np.ones(len(parts))
    norm = parts[L.NORM_CORRECTION].to_numpy(np.float64)
    if not (np.isfinite(norm).all() and (norm > 0).all()):
        raise StarError(f"particle STAR file {table.path}: {L.NORM_CORRECTION} must be positive")
    return norm


def read_particle_images(table: ParticleTable, rows: np.ndarray, box: int,
                         stack_paths: dict | None = None) -> np.ndarray:
    """The images of ``rows`` of a particle table, ``(n, box, box)`` float32, read stack by stack
    (StarError naming the STAR file for a missing stack or NaN/Inf values); ``stack_paths`` maps stack names
    as written in the table to the files to read instead (e.g. copies on a scratch disk)."""
    locs = table.image_locations()
    images = np.empty((len(rows), box, box), np.float32)
    by_stack: dict[str, list[int]] = {}
    for j, r in enumerate(rows):
        by_stack.setdefault(locs[r][1], []).append(j)
    for stack, js in by_stack.items():
        spath = (stack_paths or {}).get(stack) or table.resolve(stack)
        if not Path(spath).exists():
            raise StarError(f"particle STAR file {table.path}: image stack {stack} does not exist")
        images[js] = read_stack_images(spath, [locs[rows[j]][0] for j in js])
        bad = ~np.isfinite(images[js]).all(axis=(1, 2))
        if bad.any():
            first = int(locs[rows[js[int(np.argmax(bad))]]][0])
            raise StarError(f"particle STAR file {table.path}: image stack {spath} contains NaN or Inf values "
                            f"(image {first}, {int(bad.sum())} image(s) in this half set)")
    return images


# ------------------------------------------------------------------- the arguments a run started with
def write_run_arguments(path: str | os.PathLike, tokens: list[str]) -> None:
    """``tokens`` (a program's command-line arguments) as a JSON list, atomically."""
    atomic_write_text(path, json.dumps([str(t) for t in tokens]) + "\n")


def read_run_arguments(path: str | os.PathLike) -> list[str] | None:
    """The tokens :func:`write_run_arguments` wrote, or None when ``path`` does not exist (StarError naming
    the file when it is not such a list)."""
    p = Path(path)
    if not p.exists():
        return None
    try:
        tokens = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise StarError(f"arguments file {p} cannot be read ({exc})") from exc
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise StarError(f"arguments file {p} does not hold a list of arguments")
    return tokens
