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

Movie pixel size = particle pixel size (no binning / Fourier cropping).  Paths in the STAR files are
relative to --o (the project directory).  The same --seed gives identical files.

Examples:
  polishplugin simulate --preset tiny --o sim_tiny
  polishplugin simulate --preset demo --o sim_demo --seed 7 --float16
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from polishplugin.io.mrc import MrcStackWriter, write_mrc
from polishplugin.io.star import write_star
from polishplugin.core import fourier
from polishplugin.core.ctf import CtfParams, ctf_2d
from polishplugin.core.fsc import (fsc, fsc_true, phase_randomization_shell, randomize_phases_beyond,
                                   resolution_shell)
from polishplugin.core.geometry import euler_to_matrix, symmetry_matrices
from polishplugin.core.simulate import damage, frames, maps, phantom, tracks
from polishplugin.programs._cli import ProgramError

__all__ = ["PRESETS", "simulate_project", "load_truth", "reconstruct_symmetric", "add_args", "main"]

log = logging.getLogger(__name__)

_COMMON = dict(
    seed=1, voltage=200.0, cs=1.4, q0=0.1, dose_per_frame=1.277,
    s_vel=0.4, s_div=1155.0, s_acc=2.7,            # planted motion sigmas (tutorial's trained values)
    global_drift_a=12.0,                           # length of the global drift path over the movie (Å)
    bfactor_slope=4.0,                             # planted B_f = -slope * accumulated dose (Å^2 per e/Å^2)
    scale_decay=0.0,                               # planted scale_f = exp(-decay * dose)
    defocus_min=8000.0, defocus_max=25000.0, astigmatism_max=600.0,
    atom_sigma_a=1.0, particle_radius_fraction=0.33, contrast=0.05, noise="poisson",
    symmetry="D2", model=None, float16=False, projection="analytic",
    half_maps="reconstruct",                       # or "noisy_truth" (expected map + noise, big presets)
    half_map_resolution_a=3.6,                     # target FSC=0.143 resolution for "noisy_truth"
    apply_mtf=False,                               # multiply the frames' signal by mtf_simulated.star
    min_distance_fraction=1.0,                     # particles at least this x diameter apart
)

#: The presets; every key can be overridden (``simulate_project(..., frames=8)`` or ``--frames 8``).
PRESETS: dict[str, dict] = {
    "tiny": dict(_COMMON, n_movies=3, frames=10, particles_per_movie=12, box=48, angpix=2.5,
                 movie_width=400, movie_height=400, dose_per_frame=2.0, bfactor_slope=5.0, contrast=0.12,
                 global_drift_a=10.0),
    "demo": dict(_COMMON, n_movies=8, frames=16, particles_per_movie=36, box=64, angpix=2.0,
                 movie_width=768, movie_height=768, contrast=0.06,
                 apply_mtf=True),                  # the demo post-processes with the MTF: it must be in the data
    # the tutorial's particles are 256 px at 1.244 Å; its movies (3710x3838 at 0.885 Å) cover the same
    # area as 2640x2730 px at 1.244 Å, which we simulate directly (movie px = particle px).
    "tutorial": dict(_COMMON, n_movies=24, frames=24, particles_per_movie=190, box=256, angpix=1.244,
                     movie_width=2640, movie_height=2730, projection="projector", atom_sigma_a=1.2,
                     half_maps="noisy_truth", particle_radius_fraction=0.28, min_distance_fraction=0.85),
}

JOB_MOTION = "MotionCorr/job002"
JOB_EXTRACT = "Extract/job018"
JOB_REFINE = "Refine3D/job021"
JOB_MASK = "MaskCreate/job022"
JOB_POST = "PostProcess/job023"


# --------------------------------------------------------------------------------------------------
# phantom

