"""3D auto-refine with gold-standard half sets (RELION relion_refine --auto_refine --split_random_halves).

Each half set (rlnRandomSubset 1/2) is refined independently against its own reference, starting
from --ref low-passed to --ini_high; the halves are averaged only below --low_resol_join_halves Å.
Every iteration: E-step (marginalisation over HEALPix orientations and offsets, adaptive
oversampling, local searches once the sampling reaches --auto_local_healpix_order), M-step
(symmetrised reconstruction regularised by the gold-standard FSC), noise and offset-prior update,
resolution, image size and auto-sampling.  On convergence a final iteration joins the halves.

Outputs: <o>_class001.mrc, <o>_half1_class001_unfil.mrc, <o>_half2_class001_unfil.mrc, <o>_data.star,
<o>_model.star, <o>_sampling.star and per iteration <o>_it###_half{1,2}_class001.mrc, <o>_it###_data.star,
<o>_it###_model.star, <o>_it###_sampling.star, <o>_it###_optimiser.star (+ .npz with the exact poses, noise spectra, schedule and options; written last,
so it marks a complete iteration).  A killed run continues with --continue <o>_it###_optimiser.star
(RELION's option: the original options are reused; give --o, and optionally --iter/--j).
With several MPI ranks the noise spectra, offset sigmas and accuracy estimates are summed over the
ranks, so 1, 2 or 3 ranks give the same outputs (within float rounding).

Normalisation and scale corrections (--norm, --scale): each particle's image is multiplied by
avg_norm / rlnNormCorrection before the E-step and its new rlnNormCorrection is the noise standard
deviation of its residual (old/avg x sqrt(2 sum_w |X - a cP|^2), the residual beyond the current size
being the image power); unlike RELION the residual is taken with the particle's best model amplitude
a = sum XA / sum AA, so that an amplitude error is left to the scale correction and not read as noise
(with the plain residual, a 5 % amplitude error outweighs the noise at high SNR and the corrections run
away; tests/programs/test_refine3d.py::test_auto_sampling_goes_fine_on_high_snr_data); each group's CTF is multiplied by its rlnGroupScaleCorrection, re-estimated as
sum XA / sum AA over the shells with SSNR > 3, clipped to [median/5, 5 median] and renormalised to a
particle-weighted mean of 1.  Groups: rlnGroupNumber, else rlnGroupName, else one per micrograph.
Neither is updated in a --firstiter_cc iteration.

Differences from RELION (documented choices): with --firstiter_cc the first iteration scores
by normalised cross-correlation with the best sample only and keeps the initial noise spectra; the
accuracy estimate behind auto-sampling uses a log-likelihood drop of 1 (RELION: 4.605, P = 0.01), so
the sampling is refined somewhat further than RELION would; significant samples are capped by --maxsig
200.  As in RELION the two half sets share the noise spectra, the offsets' sigma and the corrections;
only their reconstructions are kept apart until the final iteration.

E-step backend (--gpu/--device, ``polishplugin.core.opencl.estep_cl.select_ops``): projections on the
OpenCL device whenever one works (cross products there too on a GPU, with BLAS on a CPU device);
--device cpu keeps everything in numpy/BLAS; --device P:D picks an OpenCL device.

Example (tutorial step 27):
  polishplugin refine3d --i Polish/job026/shiny.star --o Refine3D/job027/run \\
      --ref Refine3D/job021/run_class001.mrc --solvent_mask MaskCreate/job022/mask.mrc --ini_high 50 \\
      --sym D2 --ctf --ctf_corrected_ref --particle_diameter 200 --zero_mask --flatten_solvent \\
      --solvent_correct_fsc --healpix_order 2 --auto_local_healpix_order 4 --offset_range 5 \\
      --offset_step 2 --low_resol_join_halves 40 --norm --scale --j 2
  mpirun -n 2 polishplugin refine3d ...   (one rank per half set; more ranks split the particles)
  polishplugin refine3d --continue Refine3D/job027/run_it005_optimiser.star --o Refine3D/job027/run
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import labels as L
from ..io.mrc import read_mrc, read_stack_images, write_mrc
from ..io.particles import read_particles, write_particles
from ..io.star import StarError, write_star
from ..core.ctf import _gamma_and_envelope, ctf_rfft_stack
from ..core.filters import low_pass_map, raised_cosine_sphere
from ..core.fourier import frequency_grid
from ..core.fsc import fsc as map_fsc, phase_randomization_shell, randomize_phases_beyond, resolution_shell
from ..core.geometry import SymmetryError, euler_to_matrix, symmetry_matrices
from ..core.refine.estep import EStepSettings, NoiseAccumulator, expectation, prepare_images
from ..core.refine.fourier3d import (Backprojector, grid_shells, grid_to_map, halfgrid_fsc, map_to_grid,
                                     pixel_list, regularised_grid)
from ..core.refine.sampling import OrientationGrid, angular_step_deg, perturbation_matrix
from ..core.refine.schedule import (AutoSampling, coarse_image_size, expected_accuracies, image_size,
                                    refine_fsc_true, resolution_shell_from_ssnr, ssnr_from_fsc,
                                    symmetry_aware_angle_deg)
from ._cli import ProgramError
from ._mpi import get_comm, partition

log = logging.getLogger(__name__)

__all__ = ["add_args", "main", "run", "ctf_images"]

INCR_SIZE = 10
MASK_EDGE_PX = 5.0
MIN_SIGMA2_OFFSET_A2 = 2.0
PERTURB_FACTOR = 0.5  # RELION --perturb


def add_args(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--i", default="", help="input particle STAR file (RELION 3.1+ or 3.0); required unless --continue")
    a("--o", required=True, help="output rootname, e.g. Refine3D/job027/run")
    a("--ref", default="", help="reference map (MRC); required unless --continue")
    a("--continue", dest="continue_from", default="",
      help="continue a killed or stopped refinement from its <o>_itNNN_optimiser.star (RELION --continue); "
           "the options of the original run are used (only --o, --iter, --j, --device may change; without "
           "--device the original run's E-step device is used again)")
    a("--ini_high", type=float, default=60.0, help="initial low-pass filter of the reference (Å; default 60)")
    a("--sym", default="C1", help="point group: C1, Cn, Dn, T, O, I (default C1)")
    a("--particle_diameter", type=float, default=-1.0, help="mask diameter (Å); -1: 80%% of the box")
    a("--zero_mask", action="store_true", help="mask the particle background with zeros (else noise-free mean)")
    a("--flatten_solvent", action="store_true", help="mask the references (solvent mask or particle sphere)")
    a("--solvent_mask", default="", help="solvent mask (MRC, values in [0, 1])")
    a("--solvent_correct_fsc", action="store_true", help="solvent-corrected gold-standard FSC (needs --solvent_mask)")
    a("--ctf", action="store_true", help="perform CTF correction")
    a("--ctf_corrected_ref", action="store_true", help="the reference has been CTF-corrected (accepted)")
    a("--ctf_phase_flipped", action="store_true", help="the images were phase-flipped (use |CTF|)")
    a("--ctf_intact_first_peak", action="store_true", help="ignore the CTF until its first peak (CTF = 1 there)")
    a("--firstiter_cc", action="store_true",
      help="first iteration by normalised cross-correlation (reference not on absolute greyscale)")
    a("--healpix_order", type=int, default=2, help="initial HEALPix order (2 = 15° coarse, 7.5° with oversampling)")
    a("--auto_local_healpix_order", type=int, default=4, help="local searches from this order (default 4)")
    a("--offset_range", type=float, default=6.0, help="initial offset search range (pixels; default 6)")
    a("--offset_step", type=float, default=2.0, help="initial coarse offset step (pixels; default 2)")
    a("--oversampling", type=int, default=1, choices=[1], help="adaptive oversampling order (only 1)")
    a("--low_resol_join_halves", type=float, default=-1.0, help="average the halves below this resolution (Å)")
    a("--pad", type=int, default=2, choices=[1, 2], help="padding factor of the 3D Fourier grid (default 2)")
    a("--norm", action="store_true", help="refine a normalisation correction per particle (rlnNormCorrection)")
    a("--scale", action="store_true", help="refine an intensity-scale correction per group (rlnGroupScaleCorrection)")
    a("--random_seed", type=int, default=-1, help="seed of the grid perturbation (-1: from the clock)")
    a("--maxsig", type=int, default=200,
      help="keep at most this many significant coarse samples per particle (RELION --maxsig; RELION's "
           "default is no limit, ours 200 bounds the cost of the first, broad iterations; <=0: no limit)")
    a("--tau2_fudge", type=float, default=1.0, help="regularisation parameter T (default 1)")
    a("--iter", type=int, default=None,
      help="maximum number of iterations (auto_iter_max; default 999, or the original run's with --continue)")
    a("--auto_refine", action="store_true", help="accepted for compatibility (always on)")
    a("--split_random_halves", action="store_true", help="accepted for compatibility (always on)")
    a("--gpu", "--device", dest="device", default=None, nargs="?", const="",
      help="E-step device: an OpenCL device id (e.g. 0 or 0:1), 'cpu' for numpy/BLAS only; default (or "
           "--gpu alone): OpenCL when a device works, else numpy")
    a("--j", type=int, default=1, help="threads (BLAS threads are set by the environment)")
    a("--pool", type=int, default=1, help="accepted for compatibility")
    a("--dont_combine_weights_via_disc", action="store_true", help="accepted for compatibility")


# ----------------------------------------------------------------------------------------------- data
@dataclass
class HalfSet:
    """Particles of one half set on this rank, with their current poses and corrections."""

    half: int
    rows: np.ndarray  # particle rows in the input table
    images: np.ndarray  # (n, N, N) float32
    ctf: np.ndarray  # (n, N, N//2+1) float32
    offsets_px: np.ndarray  # (n, 2)
    mats: np.ndarray  # (n, 3, 3)
    pmax: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_sig: np.ndarray = field(default_factory=lambda: np.zeros(0))
    loglik: np.ndarray = field(default_factory=lambda: np.zeros(0))
    norm: np.ndarray = field(default_factory=lambda: np.zeros(0))  # rlnNormCorrection per particle
    group: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # group index per particle


def _read_inputs(args) -> tuple:
    path = Path(args.i)
    if not path.exists():
        raise ProgramError(f"particle STAR file {path} does not exist")
    table = read_particles(path)
    angpix_all, box_all = table.pixel_sizes_a(), table.box_sizes_px()
    if np.ptp(angpix_all) > 1e-4 or np.ptp(box_all) > 0:
        raise ProgramError(f"particle STAR file {path}: optics groups with different pixel or box sizes "
                           "are not supported; refine them separately")
    angpix, box = float(angpix_all[0]), int(box_all[0])
    try:
        sym_ops = symmetry_matrices(args.sym)
    except SymmetryError as exc:
        raise ProgramError(f"--sym {args.sym}: {exc}") from exc
    if args.ctf:
        try:
            ctf_params = table.ctf_params()
        except StarError as exc:
            raise ProgramError(f"--ctf was asked but particle STAR file {path} has no CTF parameters "
                               f"({exc})") from exc
    ref_path = Path(args.ref)
    if not ref_path.exists():
        raise ProgramError(f"reference map {ref_path} does not exist")
    ref, ref_angpix = read_mrc(ref_path)
    if ref.ndim != 3 or ref.shape != (box, box, box):
        raise ProgramError(f"reference map {ref_path} has shape {ref.shape} but the particles are "
                           f"{box}x{box} pixels; resample it to a {box}^3 box")
    if ref_angpix > 0 and abs(ref_angpix - angpix) > 0.01 * angpix:
        raise ProgramError(f"reference map {ref_path} has pixel size {ref_angpix:.4f} Å but the particles "
                           f"have {angpix:.4f} Å; rescale the reference")
    mask = None
    if args.solvent_mask:
        mpath = Path(args.solvent_mask)
        if not mpath.exists():
            raise ProgramError(f"solvent mask {mpath} does not exist")
        mask, _ = read_mrc(mpath)
        if mask.shape != ref.shape:
            raise ProgramError(f"solvent mask {mpath} has shape {mask.shape}, the reference {ref.shape}")
        if mask.min() < -1e-3 or mask.max() > 1 + 1e-3:
            raise ProgramError(f"solvent mask {mpath} has values outside [0, 1] "
                               f"({mask.min():.3g} .. {mask.max():.3g})")
        mask = np.clip(mask, 0, 1).astype(np.float32)
    if args.solvent_correct_fsc and mask is None:
        raise ProgramError("--solvent_correct_fsc needs --solvent_mask")
    halves = table.half_sets() if L.RANDOM_SUBSET in table.particles.columns else \
        (np.arange(len(table)) % 2 + 1)
    if not set(np.unique(halves)) <= {1, 2} or len(np.unique(halves)) < 2:
        raise ProgramError(f"particle STAR file {path}: rlnRandomSubset must hold both 1 and 2")
    ctf_all = None
    if args.ctf:
        ctf_all = ctf_images(ctf_params, box, angpix, args.ctf_phase_flipped, args.ctf_intact_first_peak)
    return table, angpix, box, sym_ops, ref.astype(np.float64), mask, halves, ctf_all


def ctf_images(params: list, box: int, angpix: float, phase_flipped: bool = False,
               intact_first_peak: bool = False) -> np.ndarray:
    """CTFs ``(n, N, N//2+1)`` of the particles as the E-step and back-projection use them (RELION
    ``CTF::getCTF``): with ``intact_first_peak`` the CTF is 1 (times envelope and scale) wherever the
    phase ``|gamma| < pi/2``, i.e. up to its first peak; ``phase_flipped`` takes ``|CTF|``."""
    out = ctf_rfft_stack(params, box, angpix)
    if intact_first_peak:
        ky, kx = frequency_grid((box, box))
        for i, p in enumerate(params):
            gamma, env = _gamma_and_envelope(p, kx / (box * angpix), ky / (box * angpix))
            out[i] = np.where(np.abs(gamma) < np.pi / 2, env * p.scale, out[i])
    return np.abs(out) if phase_flipped else out


def load_images(table, rows: np.ndarray, box: int) -> np.ndarray:
    """The images of ``rows`` of a particle table, (n, box, box) float32, read stack by stack
    (ProgramError naming the STAR file for a missing stack or NaN/Inf values)."""
    locs = table.image_locations()
    images = np.empty((len(rows), box, box), np.float32)
    by_stack: dict[str, list[int]] = {}
    for j, r in enumerate(rows):
        by_stack.setdefault(locs[r][1], []).append(j)
    for stack, js in by_stack.items():
        spath = table.resolve(stack)
        if not Path(spath).exists():
            raise ProgramError(f"particle STAR file {table.path}: image stack {stack} does not exist")
        images[js] = read_stack_images(spath, [locs[rows[j]][0] for j in js])
        bad = ~np.isfinite(images[js]).all(axis=(1, 2))
        if bad.any():
            first = int(locs[rows[js[int(np.argmax(bad))]]][0])
            raise ProgramError(f"particle STAR file {table.path}: image stack {spath} contains NaN or Inf values "
                               f"(image {first}, {int(bad.sum())} image(s) in this half set)")
    return images


def _load_half(table, rows: np.ndarray, half: int, box: int, angpix: float, ctf_all) -> HalfSet:
    images = load_images(table, rows, box)
    ang = table.angles_deg()[rows]
    ctf = ctf_all[rows] if ctf_all is not None else np.ones((len(rows), box, box // 2 + 1), np.float32)
    return HalfSet(half, rows, images, ctf, table.origins_px()[rows],
                   euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2]))


def particle_groups(table) -> tuple[np.ndarray, list[str]]:
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


def input_norms(table) -> np.ndarray:
    """rlnNormCorrection of every particle (1 where the column is absent); must be positive."""
    parts = table.particles
    if L.NORM_CORRECTION not in parts.columns:
        return np.ones(len(parts))
    norm = parts[L.NORM_CORRECTION].to_numpy(np.float64)
    if not (np.isfinite(norm).all() and (norm > 0).all()):
        raise ProgramError(f"particle STAR file {table.path}: {L.NORM_CORRECTION} must be positive")
    return norm


def _updated_norms(x: np.ndarray, iy: np.ndarray, ix: np.ndarray, box: int, res: list, norm: np.ndarray,
                   factor: np.ndarray, avg_norm: float) -> np.ndarray:
    """New rlnNormCorrection: ``norm / avg_norm * sqrt(2 wsum)`` with ``wsum`` the posterior-weighted
    residual power of the (corrected) image up to the current size plus its power beyond it up to
    Nyquist (RELION ``exp_wsum_norm_correction``; ``x`` is the uncorrected transform)."""
    fy, fx, _ = pixel_list(box, box / 2.0 + 0.5)
    beyond = (np.abs(x[:, fy, fx]) ** 2).sum(1, dtype=np.float64) - (np.abs(x[:, iy, ix]) ** 2).sum(1, dtype=np.float64)
    wsum = np.array([r.resid2 for r in res]) + np.maximum(beyond, 0.0) * factor ** 2
    return norm / avg_norm * np.sqrt(2.0 * np.maximum(wsum, 1e-30))


def updated_scales(xa: np.ndarray, aa: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Group scale corrections ``sum XA / sum AA`` (1 where ``AA`` is 0), clipped to
    ``[median/5, 5 median]`` and renormalised to a particle-weighted mean of 1 (RELION
    ``maximizationOtherParameters``)."""
    scale = np.where(aa > 0, xa / np.where(aa > 0, aa, 1.0), 1.0)
    med = np.sort(scale)[len(scale) // 2]
    if med > 0:
        scale = np.clip(scale, med / 5.0, med * 5.0)
    mean = (counts * scale).sum() / max(counts.sum(), 1)
    return scale / mean if mean > 0 else np.ones_like(scale)


def _initial_sums(hs: HalfSet | None, mask_radius: float, box: int, zero_mask: bool) -> np.ndarray:
    """Per-pixel sums ``[sum |X|^2, sum Re X, sum Im X, n]`` of the masked images (rank-local; they are
    summed over the ranks before :func:`_initial_sigma2`)."""
    iy, ix, k = pixel_list(box, box / 2 + 1)
    out = np.zeros(3 * len(k) + 1)
    if hs is None or len(hs.rows) == 0:
        return out
    x, _ = prepare_images(hs.images, hs.offsets_px, mask_radius, MASK_EDGE_PX, zero_mask)
    xs = x[:, iy, ix].astype(np.complex128)
    out[:len(k)] = (np.abs(xs) ** 2).sum(0)
    out[len(k):2 * len(k)] = xs.real.sum(0)
    out[2 * len(k):3 * len(k)] = xs.imag.sum(0)
    out[-1] = len(xs)
    return out


def _initial_sigma2(sums: np.ndarray, box: int) -> np.ndarray:
    """Mean power of the masked images minus the power of their mean, per shell, per component."""
    _, _, k = pixel_list(box, box / 2 + 1)
    shells = np.rint(np.sqrt((k ** 2).sum(1))).astype(np.int64)
    m = len(k)
    cnt_img = max(sums[-1], 1.0)
    mean = (sums[m:2 * m] + 1j * sums[2 * m:3 * m]) / cnt_img
    n = box // 2 + 1
    sel = shells < n
    pw = sums[:m] / cnt_img - np.abs(mean) ** 2
    cnt = np.bincount(shells[sel], minlength=n)[:n]
    s2 = np.bincount(shells[sel], pw[sel], n)[:n] / np.maximum(cnt, 1) / 2.0
    for i in range(1, n):
        if s2[i] <= 1e-14:
            s2[i] = s2[i - 1]
    s2[0] = max(s2[0], s2[1])
    return s2


# ----------------------------------------------------------------------------------------- M-step
def _solvent_corrected_fsc(h1: np.ndarray, h2: np.ndarray, mask: np.ndarray, current_size: int,
                           seed: int) -> np.ndarray:
    """RELION ``reconstructUnregularisedMapAndCalculateSolventCorrectedFSC``."""
    unmasked = map_fsc(h1, h2)
    at = phase_randomization_shell(unmasked, 0.8)
    if at is None:
        out = unmasked
    else:
        masked = map_fsc(h1 * mask, h2 * mask)
        r1 = randomize_phases_beyond(h1, at, seed) * mask
        r2 = randomize_phases_beyond(h2, at, seed + 1) * mask
        out = refine_fsc_true(masked, map_fsc(r1, r2), at)
    out = out.copy()
    out[current_size // 2:] = 0.0
    out[0] = 1.0
    return out


def _join_low_res(d1, w1, d2, w2, join_shell: int, pad: int):
    if join_shell <= 0:
        return d1, w1, d2, w2
    low = grid_shells(d1.shape[0], pad) <= join_shell
    d = np.where(low, 0.5 * (d1 + d2), 0)
    w = np.where(low, 0.5 * (w1 + w2), 0)
    return (np.where(low, d, d1), np.where(low, w, w1), np.where(low, d, d2), np.where(low, w, w2))


# ------------------------------------------------------------------------------------------ output
def _model_tables(state: dict, fsc: np.ndarray, ssnr: np.ndarray, sigma2: np.ndarray, box: int,
                  angpix: float, groups: pd.DataFrame) -> dict:
    n = box // 2 + 1
    idx = np.arange(n)
    res_inv = idx / (box * angpix)
    res_a = np.where(idx > 0, box * angpix / np.maximum(idx, 1), 999.0)
    general = {
        "rlnReferenceDimensionality": 3, "rlnDataDimensionality": 2, "rlnOriginalImageSize": box,
        L.CURRENT_RESOLUTION: state["resolution_a"], L.CURRENT_IMAGE_SIZE: state["current_size"],
        L.PADDING_FACTOR: state["pad"], "rlnIsHelix": 0, "rlnFourierSpaceInterpolator": 1,
        "rlnMinRadiusNnInterpolation": 10, "rlnPixelSize": angpix, "rlnNrClasses": 1, "rlnNrBodies": 1,
        "rlnNrGroups": len(groups), "rlnNrOpticsGroups": 1, L.TAU2_FUDGE_FACTOR: state["tau2_fudge"],
        L.NORM_CORRECTION_AVERAGE: state["avg_norm"], L.SIGMA_OFFSETS_ANGST: state["sigma_offset_a"],
        L.ORIENTATIONAL_PRIOR_MODE: int(state["local"]),
        "rlnSigmaPriorRotAngle": state["local_sigma_deg"], "rlnSigmaPriorTiltAngle": state["local_sigma_deg"],
        "rlnSigmaPriorPsiAngle": state["local_sigma_deg"], L.LOG_LIKELIHOOD: state["loglik"],
        L.AVERAGE_PMAX: state["ave_pmax"],
        "rlnHealpixOrder": state["healpix_order"], "rlnOffsetRange": state["offset_range_px"],
        "rlnOffsetStep": state["offset_step_px"],
    }
    classes = pd.DataFrame({L.REFERENCE_IMAGE: [state["reference_image"]], L.CLASS_DISTRIBUTION: [1.0],
                            L.ACCURACY_ROTATIONS: [state["acc_rot"]],
                            L.ACCURACY_TRANSLATIONS_ANGST: [state["acc_trans_a"]],
                            L.ESTIMATED_RESOLUTION: [state["resolution_a"]],
                            L.OVERALL_FOURIER_COMPLETENESS: [1.0]})
    class1 = pd.DataFrame({L.SPECTRAL_INDEX: idx, L.RESOLUTION: res_inv, L.ANGSTROM_RESOLUTION: res_a,
                           L.SSNR_MAP: ssnr[:n], L.GOLD_STANDARD_FSC: fsc[:n],
                           L.FOURIER_COMPLETENESS: np.ones(n)})
    optics = pd.DataFrame({L.SPECTRAL_INDEX: idx, L.RESOLUTION: res_inv, L.SIGMA2_NOISE: sigma2[:n]})
    return {"model_general": general, "model_classes": classes, "model_class_1": class1,
            "model_groups": groups, "model_optics_group_1": optics}


def _sampling_tables(sched: AutoSampling, orient: OrientationGrid, sym: str, perturb_instance: float) -> dict:
    """``<o>_sampling.star`` as RELION writes it: the sampling of the iteration and its directions
    (the asymmetric unit for global searches, the whole sphere for local ones)."""
    general = {
        "rlnIs3DSampling": 1, "rlnIs3DTranslationalSampling": 0, "rlnHealpixOrder": sched.healpix_order,
        "rlnHealpixOrderOriginal": sched.healpix_order, "rlnTiltAngleLimit": -91.0,
        "rlnPsiStep": orient.psi_step, "rlnPsiStepOriginal": orient.psi_step,
        "rlnOffsetRange": sched.offset_range_px, "rlnOffsetStep": sched.offset_step_px,
        "rlnOffsetRangeOriginal": sched.offset_range_px, "rlnOffsetStepOriginal": sched.offset_step_px,
        "rlnHelicalOffsetStep": -1.0, "rlnSamplingPerturbInstance": perturb_instance,
        "rlnSamplingPerturbFactor": PERTURB_FACTOR, "rlnSymmetryGroup": sym.upper(),
        "rlnIsFlip": 0, "rlnOrientationalPriorMode": int(sched.local),
        "rlnSigmaPriorRotAngle": sched.local_sigma_deg or 0.0, "rlnSigmaPriorTiltAngle": sched.local_sigma_deg or 0.0,
        "rlnSigmaPriorPsiAngle": sched.local_sigma_deg or 0.0,
    }
    dirs = pd.DataFrame({L.ANGLE_ROT: orient.directions[:, 0], L.ANGLE_TILT: orient.directions[:, 1]})
    return {"sampling_general": general, "sampling_directions": dirs}


def _data_table(table, halves_state: list[HalfSet], angpix: float):
    out = table.subset(np.arange(len(table)))
    parts = out.particles.copy()
    n = len(parts)
    cols = {c: np.zeros(n) for c in (L.ANGLE_ROT, L.ANGLE_TILT, L.ANGLE_PSI, L.ORIGIN_X_ANGST, L.ORIGIN_Y_ANGST,
                                     L.MAX_VALUE_PROB_DISTRIBUTION, L.LOG_LIKELI_CONTRIBUTION)}
    nsig = np.zeros(n, np.int64)
    subset = np.zeros(n, np.int64)
    norm = np.ones(n)
    group = np.zeros(n, np.int64)
    from ..core.geometry import matrix_to_euler
    for hs in halves_state:
        rot, tilt, psi = matrix_to_euler(hs.mats)
        cols[L.ANGLE_ROT][hs.rows], cols[L.ANGLE_TILT][hs.rows], cols[L.ANGLE_PSI][hs.rows] = rot, tilt, psi
        cols[L.ORIGIN_X_ANGST][hs.rows] = hs.offsets_px[:, 0] * angpix
        cols[L.ORIGIN_Y_ANGST][hs.rows] = hs.offsets_px[:, 1] * angpix
        cols[L.MAX_VALUE_PROB_DISTRIBUTION][hs.rows] = hs.pmax
        cols[L.LOG_LIKELI_CONTRIBUTION][hs.rows] = hs.loglik
        nsig[hs.rows] = hs.n_sig
        subset[hs.rows] = hs.half
        norm[hs.rows] = hs.norm
        group[hs.rows] = hs.group
    for c, v in cols.items():
        parts[c] = v
    parts[L.CLASS_NUMBER] = 1
    parts[L.NORM_CORRECTION] = norm
    if L.GROUP_NUMBER not in parts.columns:
        parts[L.GROUP_NUMBER] = group + 1
    parts[L.NR_OF_SIGNIFICANT_SAMPLES] = nsig
    parts[L.RANDOM_SUBSET] = subset
    out.particles = parts
    return out


# ------------------------------------------------------------------------------------------ resume
OPTIMISER_VERSION = 3
RESUME_KEEP = ("o", "j", "device", "continue_from")  # options that --continue may change (and --iter if given)


def _write_optimiser(it_root: str, args, seed: int, iteration: int, final: bool, current_size: int,
                     resolution_a: float, acc_rot: float, acc_trans_px: float, angpix: float, sched: AutoSampling,
                     sigma2: np.ndarray, sigma_off: float, mats: np.ndarray, offsets: np.ndarray,
                     corr: dict) -> None:
    """``<it_root>_optimiser.star`` (readable state, written last: its presence marks a complete
    iteration) and ``<it_root>_optimiser.npz`` (exact arrays: poses, noise spectra, options)."""
    import json
    from dataclasses import asdict

    npz = f"{it_root}_optimiser.npz"
    tmp = str(Path(npz).with_name(f".{Path(npz).name}.tmp{os.getpid()}.npz"))  # hidden temporary
    opts = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    state = {"seed": seed, "iteration": iteration, "final": final, "current_size": current_size,
             "resolution_a": resolution_a, "acc_rot": acc_rot, "acc_trans_px": acc_trans_px,
             "sigma_off": sigma_off, "avg_norm": corr["avg_norm"]}  # exact (json floats round-trip)
    np.savez(tmp, mats=mats, offsets=offsets, sigma2=sigma2, norm=corr["norm"],
             scale=corr["scale"], ssnr=corr["ssnr"],
             options=np.array(json.dumps(opts, default=str)), schedule=np.array(json.dumps(asdict(sched))),
             state=np.array(json.dumps(state)))
    os.replace(tmp, npz)
    general = {
        "rlnOutputRootName": str(args.o), "rlnModelStarFile": f"{it_root}_model.star",
        "rlnExperimentalDataStarFile": f"{it_root}_data.star", "rlnCurrentIteration": iteration,
        "rlnNumberOfIterations": args.iter, "rlnRandomSeed": seed, "rlnDoAutoRefine": 1,
        "rlnDoSplitRandomHalves": 1, "rlnJoinHalvesUntilThisResolution": args.low_resol_join_halves,
        "rlnParticleDiameter": args.particle_diameter, "rlnDoCorrectCtf": int(args.ctf),
        "rlnAutoLocalSearchesHealpixOrder": args.auto_local_healpix_order,
        "rlnNumberOfIterWithoutResolutionGain": sched.nr_iter_wo_resol_gain,
        "rlnBestResolutionThusFar": sched.best_resolution_inv_a,
        "rlnNumberOfIterWithoutChangingAssignments": sched.nr_iter_wo_large_changes,
        "rlnSmallestChangesOrientations": sched.smallest_angle_change,
        "rlnSmallestChangesOffsets": sched.smallest_offset_change,
        "rlnHasConverged": int(final), "rlnCurrentResolution": resolution_a, "rlnCurrentImageSize": current_size,
        "rlnAccuracyRotations": acc_rot, "rlnAccuracyTranslationsAngst": acc_trans_px * angpix,
        "rlnSigmaOffsetsAngst": sigma_off,
        "rlnPolishOptimiserArrays": npz, "rlnPolishOptimiserVersion": OPTIMISER_VERSION,
        "rlnPolishReferenceHalf1": f"{it_root}_half1_class001.mrc",
        "rlnPolishReferenceHalf2": f"{it_root}_half2_class001.mrc",
    }
    write_star(f"{it_root}_optimiser.star", {"optimiser_general": general})


def _read_optimiser(path: str) -> dict:
    """State of ``--continue <o>_itNNN_optimiser.star`` (ProgramError when it is unusable)."""
    import json

    from ..io.star import read_star

    p = Path(path)
    if not p.exists():
        raise ProgramError(f"--continue: optimiser file {p} does not exist")
    try:
        g = read_star(p)["optimiser_general"].iloc[0]
        if int(g["rlnPolishOptimiserVersion"]) != OPTIMISER_VERSION:
            raise ProgramError(f"--continue: optimiser file {p} was written by another version")
        npz_path = Path(str(g["rlnPolishOptimiserArrays"]))
        with np.load(npz_path) as z:
            arrays = {k: z[k] for k in z.files}
        refs = {h: read_mrc(str(g[f"rlnPolishReferenceHalf{h}"]))[0].astype(np.float64) for h in (1, 2)}
    except ProgramError:
        raise
    except (KeyError, StarError, OSError, ValueError) as exc:
        raise ProgramError(f"--continue: optimiser file {p} or the files it names cannot be read ({exc})") from exc
    return {"general": g, "options": json.loads(str(arrays["options"])), "state": json.loads(str(arrays["state"])),
            "schedule": json.loads(str(arrays["schedule"])), "arrays": arrays, "refs": refs}


def _estep_ops(device):
    """The E-step backend for ``--device`` (:func:`estep_cl.select_ops`; its errors as ProgramError)."""
    from ..core.opencl import estep_cl, runtime

    try:
        return estep_cl.select_ops(device)
    except runtime.OpenCLUnavailable as exc:
        raise ProgramError(str(exc)) from exc


# -------------------------------------------------------------------------------------------- main
def main(args: argparse.Namespace) -> int:
    comm = get_comm()
    t_start = time.time()
    resume = None
    if args.continue_from:
        resume = _read_optimiser(args.continue_from)
        for k, v in resume["options"].items():
            given = getattr(args, k, None) is not None
            if hasattr(args, k) and not (k in RESUME_KEEP and given) and not (k == "iter" and args.iter is not None):
                setattr(args, k, v)  # the original run's option (--device too, unless given again)
    elif not args.i or not args.ref:
        raise ProgramError("refine3d needs --i and --ref (or --continue <o>_itNNN_optimiser.star)")
    if args.iter is None:
        args.iter = 999
    table, angpix, box, sym_ops, ref, mask, halves, ctf_all = _read_inputs(args)
    ops = _estep_ops(args.device)
    diameter = args.particle_diameter if args.particle_diameter > 0 else 0.8 * box * angpix
    mask_radius = min(diameter / (2 * angpix), box / 2 - 1)
    pad = args.pad
    seed = args.random_seed if args.random_seed >= 0 else int(time.time()) % 100000
    seed = comm.bcast(seed)
    out_root = Path(args.o)
    if comm.is_leader:
        out_root.parent.mkdir(parents=True, exist_ok=True)
    # half sets on ranks: rank r works on half (r % 2) + 1 with its share of that half's particles
    my_halves = [1, 2] if comm.size == 1 else [comm.rank % 2 + 1]
    local: dict[int, HalfSet] = {}
    group_idx, group_names = particle_groups(table)
    norm_in = input_norms(table)
    for h in my_halves:
        rows = np.nonzero(halves == h)[0]
        if comm.size > 1:
            peers = [r for r in range(comm.size) if r % 2 + 1 == h]
            rows = rows[list(partition(len(rows), len(peers), peers.index(comm.rank)))]
        local[h] = _load_half(table, rows, h, box, angpix, ctf_all)
        local[h].norm, local[h].group = norm_in[rows], group_idx[rows]
    # initial noise from all particles (per-pixel sums over the ranks, so any rank count gives the same);
    # as in RELION the halves share everything but their reconstructions (noise, offsets sigma, corrections)
    init = comm.allreduce_sum(sum(_initial_sums(local.get(h), mask_radius, box, args.zero_mask) for h in (1, 2)))
    sigma2 = _initial_sigma2(init, box)
    sigma_off = 10.0  # Å
    group_counts = np.bincount(group_idx, minlength=len(group_names)).astype(np.float64)
    scale = np.ones(len(group_names))  # rlnGroupScaleCorrection
    avg_norm = float(norm_in.mean())  # so that a set normalised by an earlier run starts unchanged
    ssnr_prev = None  # data_vs_prior of the previous iteration: the shells of the scale products
    acc_rows = np.nonzero(halves == 1)[0][:20]  # the particles of the accuracy estimate (rank-independent)
    solvent = mask if mask is not None else raised_cosine_sphere((box,) * 3, mask_radius, MASK_EDGE_PX)
    start = low_pass_map(ref, args.ini_high, angpix)
    refs = {1: start, 2: start}
    sched = AutoSampling(args.healpix_order, args.offset_range, args.offset_step, args.auto_local_healpix_order)
    maxres = max(int(round(box * angpix / args.ini_high)), 5)
    current_size = image_size(maxres, box, INCR_SIZE, 0.0, False)
    resolution_a = box * angpix / maxres
    acc_rot, acc_trans = 999.0, 999.0
    grids: dict = {}
    final = False
    iteration = 0
    if resume is not None:
        st, arr = resume["state"], resume["arrays"]
        seed, iteration, final = int(st["seed"]), int(st["iteration"]), bool(st["final"])
        current_size, resolution_a = int(st["current_size"]), float(st["resolution_a"])
        acc_rot, acc_trans = float(st["acc_rot"]), float(st["acc_trans_px"])
        sched = AutoSampling(**resume["schedule"])
        refs = resume["refs"]
        sigma2, sigma_off = arr["sigma2"], float(st["sigma_off"])
        if len(arr["mats"]) != len(table):
            raise ProgramError(f"--continue: optimiser file {args.continue_from} holds {len(arr['mats'])} "
                               f"particles but {args.i} has {len(table)}")
        avg_norm, scale, ssnr_prev = float(st["avg_norm"]), arr["scale"], arr["ssnr"]
        for hs in local.values():
            hs.mats, hs.offsets_px = arr["mats"][hs.rows], arr["offsets"][hs.rows]
            hs.norm = arr["norm"][hs.rows]
        log.info("--continue: iteration %d of %s restored; continuing with iteration %d%s", iteration,
                 args.continue_from, iteration + 1, " (final)" if final else "")
    while True:
        iteration += 1
        t0 = time.time()
        if final:
            current_size = box
        coarse = min(current_size, max(coarse_image_size(box, angpix, angular_step_deg(sched.healpix_order),
                                                         diameter), 2 * 5))
        iy, ix, k2d = pixel_list(box, current_size / 2.0)
        shells = np.rint(np.sqrt((k2d ** 2).sum(1))).astype(np.int64)
        scale_pix = None if ssnr_prev is None else ssnr_prev[np.minimum(shells, len(ssnr_prev) - 1)] > 3.0
        key = (sched.healpix_order, sched.local)
        if key not in grids:
            grids = {key: OrientationGrid(sched.healpix_order, None if sched.local else sym_ops)}
        orient = grids[key]
        rng = np.random.default_rng(seed + iteration)
        perturb_instance = float(rng.uniform(-PERTURB_FACTOR, PERTURB_FACTOR))
        perturb = perturbation_matrix(perturb_instance, angular_step_deg(sched.healpix_order))
        bps = {h: Backprojector(box, pad) for h in (1, 2)}
        noise = {h: NoiseAccumulator(box // 2 + 1) for h in (1, 2)}
        stats = np.zeros((2, 6))  # per half: n, sum dangle, sum doff2, sum pmax, sum off-change2, loglik
        acc_sums = np.zeros(3)  # sum acc_rot, sum acc_trans, n over the accuracy particles
        cc_iter = bool(args.firstiter_cc) and iteration == 1
        corrections = (args.norm or args.scale) and not cc_iter
        scale_sums = np.zeros((2, len(scale)))  # sum XA, sum AA per group
        for h, hs in local.items():
            ref_map = refs[h] * solvent if (args.flatten_solvent and not final) else refs[h]
            grid3d = map_to_grid(ref_map, pad)
            settings = EStepSettings(box=box, angpix=angpix, pad=pad, coarse_radius=coarse / 2.0,
                                     current_radius=current_size / 2.0, offset_range_px=sched.offset_range_px,
                                     offset_step_px=sched.offset_step_px, sigma_offset_a=sigma_off,
                                     local_sigma_deg=sched.local_sigma_deg if sched.local else None,
                                     perturbation=perturb, max_significant=args.maxsig, cc=cc_iter,
                                     corrections=corrections, scale_pixels=scale_pix, ops=ops)
            x, rounded = prepare_images(hs.images, hs.offsets_px, mask_radius, MASK_EDGE_PX, args.zero_mask)
            xs, cs = x[:, iy, ix], hs.ctf[:, iy, ix]
            norm_factor = avg_norm / hs.norm if args.norm else np.ones(len(hs.rows))
            if args.norm:
                xs = xs * norm_factor[:, None].astype(np.float32)
            if args.scale:
                cs = cs * scale[hs.group][:, None].astype(np.float32)
            s2pix = sigma2[np.minimum(shells, len(sigma2) - 1)]
            # with CC the reference's scale is arbitrary: its residuals say nothing about the noise
            res = expectation(grid3d, orient, xs, cs, s2pix, k2d, shells, hs.offsets_px, rounded, hs.mats,
                              settings, bps[h], None if settings.cc else noise[h])
            new_mats = euler_to_matrix(*np.array([r.angles for r in res]).T)
            new_off = np.array([r.origin_px for r in res])
            dang = symmetry_aware_angle_deg(new_mats, hs.mats, sym_ops)
            stats[h - 1] = [len(res), dang.sum(), ((new_off - hs.offsets_px) ** 2).sum(),
                            sum(r.pmax for r in res), sum(r.offset_change2_a2 for r in res),
                            -sum(r.min_diff2 for r in res)]
            hs.mats, hs.offsets_px = new_mats, new_off
            hs.pmax = np.array([r.pmax for r in res])
            hs.n_sig = np.array([r.n_significant for r in res])
            hs.loglik = np.array([-r.min_diff2 for r in res])
            if corrections and args.norm:
                hs.norm = _updated_norms(x, iy, ix, box, res, hs.norm, norm_factor, avg_norm)
            if corrections and args.scale:  # products with the unscaled CTF: the E-step's carries the old scale
                s_old = scale[hs.group]
                scale_sums += [np.bincount(hs.group, np.array([r.xa for r in res]) / s_old, len(scale)),
                               np.bincount(hs.group, np.array([r.aa for r in res]) / s_old ** 2, len(scale))]
            sub = np.nonzero(np.isin(hs.rows, acc_rows))[0] if h == 1 and not final else np.zeros(0, np.int64)
            if sub.size:
                a_rot, a_trans = expected_accuracies(grid3d, new_mats[sub], cs[sub], s2pix, k2d, box, pad,
                                                     per_particle=True)
                acc_sums += [a_rot.sum(), a_trans.sum(), len(sub)]
        # combine over ranks
        stats = comm.allreduce_sum(stats)
        if corrections and args.norm:
            norm_sum = comm.allreduce_sum(np.array([sum(hs.norm.sum() for hs in local.values()),
                                                    sum(len(hs.norm) for hs in local.values())], np.float64))
            avg_norm = float(norm_sum[0] / max(norm_sum[1], 1))
        if corrections and args.scale:
            scale_sums = comm.allreduce_sum(scale_sums)
            scale = updated_scales(scale_sums[0], scale_sums[1], group_counts)
        if not final:
            acc_sums = comm.allreduce_sum(acc_sums)
            acc_rot, acc_trans = acc_sums[0] / max(acc_sums[2], 1), acc_sums[1] / max(acc_sums[2], 1)
        dw = {}
        for h in (1, 2):
            bps[h].flush()
            data = comm.allreduce_sum(bps[h].data)
            weight = comm.allreduce_sum(bps[h].weight)
            bps[h].data, bps[h].weight = data, weight
            dw[h] = bps[h].finalised(sym_ops)
        # noise spectra and the offsets' sigma from both halves (RELION combineWeightedSumsTwoRandomHalves)
        nz = NoiseAccumulator(box // 2 + 1)
        sums = comm.allreduce_sum(np.concatenate([noise[1].wsum + noise[2].wsum, noise[1].count + noise[2].count]))
        nz.wsum, nz.count = sums[:len(nz.wsum)], sums[len(nz.wsum):]
        sigma2 = nz.sigma2(sigma2)
        sigma_off = float(np.sqrt(max(stats[:, 4].sum() / (2 * max(stats[:, 0].sum(), 1)), MIN_SIGMA2_OFFSET_A2)))
        (d1, w1), (d2, w2) = dw[1], dw[2]
        unfil = {h: grid_to_map(regularised_grid(*dw[h], None, pad, box), box) for h in (1, 2)}
        if args.solvent_correct_fsc:
            fsc = _solvent_corrected_fsc(unfil[1], unfil[2], mask, current_size, seed + iteration)
        else:
            fsc = halfgrid_fsc(d1, w1, d2, w2, pad, box)
            fsc[current_size // 2:] = 0.0
        ssnr = ssnr_from_fsc(fsc, joined=final, tau2_fudge=args.tau2_fudge)
        ssnr_prev = ssnr
        n_tot = max(stats[:, 0].sum(), 1)
        ave_pmax = float(stats[:, 3].sum() / n_tot)
        it_root = f"{out_root}_it{iteration:03d}"
        if final:
            joined = regularised_grid(d1 + d2, w1 + w2, ssnr, pad, box, tau2_fudge=args.tau2_fudge)
            final_map = grid_to_map(joined, box)
            resolution_a = box * angpix / max(resolution_shell(fsc, 0.143), 1)
        else:
            join_shell = int(np.ceil(box * angpix / max(args.low_resol_join_halves, resolution_a))) \
                if args.low_resol_join_halves > 0 else 0
            d1, w1, d2, w2 = _join_low_res(d1, w1, d2, w2, join_shell, pad)
            for h, (d, w) in ((1, (d1, w1)), (2, (d2, w2))):
                refs[h] = grid_to_map(regularised_grid(d, w, ssnr, pad, box, tau2_fudge=args.tau2_fudge), box) \
                    .astype(np.float32).astype(np.float64)  # as written: --continue restarts from the file
            maxres = resolution_shell_from_ssnr(ssnr)
            resolution_a = box * angpix / maxres
            high_at_limit = bool(fsc[max(current_size // 2 - 1, 0)] > 0.2)
        ang_change = float(stats[:, 1].sum() / n_tot)
        off_change = float(np.sqrt(stats[:, 2].sum() / (2 * n_tot)))
        state = dict(resolution_a=resolution_a, current_size=current_size, pad=pad, tau2_fudge=args.tau2_fudge,
                     sigma_offset_a=sigma_off, local=sched.local,
                     local_sigma_deg=sched.local_sigma_deg or 0.0, loglik=float(stats[:, 5].sum()),
                     ave_pmax=ave_pmax, healpix_order=sched.healpix_order, avg_norm=avg_norm,
                     offset_range_px=sched.offset_range_px, offset_step_px=sched.offset_step_px,
                     acc_rot=acc_rot, acc_trans_a=acc_trans * angpix,
                     reference_image=f"{it_root}_class001.mrc" if final else f"{it_root}_half1_class001.mrc")
        # gather poses of all particles for the data file
        all_halves = comm.allgather([HalfSet(hs.half, hs.rows, np.zeros(0), np.zeros(0), hs.offsets_px, hs.mats,
                                             pmax=hs.pmax, n_sig=hs.n_sig, loglik=hs.loglik, norm=hs.norm,
                                             group=hs.group)
                                     for hs in local.values()])
        all_halves = [hs for part in all_halves for hs in part]
        if comm.is_leader:
            groups = pd.DataFrame({L.GROUP_NUMBER: np.arange(1, len(scale) + 1), L.GROUP_NAME: group_names,
                                   L.GROUP_NR_PARTICLES: group_counts.astype(np.int64),
                                   L.GROUP_SCALE_CORRECTION: scale})
            model = _model_tables(state, fsc, ssnr, sigma2, box, angpix, groups)
            data = _data_table(table, all_halves, angpix)
            write_star(f"{it_root}_model.star", model)
            sampling = _sampling_tables(sched, orient, args.sym, perturb_instance)
            write_star(f"{it_root}_sampling.star", sampling)
            write_particles(f"{it_root}_data.star", data)
            if final:
                write_mrc(f"{it_root}_class001.mrc", final_map, angpix)
                write_mrc(f"{out_root}_class001.mrc", final_map, angpix)
                for h in (1, 2):
                    write_mrc(f"{out_root}_half{h}_class001_unfil.mrc", unfil[h], angpix)
                write_star(f"{out_root}_model.star", model)
                write_star(f"{out_root}_sampling.star", sampling)
                write_particles(f"{out_root}_data.star", data)
            else:
                for h in (1, 2):
                    write_mrc(f"{it_root}_half{h}_class001.mrc", refs[h], angpix)
            log.info("iteration %d%s: resolution %.2f Å, image size %d (coarse %d), healpix order %d%s "
                     "(%.2f°), offsets %.2f/%.2f px, changes: angles %.2f°, offsets %.2f px, Pmax %.3f, "
                     "acc %.2f° %.2f px, %.1f s (total %.1f s)", iteration, " (final, halves joined)" if final else "",
                     resolution_a, current_size, coarse, sched.healpix_order, " local" if sched.local else "",
                     sched.fine_step_deg, sched.offset_range_px, sched.offset_step_px, ang_change, off_change,
                     ave_pmax, acc_rot, acc_trans, time.time() - t0, time.time() - t_start)
        if final:
            break
        # auto-sampling and convergence
        sched.record_resolution(resolution_a)
        sched.record_changes(ang_change, off_change)
        if iteration > 1:
            sched.update(acc_rot, acc_trans, off_change)
        current_size = image_size(maxres, box, INCR_SIZE, ave_pmax, high_at_limit)
        final = sched.converged() or iteration + 1 >= args.iter
        if comm.is_leader:
            mats_all = np.zeros((len(table), 3, 3))
            offs_all = np.zeros((len(table), 2))
            norm_all = np.ones(len(table))
            for hs in all_halves:
                mats_all[hs.rows], offs_all[hs.rows], norm_all[hs.rows] = hs.mats, hs.offsets_px, hs.norm
            _write_optimiser(it_root, args, seed, iteration, final, current_size, resolution_a, acc_rot,
                             acc_trans, angpix, sched, sigma2, sigma_off, mats_all, offs_all,
                             dict(norm=norm_all, scale=scale, ssnr=ssnr, avg_norm=avg_norm))
    comm.barrier()
    if comm.is_leader:
        log.info("final resolution (FSC 0.143%s): %.2f Å after %d iterations",
                 ", solvent-corrected" if args.solvent_correct_fsc else "", resolution_a, iteration)
    return 0


def run() -> None:
    from ._cli import run as _run
    import sys

    _run(["refine3d"] + sys.argv[1:])
