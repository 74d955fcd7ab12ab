"""Simulate a small RELION-shaped project with known ground truth (movies, particles, half maps, mask).

Builds a D2 pseudo-protein of Gaussian "atoms" (or reads atoms from --model, e.g. a PDB/mmCIF file),
projects it exactly at random poses, applies per-micrograph CTF, planted per-frame B-factors and planted
beam-induced motion (smooth global drift + per-particle motion with RELION's prior statistics, planted
s_vel/s_div/s_acc), pastes the particles into movie frames with Poisson noise and NEGATED contrast (dark
particles, like raw movies), and writes what RELION's steps up to the polishing step leave behind:

  Movies/<name>.mrcs                          raw movies (counts; float32 or --float16)
  MotionCorr/job002/Movies/<name>.star        per-movie metadata (data_general, data_global_shift,
                                              data_local_motion_model with zero coefficients)
  MotionCorr/job002/Movies/<name>.mrc         global-shift-corrected frame sums
  MotionCorr/job002/corrected_micrographs.star
  Extract/job018/Movies/<name>.mrcs           particles from the corrected sums (white protein,
                                              background mean 0 / std 1, like relion_preprocess)
  Refine3D/job021/run_data.star               true poses, CTF, half sets (rlnOriginX/YAngst = 0)
  Refine3D/job021/run_half{1,2}_class001_unfil.mrc, run_class001.mrc   reconstructions with true poses
                                              (tutorial preset: the map the particles see + noise
                                              for a target FSC, see maps.noisy_half_maps)
  MaskCreate/job022/mask.mrc                  soft mask around the true map
  PostProcess/job023/postprocess.star         FSC of the half maps (masked, phase-randomisation corrected)
  mtf_simulated.star                          a smooth MTF (applied to the frames only with --apply_mtf)
  ground_truth/                               true_map.mrc, truth.npz, truth.star (per-frame B-factors,
                                              planted sigmas, preset), <name>_tracks.star (true tracks in
                                              RELION's tracks format: Å, absolute, incl. global drift)

Movie pixel size = particle pixel size (no binning / Fourier cropping) unless --super_resolution.  Paths in
the STAR files are relative to --o (the project directory).  The same --seed gives identical files.

Detector options (issue 20; core.simulate.detector):
  --movie_format mrc|mrc4|tiff|eer   float MRC, 4-bit MRC (mode 101), 8-bit LZW TIFF, or EER events written by
                                     our encoder (io.eer) with rlnEERUpsampling/rlnEERGrouping in the STAR;
                                     TIFF, 4-bit and EER hold the same Poisson counts as the MRC of the same seed
  --eer_upsampling 1|2, --eer_grouping G   EER: the simulation grid is the detector (1) or twice it (2);
                                     G raw frames per fraction (default: no pixel sees more events than G)
  --gain                             detector sensitivity s (smooth +-20 % times 5 % per pixel); counts drawn
                                     with mean x s; Movies/gain.mrc = 1/s (EER: Movies/gain.gain, EPU-style)
  --hot_pixels N                     N hot pixels (half near particles) and a dead column; half listed in
                                     data_hot_pixels, the rest and the column in Movies/<name>_defects.txt
  --super_resolution                 movies at half the pixel size, rlnMicrographBinning 2
  --optics_groups K                  K optics groups of different pixel sizes and boxes (same physical extent);
                                     movie m in group m % K; the half maps at group 1's size

Examples:
  polishplugin simulate --preset tiny --o sim_tiny
  polishplugin simulate --preset demo --o sim_demo --seed 7 --float16
  polishplugin simulate --preset tiny --o sim_eer --movie_format eer --eer_upsampling 2 --gain --hot_pixels 20
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from polishplugin.core.simulate import damage, maps
from polishplugin.core.simulate.project import (PRESETS, MicrographSimulation, MicrographTruth, Phantom,
                                                contrast_scale, ground_truth_arrays, half_map_fscs, movie_name,
                                                optics_group_params, previous_refine_half_maps, random_subsets,
                                                simulation_params)
from polishplugin.io import labels as L
from polishplugin.core.simulate.detector import (DetectorModel, eer_grouping_for, fourier_resize_rect, make_detector,
                                                 split_events)
from polishplugin.io.detector import write_defect_file, write_gain
from polishplugin.io.eer import write_eer
from polishplugin.io.movies import (MicrographTable, MovieMetadata, MovieWriter, write_corrected_micrographs,
                                    write_movie_metadata)
from polishplugin.io.mrc import write_mrc
from polishplugin.io.mtf import Mtf, write_mtf
from polishplugin.io.particles import ParticleTable, write_particles
from polishplugin.io.polish import FrameBfactors
from polishplugin.io.postprocess import PostprocessResult, fsc_table, write_postprocess
from polishplugin.io.simulation import ModelError, read_model_atoms, truth_paths, write_truth, write_truth_star
from polishplugin.io.star import join_image_name
from polishplugin.programs._cli import ProgramError
from polishplugin.io.polish import write_tracks

__all__ = ["PRESETS", "simulate_project", "add_args", "main"]

log = logging.getLogger(__name__)

JOB_MOTION = "MotionCorr/job002"
JOB_EXTRACT = "Extract/job018"
JOB_REFINE = "Refine3D/job021"
JOB_MASK = "MaskCreate/job022"
JOB_POST = "PostProcess/job023"


# --------------------------------------------------------------------------------------------------
# tables

_MOVIE_SUFFIX = {"mrc": ".mrcs", "mrc4": ".mrcs", "tiff": ".tif", "eer": ".eer"}


def _project_paths(out: Path, n_movies: int, movie_format: str = "mrc") -> dict:
    names = [movie_name(m) for m in range(n_movies)]
    suffix = _MOVIE_SUFFIX[movie_format]
    gt = truth_paths(out)
    return {
        "project_dir": out, "movies_dir": out / "Movies",
        "corrected_micrographs": out / JOB_MOTION / "corrected_micrographs.star",
        "particles": out / JOB_REFINE / "run_data.star", "half1": out / JOB_REFINE / "run_half1_class001_unfil.mrc",
        "half2": out / JOB_REFINE / "run_half2_class001_unfil.mrc", "map": out / JOB_REFINE / "run_class001.mrc",
        "mask": out / JOB_MASK / "mask.mrc", "postprocess": out / JOB_POST / "postprocess.star",
        "mtf": out / "mtf_simulated.star", **gt,
        "movies": [out / "Movies" / f"{n}{suffix}" for n in names],
        "gain": out / "Movies" / ("gain.gain" if movie_format == "eer" else "gain.mrc"),
        "defect_files": [out / "Movies" / f"{n}_defects.txt" for n in names],
        "movie_stars": [out / JOB_MOTION / "Movies" / f"{n}.star" for n in names],
        "true_tracks": [gt["ground_truth_dir"] / f"{n}_tracks.star" for n in names],
    }


def movie_pixel_size(p: dict) -> float:
    """Pixel size (Å) of the movie frames: half the particles' with --super_resolution."""
    return float(p["angpix"]) / (2.0 if p["super_resolution"] else 1.0)