def _read_model_atoms(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Atom positions (Å, centred on their centre of mass) and atomic numbers from a PDB/mmCIF file."""
    try:
        import gemmi
    except ImportError as exc:  # pragma: no cover - gemmi is a dependency
        raise ProgramError(f"--model {path} needs the gemmi package ({exc})") from None
    if not path.is_file():
        raise ProgramError(f"model file {path} does not exist")
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError/ValueError on bad files
        raise ProgramError(f"model file {path} cannot be read: {exc}") from None
    st.setup_entities()
    st.remove_hydrogens()
    try:
        st.remove_ligands_and_waters()
    except RuntimeError:  # files without entity information: keep every atom
        pass
    xyz, z = [], []
    for chain in st[0]:
        for res in chain:
            for atom in res:
                xyz.append(atom.pos.tolist())
                z.append(atom.element.atomic_number)
    if not xyz:
        raise ProgramError(f"model file {path} contains no atoms")
    xyz = np.array(xyz, np.float64)
    w = np.array(z, np.float64)
    return xyz - (xyz * w[:, None]).sum(0) / w.sum(), w


def _splat_map(xyz_a: np.ndarray, weights: np.ndarray, box: int, angpix: float, sigma_a: float) -> np.ndarray:
    """Real-space Gaussian splatting (for many atoms / big boxes), normalised like the analytic map."""
    s = sigma_a / angpix
    rad = int(np.ceil(4 * s))
    vol = np.zeros((box, box, box), np.float64)
    pos = xyz_a / angpix + box // 2
    base = np.floor(pos).astype(np.int64)
    offs = np.arange(-rad, rad + 1)
    for i in range(0, len(pos), 2048):
        p, b, w = pos[i:i + 2048], base[i:i + 2048], weights[i:i + 2048]
        gx = np.exp(-0.5 * ((b[:, 0, None] + offs) - p[:, 0, None]) ** 2 / s ** 2)
        gy = np.exp(-0.5 * ((b[:, 1, None] + offs) - p[:, 1, None]) ** 2 / s ** 2)
        gz = np.exp(-0.5 * ((b[:, 2, None] + offs) - p[:, 2, None]) ** 2 / s ** 2)
        val = w[:, None, None, None] * gz[:, :, None, None] * gy[:, None, :, None] * gx[:, None, None, :]
        val /= (2 * np.pi * s ** 2) ** 1.5
        zi = (b[:, 2, None] + offs)[:, :, None, None]
        yi = (b[:, 1, None] + offs)[:, None, :, None]
        xi = (b[:, 0, None] + offs)[:, None, None, :]
        zi, yi, xi = np.broadcast_arrays(zi, yi, xi)
        ok = (zi >= 0) & (zi < box) & (yi >= 0) & (yi < box) & (xi >= 0) & (xi < box)
        np.add.at(vol, (zi[ok], yi[ok], xi[ok]), val[ok])
    return vol.astype(np.float32)


class _Phantom:
    """The true object: atoms, map, and a projection function ``project(rotations) -> rfft``."""

    def __init__(self, p: dict, rng: np.random.Generator):
        box, angpix = p["box"], p["angpix"]
        if p.get("model"):
            self.xyz, self.w = _read_model_atoms(Path(p["model"]))
            self.source = f"model {p['model']}"
            extent = np.abs(self.xyz).max()
            if extent > 0.5 * box * angpix:
                log.warning("model extends %.0f Å from its centre; the %d px box at %.3f Å reaches %.0f Å",
                            extent, box, angpix, 0.5 * box * angpix)
        else:
            radius = p["particle_radius_fraction"] * box * angpix
            self.xyz, self.w = phantom.pseudo_protein_atoms(rng, radius, p["symmetry"])
            self.source = f"procedural {p['symmetry']} pseudo-protein"
        self.box, self.angpix, self.sigma = box, angpix, p["atom_sigma_a"]
        self.method = p["projection"]
        if self.method == "analytic" and len(self.w) * box * box < 2e8:  # else too slow: splat + projector
            self.map = phantom.gaussian_atoms_map(self.xyz, self.w, box, angpix, self.sigma)
        else:
            self.method = "projector"
            self.map = _splat_map(self.xyz, self.w, box, angpix, self.sigma)
        self._projector = None
        self.radius_px = float(np.max(np.linalg.norm(self.xyz, axis=1))) / angpix + 2 * self.sigma / angpix

    def release(self) -> None:
        """Free the projector's padded transform (memory) once all particles are projected."""
        self._projector = None

    def project(self, rotations: np.ndarray) -> np.ndarray:
        if self.method == "analytic":
            return phantom.project_atoms_rfft(self.xyz, self.w, rotations, self.box, self.angpix, self.sigma)
        if self._projector is None:
            from polishplugin.core.projector import FourierProjector
            self._projector = FourierProjector(self.map, pad=2)
        return self._projector.project(rotations).astype(np.complex128)


# --------------------------------------------------------------------------------------------------
# the project

def _params(preset: str, seed: int, overrides: dict) -> dict:
    if preset not in PRESETS:
        raise ProgramError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    p = dict(PRESETS[preset])
    unknown = set(overrides) - set(p)
    if unknown:
        raise ProgramError(f"unknown simulation parameter(s): {', '.join(sorted(unknown))}")
    p.update({k: v for k, v in overrides.items() if v is not None})
    p["seed"], p["preset"] = int(seed), preset
    if p["box"] % 2 or p["box"] < 16:
        raise ProgramError(f"--box must be even and >= 16, got {p['box']}")
    if p["frames"] < 2 or p["n_movies"] < 1 or p["particles_per_movie"] < 1:
        raise ProgramError("--frames must be >= 2 and --n_movies, --particles_per_movie >= 1")
    return p


def _movie_star(p: dict, name: str, shifts_px: np.ndarray) -> dict:
    general = {
        "rlnImageSizeX": int(p["movie_width"]), "rlnImageSizeY": int(p["movie_height"]),
        "rlnImageSizeZ": int(p["frames"]), "rlnMicrographMovieName": f"Movies/{name}.mrcs",
        "rlnMicrographBinning": 1.0, "rlnMicrographOriginalPixelSize": float(p["angpix"]),
        "rlnMicrographDoseRate": float(p["dose_per_frame"]), "rlnMicrographPreExposure": 0.0,
        "rlnVoltage": float(p["voltage"]), "rlnMicrographStartFrame": 1, "rlnMotionModelVersion": 1,
    }
    shift = pd.DataFrame({"rlnMicrographFrameNumber": np.arange(1, p["frames"] + 1),
                          "rlnMicrographShiftX": shifts_px[:, 0] + 0.0, "rlnMicrographShiftY": shifts_px[:, 1] + 0.0})
    local = pd.DataFrame({"rlnMotionModelCoeffsIdx": np.arange(36), "rlnMotionModelCoeff": np.zeros(36)})
    return {"general": general, "global_shift": shift, "local_motion_model": local}


def _tracks_star(tracks_a: np.ndarray) -> dict:
    blocks: dict = {"general": {"rlnParticleNumber": int(len(tracks_a))}}
    for i, t in enumerate(tracks_a):
        blocks[str(i)] = pd.DataFrame({"rlnOriginXAngst": t[:, 0], "rlnOriginYAngst": t[:, 1]})
    return blocks


def _optics(p: dict, micrographs: bool) -> pd.DataFrame:
    row = {"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
           **({"rlnMtfFileName": ["mtf_simulated.star"]} if p["apply_mtf"] else {}),
           "rlnMicrographOriginalPixelSize": [float(p["angpix"])], "rlnVoltage": [float(p["voltage"])],
           "rlnSphericalAberration": [float(p["cs"])], "rlnAmplitudeContrast": [float(p["q0"])]}
    if micrographs:
        row["rlnMicrographPixelSize"] = [float(p["angpix"])]
    else:
        row.update({"rlnImagePixelSize": [float(p["angpix"])], "rlnImageSize": [int(p["box"])],
                    "rlnImageDimensionality": [2], "rlnCtfDataAreCtfPremultiplied": [0]})
    return pd.DataFrame(row)


def _simulate_movie(p: dict, ph: _Phantom, m: int, out: Path, bfac: np.ndarray, scales: np.ndarray,
                    contrast_scale: float) -> dict:
    """Simulate and write one movie, its corrected sum and its extracted particles; returns the truth."""
    rng = np.random.default_rng([p["seed"], 1000 + m])
    box, angpix, nf = p["box"], p["angpix"], p["frames"]
    w, h = p["movie_width"], p["movie_height"]
    name = f"sim_{m + 1:05d}_frameImage"
    n = p["particles_per_movie"]
    diam = 2 * ph.radius_px
    min_dist = max(p["min_distance_fraction"] * diam, 0.5 * box)
    pos = tracks.random_positions(rng, n, w, h, margin=box // 2 + 2, min_dist=min_dist)
    angles = phantom.random_rotations(rng, n)
    rots = euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    du = rng.uniform(p["defocus_min"], p["defocus_max"])
    dv = du - rng.uniform(0.0, p["astigmatism_max"])
    dang = rng.uniform(0.0, 180.0)
    ctfp = CtfParams(du, dv, dang, p["voltage"], p["cs"], p["q0"])
    drift = tracks.global_drift(rng, nf, p["global_drift_a"] / angpix)
    sv, sd, sa = tracks.normalized_sigmas(p["s_vel"], p["s_div"], p["s_acc"], p["dose_per_frame"], angpix)
    local = tracks.sample_local_tracks(rng, pos.astype(np.float64), nf, sv, sd, sa)
    disp = drift[None] + local  # (n, nf, 2) px: position in frame f minus coordinate
    proj = ph.project(rots)
    ctf = frames.ctf_rect(ctfp, h, w, angpix)
    if p["apply_mtf"]:  # detector MTF on the signal (movie px = detector px)
        ctf = ctf * frames.mtf_rect(h, w, *maps.smooth_mtf())
    dose_px = p["dose_per_frame"] * angpix ** 2
    acc = np.zeros((h, w // 2 + 1), np.complex128)
    movie_path = out / "Movies" / f"{name}.mrcs"
    with _MovieWriter(movie_path, nf, h, w, angpix, p["float16"]) as writer:
        for f in range(nf):
            pasted = frames.paste_particles(h, w, proj, pos + disp[:, f])
            clean = frames.clean_frame(pasted, ctf, frames.bfactor_rect(h, w, angpix, bfac[f], scales[f]))
            counts = frames.detector_counts(rng, clean, dose_px, contrast_scale, p["noise"])
            writer[f] = counts
            acc += frames.align_shift_rfft(counts, -drift[f])  # global-shift correction (RELION shift = -drift)
    corrected = fourier.irfft(acc, (h, w)).astype(np.float32)
    write_mrc(out / JOB_MOTION / "Movies" / f"{name}.mrc", corrected, angpix)
    write_star(out / JOB_MOTION / "Movies" / f"{name}.star", _movie_star(p, name, -drift))
    boxes = frames.extract_boxes(-corrected, pos, box)  # --invert_contrast: white protein
    parts = frames.normalize_background(boxes, 0.75 * box / 2)
    write_mrc(out / JOB_EXTRACT / "Movies" / f"{name}.mrcs", parts, angpix, float16=False)
    write_star(out / "ground_truth" / f"{name}_tracks.star", _tracks_star(disp * angpix))
    return dict(name=name, pos=pos, angles=angles, rots=rots, ctf=ctfp, drift_px=drift, local_px=local,
                tracks_a=disp * angpix,
                particles=parts.astype(np.float32) if p["half_maps"] == "reconstruct" else None)


class _MovieWriter(MrcStackWriter):
    """A movie stack (n_frames, H, W) written frame by frame (memory stays one frame)."""

    def __init__(self, path, n_frames, height, width, angpix, float16):  # noqa: D107
        import os
        import mrcfile
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        self._dtype = np.float16 if float16 else np.float32
        self._mrc = mrcfile.new_mmap(str(self._tmp), shape=(n_frames, height, width),
                                     mrc_mode=12 if float16 else 2, overwrite=True)
        self._mrc.set_image_stack()
        self._mrc.voxel_size = angpix


def _postprocess(h1: np.ndarray, h2: np.ndarray, mask: np.ndarray, box: int, angpix: float,
                 seed: int) -> tuple[pd.DataFrame, float, int | None]:
    unmasked = fsc(h1, h2)
    masked = fsc(h1 * mask, h2 * mask)
    shell = phase_randomization_shell(unmasked, 0.8)
    if shell is None or shell + 2 >= len(unmasked):
        rand, corrected = np.zeros_like(masked), masked.copy()
    else:
        r1 = randomize_phases_beyond(h1, shell, seed)
        r2 = randomize_phases_beyond(h2, shell, seed + 1)
        rand = fsc(r1 * mask, r2 * mask)
        corrected = fsc_true(masked, rand, shell)
    i = np.arange(len(unmasked))
    res_a = np.where(i > 0, box * angpix / np.maximum(i, 1), 999.0)
    table = pd.DataFrame({
        "rlnSpectralIndex": i, "rlnResolution": i / (box * angpix), "rlnAngstromResolution": res_a,
        "rlnFourierShellCorrelationCorrected": corrected,
        "rlnFourierShellCorrelationUnmaskedMaps": unmasked, "rlnFourierShellCorrelationMaskedMaps": masked,
        "rlnCorrectedFourierShellCorrelationPhaseRandomizedMaskedMaps": rand})
    sh = resolution_shell(corrected, 0.143)
    return table, float(box * angpix / max(sh, 1)), shell


def reconstruct_symmetric(images: np.ndarray, rotations: np.ndarray, ctfs: np.ndarray | None,
                          symmetry: str = "C1") -> np.ndarray:
    """``core.projector.reconstruct_from_images`` with the symmetry applied by inserting every image
    once per operator ``S`` (pose ``A S`` sees the same symmetric map as ``A``); exact for a symmetric
    object and, for small sets, cheaper than symmetrising the padded grid."""
    from polishplugin.core.projector import reconstruct_from_images
    ops = symmetry_matrices(symmetry)
    k = len(ops)
    r_sym = np.concatenate([np.asarray(rotations) @ op for op in ops])
    c_sym = None if ctfs is None else np.tile(ctfs, (k, 1, 1))
    return reconstruct_from_images(np.tile(images, (k, 1, 1)), r_sym, c_sym, symmetry="C1")


def simulate_project(out_dir, preset: str = "tiny", seed: int = 1, **overrides) -> dict:
    """Simulate a project under ``out_dir``; returns the paths (see the module docstring) and the
    parameters.  Deterministic for a ``seed``.  ``overrides`` replace preset values (``frames=8`` ...)."""
    t0 = time.time()
    p = _params(preset, seed, overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(p["seed"])
    box, angpix, nf = p["box"], p["angpix"], p["frames"]
    ph = _Phantom(p, rng)
    # contrast: rms of a projection (identity pose) over the box -> `contrast` of the mean intensity
    ref = fourier.irfft(ph.project(np.eye(3)[None]), (box, box), axes=(-2, -1))
    contrast_scale = p["contrast"] / float(np.sqrt(np.mean(ref ** 2)))
    bfac, scales = damage.planted_bfactors(nf, p["dose_per_frame"], p["bfactor_slope"], p["scale_decay"])
    gt = out / "ground_truth"
    write_mrc(gt / "true_map.mrc", ph.map, angpix)

    movies, rows, truths = [], [], []
    for m in range(p["n_movies"]):
        tm = time.time()
        t = _simulate_movie(p, ph, m, out, bfac, scales, contrast_scale)
        truths.append(t)
        movies.append(t["name"])
        done = m + 1
        eta = (time.time() - t0) / done * (p["n_movies"] - done)
        log.info("simulate: movie %d/%d (%s, %d particles) in %.1f s, ETA %.0f s", done, p["n_movies"],
                 t["name"], len(t["pos"]), time.time() - tm, eta)

    # particles: half sets balanced over the whole set
    n_total = sum(len(t["pos"]) for t in truths)
    subset = np.where(rng.permutation(n_total) % 2 == 0, 1, 2)
    k = 0
    for mi, t in enumerate(truths):
        for i in range(len(t["pos"])):
            c = t["ctf"]
            rows.append({
                "rlnCoordinateX": float(t["pos"][i, 0]), "rlnCoordinateY": float(t["pos"][i, 1]),
                "rlnImageName": f"{i + 1:06d}@{JOB_EXTRACT}/Movies/{t['name']}.mrcs",
                "rlnMicrographName": f"{JOB_MOTION}/Movies/{t['name']}.mrc",
                "rlnOpticsGroup": 1, "rlnDefocusU": c.defocus_u_a, "rlnDefocusV": c.defocus_v_a,
                "rlnDefocusAngle": c.defocus_angle_deg, "rlnCtfBfactor": 0.0, "rlnCtfScalefactor": 1.0,
                "rlnPhaseShift": 0.0, "rlnGroupNumber": mi + 1,
                "rlnAngleRot": float(t["angles"][i, 0]), "rlnAngleTilt": float(t["angles"][i, 1]),
                "rlnAnglePsi": float(t["angles"][i, 2]), "rlnOriginXAngst": 0.0, "rlnOriginYAngst": 0.0,
                "rlnClassNumber": 1, "rlnNormCorrection": 1.0, "rlnRandomSubset": int(subset[k]),
            })
            k += 1
    particles = pd.DataFrame(rows)
    particles_star = out / JOB_REFINE / "run_data.star"
    write_star(particles_star, {"optics": _optics(p, False), "particles": particles})
    mics = pd.DataFrame({
        "rlnMicrographName": [f"{JOB_MOTION}/Movies/{n}.mrc" for n in movies],
        "rlnMicrographMetadata": [f"{JOB_MOTION}/Movies/{n}.star" for n in movies],
        "rlnOpticsGroup": 1,
        "rlnAccumMotionTotal": [float(np.sum(np.linalg.norm(np.diff(t["drift_px"], axis=0), axis=1)) * angpix)
                                for t in truths]})
    corr_star = out / JOB_MOTION / "corrected_micrographs.star"
    write_star(corr_star, {"optics": _optics(p, True), "micrographs": mics})

    ph.release()
    # "previous refine": reconstructions of each half with the true poses, or (big presets) the map the
    # particles see plus independent noise giving a target FSC
    if p["half_maps"] == "reconstruct":
        imgs = np.concatenate([t["particles"] for t in truths])
        rots = np.concatenate([t["rots"] for t in truths])
        ctfs = np.concatenate([np.repeat(ctf_2d(t["ctf"], box, angpix)[None], len(t["pos"]), 0) for t in truths])
        sym = p["symmetry"] if not p.get("model") else "C1"
        h1, h2 = (reconstruct_symmetric(imgs[subset == s], rots[subset == s], ctfs[subset == s], sym)
                  for s in (1, 2))
    else:
        amplitude = contrast_scale * np.sqrt(nf * p["dose_per_frame"] * angpix ** 2)
        expected = maps.expected_particle_map(ph.map, angpix, amplitude, bfac, scales)
        h1, h2 = maps.noisy_half_maps(np.random.default_rng([p["seed"], 7]), expected, angpix,
                                      p["half_map_resolution_a"])
    mask = maps.soft_mask_from_map(ph.map, angpix)
    paths = {
        "project_dir": out, "movies_dir": out / "Movies", "corrected_micrographs": corr_star,
        "particles": particles_star, "half1": out / JOB_REFINE / "run_half1_class001_unfil.mrc",
        "half2": out / JOB_REFINE / "run_half2_class001_unfil.mrc", "map": out / JOB_REFINE / "run_class001.mrc",
        "mask": out / JOB_MASK / "mask.mrc", "postprocess": out / JOB_POST / "postprocess.star",
        "mtf": out / "mtf_simulated.star", "true_map": gt / "true_map.mrc", "truth": gt / "truth.npz",
        "truth_star": gt / "truth.star", "ground_truth_dir": gt,
        "movies": [out / "Movies" / f"{n}.mrcs" for n in movies],
        "movie_stars": [out / JOB_MOTION / "Movies" / f"{n}.star" for n in movies],
        "true_tracks": [gt / f"{n}_tracks.star" for n in movies],
    }
    write_mrc(paths["half1"], h1, angpix)
    write_mrc(paths["half2"], h2, angpix)
    write_mrc(paths["map"], 0.5 * (h1 + h2), angpix)
    write_mrc(paths["mask"], mask, angpix)
    fsc_table, final_res, rand_shell = _postprocess(h1, h2, mask, box, angpix, p["seed"])
    write_star(paths["postprocess"], {
        "general": {"rlnFinalResolution": final_res, "rlnUnfilteredMapHalf1": str(paths["half1"].relative_to(out)),
                    "rlnUnfilteredMapHalf2": str(paths["half2"].relative_to(out)),
                    "rlnMaskName": str(paths["mask"].relative_to(out)),
                    "rlnRandomiseFrom": float(box * angpix / rand_shell) if rand_shell else 999.0},
        "fsc": fsc_table})
    mx, my = maps.smooth_mtf()
    write_star(paths["mtf"], {"mtf_simulated": pd.DataFrame({"rlnResolutionInversePixel": mx, "rlnMtfValue": my})},
               comments=["simulated smooth MTF; " + ("applied to" if p["apply_mtf"] else "NOT applied to")
                         + " the simulated movie frames (detector pixel = movie pixel)"])

    # ground truth
    sv, sd, sa = tracks.normalized_sigmas(p["s_vel"], p["s_div"], p["s_acc"], p["dose_per_frame"], angpix)
    params_json = json.dumps({k: v for k, v in p.items()}, sort_keys=True, default=str)
    np.savez(paths["truth"],
             tracks_a=np.concatenate([t["tracks_a"] for t in truths]),
             global_drift_a=np.stack([t["drift_px"] * angpix for t in truths]),
             local_tracks_a=np.concatenate([t["local_px"] * angpix for t in truths]),
             micrograph_index=np.concatenate([np.full(len(t["pos"]), i) for i, t in enumerate(truths)]),
             micrograph_names=np.array(movies), coords_px=np.concatenate([t["pos"] for t in truths]),
             angles_deg=np.concatenate([t["angles"] for t in truths]), random_subset=subset,
             bfactors=bfac, scales=scales, sigmas=np.array([p["s_vel"], p["s_div"], p["s_acc"]]),
             sigmas_px=np.array([sv, sd, sa]), contrast_scale=contrast_scale, params_json=params_json,
             final_resolution_a=final_res)
    write_star(paths["truth_star"], {
        "general": {"rlnMotionParamSigmaVelocity": p["s_vel"], "rlnMotionParamSigmaDivergence": p["s_div"],
                    "rlnMotionParamSigmaAcceleration": p["s_acc"], "rlnMicrographDoseRate": p["dose_per_frame"],
                    "rlnImagePixelSize": angpix, "rlnImageSize": box, "rlnMtfApplied": int(bool(p["apply_mtf"])),
                    "rlnSimulationPhantom": ph.source.replace(" ", "_"),
                    "rlnSimulationPreset": preset, "rlnRandomSeed": p["seed"]},
        "perframe_bfactors": pd.DataFrame({"rlnMovieFrameNumber": np.arange(nf), "rlnBfactorUsedForSharpening": bfac,
                                           "rlnFittedInterceptGuinierPlot": np.log(scales)})},
        comments=["ground truth of polishplugin simulate: planted per-frame B-factors (0-based frames, "
                  "third column ln(scale)), planted motion sigmas (s_vel A/dose, s_div A, s_acc A/dose)",
                  "the MTF in mtf_simulated.star was " + ("" if p["apply_mtf"] else "NOT ")
                  + "applied to the movie frames",
                  "parameters: " + params_json])
    paths.update(angpix=angpix, box=box, frames=nf, params=p, final_resolution_a=final_res)
    log.info("simulate: %d movies, %d particles written to %s in %.1f s (half-map FSC 0.143 at %.2f Å)",
             len(movies), n_total, out, time.time() - t0, final_res)
    return paths


def load_truth(project_dir) -> dict:
    """The ground truth of a simulated project: ``truth.npz`` arrays (``tracks_a`` (n, frames, 2) Å in
    run_data.star order, ``bfactors``, ``scales``, ``sigmas`` (s_vel, s_div, s_acc), ...) plus ``params``."""
    with np.load(Path(project_dir) / "ground_truth" / "truth.npz") as z:
        d = {k: z[k] for k in z.files}
    d["params"] = json.loads(str(d.pop("params_json")))
    return d


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


_OVERRIDES = ("n_movies", "particles_per_movie", "frames", "box", "angpix", "dose_per_frame", "contrast",
              "s_vel", "s_div", "s_acc", "bfactor_slope", "model", "movie_width", "movie_height", "noise",
              "half_maps")


def main(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    if args.float16:
        overrides["float16"] = True
    if args.apply_mtf:
        overrides["apply_mtf"] = True
    res = simulate_project(args.o, preset=args.preset, seed=args.seed, **overrides)
    print(f"simulated project in {res['project_dir']}: particles {res['particles']}, "
          f"half maps FSC-0.143 resolution {res['final_resolution_a']:.2f} Å")
    return 0