def _optics(p: dict, micrographs: bool) -> pd.DataFrame:
    """The optics table: one row per optics group (--optics_groups)."""
    return pd.concat([_optics_row(optics_group_params(p, g), micrographs) for g in range(p["optics_groups"])],
                     ignore_index=True)


def _optics_row(p: dict, micrographs: bool) -> pd.DataFrame:
    g = int(p["optics_group"])
    row = {L.OPTICS_GROUP_NAME: [f"opticsGroup{g}"], L.OPTICS_GROUP: [g],
           **({L.MTF_FILE_NAME: ["mtf_simulated.star"]} if p["apply_mtf"] else {}),
           L.MICROGRAPH_ORIGINAL_PIXEL_SIZE: [movie_pixel_size(p)], L.VOLTAGE: [float(p["voltage"])],
           L.SPHERICAL_ABERRATION: [float(p["cs"])], L.AMPLITUDE_CONTRAST: [float(p["q0"])]}
    if micrographs:
        row[L.MICROGRAPH_PIXEL_SIZE] = [float(p["angpix"])]
    else:
        row.update({L.IMAGE_PIXEL_SIZE: [float(p["angpix"])], L.IMAGE_SIZE: [int(p["box"])],
                    L.IMAGE_DIMENSIONALITY: [2], L.CTF_DATA_ARE_CTF_PREMULTIPLIED: [0]})
    return pd.DataFrame(row)


def _particles(p: dict, truths: list[MicrographTruth], subset: np.ndarray) -> ParticleTable:
    """run_data.star: true coordinates, poses and CTF, half sets, no origin offsets."""
    rows = []
    for mi, t in enumerate(truths):
        c = t.ctf
        for i in range(len(t.pos)):
            rows.append({
                L.COORDINATE_X: float(t.pos[i, 0]), L.COORDINATE_Y: float(t.pos[i, 1]),
                L.IMAGE_NAME: join_image_name(i + 1, f"{JOB_EXTRACT}/Movies/{t.name}.mrcs", 6),
                L.MICROGRAPH_NAME: f"{JOB_MOTION}/Movies/{t.name}.mrc", L.OPTICS_GROUP: t.optics_group,
                L.DEFOCUS_U: c.defocus_u_a, L.DEFOCUS_V: c.defocus_v_a, L.DEFOCUS_ANGLE: c.defocus_angle_deg,
                L.CTF_BFACTOR: 0.0, L.CTF_SCALEFACTOR: 1.0, L.PHASE_SHIFT: 0.0, L.GROUP_NUMBER: mi + 1,
                L.ANGLE_ROT: float(t.angles[i, 0]), L.ANGLE_TILT: float(t.angles[i, 1]),
                L.ANGLE_PSI: float(t.angles[i, 2]), L.ORIGIN_X_ANGST: 0.0, L.ORIGIN_Y_ANGST: 0.0,
                L.CLASS_NUMBER: 1, L.NORM_CORRECTION: 1.0, L.RANDOM_SUBSET: int(subset[len(rows)]),
            })
    return ParticleTable(_optics(p, False), pd.DataFrame(rows))


def _micrographs(p: dict, truths: list[MicrographTruth]) -> MicrographTable:
    """corrected_micrographs.star (accumulated motion: the length of the global drift path)."""
    return MicrographTable(_optics(p, True), pd.DataFrame({
        L.MICROGRAPH_NAME: [f"{JOB_MOTION}/Movies/{t.name}.mrc" for t in truths],
        L.MICROGRAPH_METADATA: [f"{JOB_MOTION}/Movies/{t.name}.star" for t in truths],
        L.OPTICS_GROUP: [t.optics_group for t in truths],
        L.ACCUM_MOTION_TOTAL: [float(np.sum(np.linalg.norm(np.diff(t.drift_px, axis=0), axis=1)) * t.angpix)
                               for t in truths]}))


def _movie_metadata(p: dict, sim: MicrographSimulation, detector: DetectorModel | None = None,
                    grouping: int = 1) -> MovieMetadata:
    """The per-movie STAR: sizes and shifts in movie pixels; gain, defect file, hot pixels and EER rendering
    as motion correction records them."""
    up = detector.upsample if detector is not None else 1
    fmt = p["movie_format"]
    extra = {}
    if fmt == "eer":
        extra = {L.MICROGRAPH_EER_UPSAMPLING: int(p["eer_upsampling"]), L.MICROGRAPH_EER_GROUPING: int(grouping)}
    hot = None
    if detector is not None and p["hot_pixels"] > 0:  # the first half listed as hot pixels, the rest in the defect file
        listed = detector.hot_index[: len(detector.hot_index) // 2]
        hot = np.stack([listed % detector.movie_shape[1], listed // detector.movie_shape[1]], 1).astype(float)
    return MovieMetadata(
        width_px=int(p["movie_width"]) * up, height_px=int(p["movie_height"]) * up, n_frames=int(p["frames"]),
        movie_name=f"Movies/{sim.name}{_MOVIE_SUFFIX[fmt]}", global_shifts_px=sim.shifts_px * up,
        gain_name=f"Movies/{'gain.gain' if fmt == 'eer' else 'gain.mrc'}" if p["gain"] else None,
        defect_file=f"Movies/{sim.name}_defects.txt" if p["hot_pixels"] > 0 else None, binning=float(up),
        original_pixel_size_a=movie_pixel_size(p), dose_per_frame_e_per_a2=float(p["dose_per_frame"]),
        pre_exposure_e_per_a2=0.0, voltage_kv=float(p["voltage"]), start_frame=1, motion_model_version=1,
        local_coeffs=np.zeros(36), hot_pixels_px=hot, extra_general=extra)


# --------------------------------------------------------------------------------------------------
# the project

def _phantom(p: dict, rng: np.random.Generator) -> Phantom:
    """The pseudo-protein, or the atoms of ``--model``."""
    if not p.get("model"):
        return Phantom.pseudo_protein(p, rng)
    try:
        xyz, w = read_model_atoms(p["model"])
    except ModelError as exc:
        raise ProgramError(str(exc)) from None
    box, angpix = p["box"], p["angpix"]
    extent = np.abs(xyz).max()
    if extent > 0.5 * box * angpix:
        log.warning("model extends %.0f Å from its centre; the %d px box at %.3f Å reaches %.0f Å",
                    extent, box, angpix, 0.5 * box * angpix)
    return Phantom(xyz, w, f"model {p['model']}", box, angpix, p["atom_sigma_a"], p["projection"])


def _detector(p: dict, sim: MicrographSimulation, m: int, sensitivity: np.ndarray | None) -> DetectorModel | None:
    """The detector of movie ``m`` (None for the plain simulation: float MRC, no gain, no defects)."""
    if p["movie_format"] == "mrc" and not (p["gain"] or p["hot_pixels"] or p["super_resolution"]):
        return None
    up = 2 if p["super_resolution"] else 1
    shape = (int(p["movie_height"]), int(p["movie_width"]))
    eer = p["movie_format"] == "eer"
    counts_px = p["dose_per_frame"] * movie_pixel_size(p) ** 2
    hot_value = {"mrc4": 15.0, "tiff": 255.0}.get(p["movie_format"], max(50.0, 30.0 * counts_px))
    if eer:
        hot_value = float(eer_grouping(p))
    det = make_detector(np.random.default_rng([p["seed"], 3000 + m]), shape, up, False, int(p["hot_pixels"]),
                        hot_value, sim.pos, 0.3 * p["box"], dead_column=p["hot_pixels"] > 0)
    det.sensitivity = sensitivity
    return det


def eer_grouping(p: dict) -> int:
    """Raw EER frames per fraction: --eer_grouping, else enough that pixels rarely see two events."""
    per_detector_px = p["dose_per_frame"] * p["angpix"] ** 2 * p["eer_upsampling"] ** 2
    return int(p["eer_grouping"]) if p["eer_grouping"] > 0 else eer_grouping_for(per_detector_px)


def _write_movie(p: dict, sim: MicrographSimulation, path: Path) -> None:
    """The movie file in --movie_format, frame by frame (EER: fractions split into raw frames)."""
    shape = (int(p["movie_height"]), int(p["movie_width"]))
    fmt = p["movie_format"]
    if fmt == "eer":
        up, group = int(p["eer_upsampling"]), eer_grouping(p)
        rng = np.random.default_rng([p["seed"], 4000, int(sim.name.split("_")[1])])
        raw = (event for counts in sim.frames() for event in split_events(rng, counts, up, group))
        write_eer(path, raw, (shape[0] // up, shape[1] // up))
        return
    up = sim.detector.upsample if sim.detector is not None else 1
    with MovieWriter(path, fmt, p["frames"], (shape[0] * up, shape[1] * up), movie_pixel_size(p),
                     float16=p["float16"]) as writer:
        for f, counts in enumerate(sim.frames()):
            writer[f] = counts


def _write_defects(p: dict, det: DetectorModel, path: Path) -> None:
    """The defect file: 1 x 1 rectangles over the second half of the hot pixels, and the dead column."""
    w = det.movie_shape[1]
    rest = det.hot_index[len(det.hot_index) // 2:]
    rects = [[i % w, i // w, 1, 1] for i in rest]
    if det.dead_column >= 0:
        rects.append([det.dead_column, 0, 1, det.movie_shape[0]])
    write_defect_file(path, np.array(rects, np.int64).reshape(-1, 4))


def _simulate_movie(p: dict, ph: Phantom, m: int, out: Path, bfac: np.ndarray, scales: np.ndarray,
                    contrast: float, sensitivity: np.ndarray | None = None) -> MicrographTruth:
    """Simulate and write one movie (frame by frame), its corrected sum, per-movie STAR, extracted
    particles and true tracks; returns the truth."""
    sim = MicrographSimulation(p, ph, m, bfac, scales, contrast)
    sim.detector = _detector(p, sim, m, sensitivity)
    _write_movie(p, sim, out / "Movies" / f"{sim.name}{_MOVIE_SUFFIX[p['movie_format']]}")
    if sim.detector is not None and p["hot_pixels"] > 0:
        _write_defects(p, sim.detector, out / "Movies" / f"{sim.name}_defects.txt")
    corrected = sim.corrected_sum()
    write_mrc(out / JOB_MOTION / "Movies" / f"{sim.name}.mrc", corrected, p["angpix"])
    grouping = eer_grouping(p) if p["movie_format"] == "eer" else 1
    write_movie_metadata(out / JOB_MOTION / "Movies" / f"{sim.name}.star",
                         _movie_metadata(p, sim, sim.detector, grouping))
    parts = sim.particles(corrected)
    write_mrc(out / JOB_EXTRACT / "Movies" / f"{sim.name}.mrcs", parts, p["angpix"], float16=False)
    truth = sim.truth(parts.astype(np.float32) if p["half_maps"] == "reconstruct" else None)
    write_tracks(out / "ground_truth" / f"{sim.name}_tracks.star", truth.tracks_a, 1.0)
    return truth


def _on_reference_grid(truths: list[MicrographTruth], box: int) -> list[MicrographTruth]:
    """The truths with their extracted particles resampled to the reference box (optics groups of another box
    cover the same extent: a Fourier crop), for the previous refine's reconstruction."""
    out = []
    for t in truths:
        if t.particles is not None and t.particles.shape[-1] != box:
            t = dataclasses.replace(t, particles=np.stack([fourier_resize_rect(im, (box, box)) for im in t.particles]))
        out.append(t)
    return out


def _sensitivity(p: dict, gain_path: Path) -> np.ndarray | None:
    """With --gain: the detector's sensitivity (movie grid, one for all movies), and its gain reference
    written (MRC 1/sensitivity; EER: an EPU-style .gain at the detector size)."""
    if not p["gain"]:
        return None
    up = 2 if p["super_resolution"] else 1
    shape = (int(p["movie_height"]), int(p["movie_width"]))
    if p["movie_format"] == "eer":  # one sensitivity per detector pixel, rendered 2x2 with upsampling 2
        e = int(p["eer_upsampling"])
        det = make_detector(np.random.default_rng([p["seed"], 2999]), (shape[0] // e, shape[1] // e), 1, True)
        write_gain(gain_path, det.gain())
        return np.repeat(np.repeat(det.sensitivity, e, 0), e, 1)
    det = make_detector(np.random.default_rng([p["seed"], 2999]), shape, up, True)
    write_gain(gain_path, det.gain())
    return det.sensitivity


def simulate_project(out_dir, preset: str = "tiny", seed: int = 1, **overrides) -> dict:
    """Simulate a project under ``out_dir``; returns the paths (see the module docstring) and the
    parameters.  Deterministic for a ``seed``.  ``overrides`` replace preset values (``frames=8`` ...)."""
    t0 = time.time()
    try:
        p = simulation_params(preset, seed, overrides)
    except ValueError as exc:
        raise ProgramError(str(exc)) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = _project_paths(out, p["n_movies"], p["movie_format"])
    rng = np.random.default_rng(p["seed"])
    box, angpix, nf = p["box"], p["angpix"], p["frames"]
    ph = _phantom(p, rng)
    contrast = contrast_scale(ph, p["contrast"])
    groups = [optics_group_params(p, g) for g in range(p["optics_groups"])]
    phantoms = [ph] + [Phantom(ph.xyz, ph.w, ph.source, q["box"], q["angpix"], ph.sigma, p["projection"])
                       for q in groups[1:]]
    contrasts = [contrast] + [contrast_scale(q, p["contrast"]) for q in phantoms[1:]]
    bfac, scales = damage.planted_bfactors(nf, p["dose_per_frame"], p["bfactor_slope"], p["scale_decay"])
    write_mrc(paths["true_map"], ph.map, angpix)
    sensitivity = _sensitivity(p, paths["gain"])
    truths: list[MicrographTruth] = []
    for m in range(p["n_movies"]):
        tm = time.time()
        g = m % len(groups)  # movie m belongs to optics group m % K
        truths.append(_simulate_movie(groups[g], phantoms[g], m, out, bfac, scales, contrasts[g], sensitivity))
        log.info("simulate: movie %d/%d (%s, %d particles) in %.1f s, ETA %.0f s", m + 1, p["n_movies"],
                 truths[-1].name, len(truths[-1].pos), time.time() - tm,
                 (time.time() - t0) / (m + 1) * (p["n_movies"] - m - 1))
    n_total = sum(len(t.pos) for t in truths)
    subset = random_subsets(rng, n_total)
    write_particles(paths["particles"], _particles(p, truths, subset))
    write_corrected_micrographs(paths["corrected_micrographs"], _micrographs(p, truths))
    for q in phantoms:
        q.release()
    h1, h2 = previous_refine_half_maps(p, ph, _on_reference_grid(truths, p["box"]), subset, contrast, bfac, scales)
    mask = maps.soft_mask_from_map(ph.map, angpix)
    for key, volume in (("half1", h1), ("half2", h2), ("map", 0.5 * (h1 + h2)), ("mask", mask)):
        write_mrc(paths[key], volume, angpix)
    fscs, final_res = half_map_fscs(h1, h2, mask, angpix, p["seed"])
    write_postprocess(paths["postprocess"], PostprocessResult({
        L.FINAL_RESOLUTION: final_res, L.UNFILTERED_MAP_HALF1: str(paths["half1"].relative_to(out)),
        L.UNFILTERED_MAP_HALF2: str(paths["half2"].relative_to(out)), L.MASK_NAME: str(paths["mask"].relative_to(out)),
        L.RANDOMISE_FROM: float(box * angpix / fscs.randomize_at) if fscs.randomize_at else 999.0},
        fsc_table(box, angpix, {"corrected": fscs.corrected, "unmasked": fscs.unmasked, "masked": fscs.masked,
                                "random_masked": fscs.random_masked})))
    write_mtf(paths["mtf"], Mtf(*maps.smooth_mtf(), name="mtf_simulated"),
              comments=("simulated smooth MTF; " + ("applied to" if p["apply_mtf"] else "NOT applied to")
                        + " the simulated movie frames (detector pixel = movie pixel)",))
    write_truth(paths["truth"], ground_truth_arrays(p, truths, subset, bfac, scales, contrast, final_res), p)
    write_truth_star(paths["truth_star"], p, ph.source, FrameBfactors(np.arange(nf), bfac, np.log(scales)))
    paths.update(angpix=angpix, box=box, frames=nf, params=p, final_resolution_a=final_res)
    log.info("simulate: %d movies, %d particles written to %s in %.1f s (half-map FSC 0.143 at %.2f Å)",
             len(truths), n_total, out, time.time() - t0, final_res)
    return paths


# --------------------------------------------------------------------------------------------------
# command line

def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="dataset size (default tiny)")
    parser.add_argument("--o", required=True, help="output (project) directory")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--model", default=None, help="atomic model (PDB/mmCIF) instead of the pseudo-protein")
    parser.add_argument("--float16", action="store_true", help="write movies as float16 (MRC mode 12)")
    parser.add_argument("--n_movies", type=int, default=None)
    parser.add_argument("--particles_per_movie", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--box", type=int, default=None, help="particle box (px)")
    parser.add_argument("--angpix", type=float, default=None, help="pixel size (Å), movies and particles")
    parser.add_argument("--dose_per_frame", type=float, default=None, help="e/Å^2 per frame")
    parser.add_argument("--contrast", type=float, default=None, help="signal rms / mean intensity")
    parser.add_argument("--s_vel", type=float, default=None, help="planted sigma velocity (Å/dose)")
    parser.add_argument("--s_div", type=float, default=None, help="planted sigma divergence (Å)")
    parser.add_argument("--s_acc", type=float, default=None, help="planted sigma acceleration (Å/dose)")
    parser.add_argument("--bfactor_slope", type=float, default=None,
                        help="planted B_f = -slope * dose (Å^2 per e/Å^2)")
    parser.add_argument("--movie_width", type=int, default=None, help="movie width (px)")
    parser.add_argument("--movie_height", type=int, default=None, help="movie height (px)")
    parser.add_argument("--noise", choices=("poisson", "gaussian", "none"), default=None, help="detector noise")
    parser.add_argument("--half_maps", choices=("reconstruct", "noisy_truth"), default=None,
                        help="previous-refine half maps: true-pose reconstructions or expected map + noise")
    parser.add_argument("--apply_mtf", action="store_true", help="apply mtf_simulated.star to the frames' signal")
    d = parser.add_argument_group("Detector (issue 20)")
    d.add_argument("--movie_format", choices=("mrc", "mrc4", "tiff", "eer"), default=None,
                   help="movie files: float MRC (default), 4-bit MRC (mode 101), 8-bit LZW TIFF, or EER events")
    d.add_argument("--gain", action="store_true",
                   help="non-uniform detector sensitivity; the gain reference (its inverse) in Movies/gain.mrc "
                        "(EER: Movies/gain.gain)")
    d.add_argument("--hot_pixels", type=int, default=None,
                   help="plant N hot pixels (half listed in data_hot_pixels, half in a defect file) and a dead column")
    d.add_argument("--super_resolution", action="store_true",
                   help="movies at half the pixel size (twice the width and height), rlnMicrographBinning 2")
    d.add_argument("--eer_upsampling", type=int, default=None,
                   help="EER: 1 = the simulation grid is the detector; 2 = it is twice the detector (8K-like)")
    d.add_argument("--optics_groups", type=int, default=None,
                   help="K optics groups: movie m in group m %% K; group g has box + 12 g px at a pixel size "
                        "giving the same extent (48 px at 2.5 Å, 60 at 2.0, 72 at 1.67 ...)")
    d.add_argument("--eer_grouping", type=int, default=None,
                   help="EER raw frames per fraction (default: enough to avoid two events in a pixel)")


_OVERRIDES = ("n_movies", "particles_per_movie", "frames", "box", "angpix", "dose_per_frame", "contrast",
              "s_vel", "s_div", "s_acc", "bfactor_slope", "model", "movie_width", "movie_height", "noise",
              "half_maps", "movie_format", "hot_pixels", "eer_upsampling", "eer_grouping", "optics_groups")


def main(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    if args.float16:
        overrides["float16"] = True
    for flag in ("apply_mtf", "gain", "super_resolution"):
        if getattr(args, flag):
            overrides[flag] = True
    res = simulate_project(args.o, preset=args.preset, seed=args.seed, **overrides)
    print(f"simulated project in {res['project_dir']}: particles {res['particles']}, "
          f"half maps FSC-0.143 resolution {res['final_resolution_a']:.2f} Å")
    return 0
