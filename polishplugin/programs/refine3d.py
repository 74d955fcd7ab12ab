"""3D auto-refine with gold-standard half sets (RELION relion_refine --auto_refine --split_random_halves).

Each half set (rlnRandomSubset 1/2) is refined independently against its own reference, starting
from --ref low-passed to --ini_high; the halves are averaged only below --low_resol_join_halves Å.
Every iteration: E-step (marginalisation over HEALPix orientations and offsets, adaptive
oversampling, local searches once the sampling reaches --auto_local_healpix_order), M-step
(symmetrised reconstruction regularised by the gold-standard FSC), noise and offset-prior update,
resolution, image size and auto-sampling.  On convergence a final iteration joins the halves.

The final resolution (log, <o>_model.star rlnCurrentResolution and rlnGoldStandardFsc) is the FSC = 0.143
crossing of the written unfiltered half maps <o>_half1/2_class001_unfil.mrc (solvent-corrected with
--solvent_correct_fsc), as RELION reports it; earlier iterations use the FSC of the half sets' Fourier grids.

Outputs: <o>_class001.mrc, <o>_half1_class001_unfil.mrc, <o>_half2_class001_unfil.mrc, <o>_data.star,
<o>_model.star, <o>_sampling.star and per iteration <o>_it###_half{1,2}_class001.mrc, <o>_it###_data.star,
<o>_it###_model.star, <o>_it###_sampling.star, <o>_it###_optimiser.star (+ .npz with the exact poses, noise
spectra, schedule and options; written last, so it marks a complete iteration).  A killed run continues with
--continue <o>_it###_optimiser.star (RELION's option: the original options are reused; give --o, and optionally
--iter/--j).  With several MPI ranks the noise spectra, offset sigmas and accuracy estimates are summed over the
ranks, so 1, 2 or 3 ranks give the same outputs (within float rounding).

Options users reach for (RELION's semantics): --solvent_mask2 (in solvent flattening the region of a second
mask is set to its own mean density, e.g. a micelle or a virion's interior); --auto_ignore_angles and
--auto_resol_angles (the GUI's "Use finer angular sampling faster?": auto-sampling goes finer, and converges,
despite changes still happening in the angles, and also when the resolution asks for a finer step at the
particle's edge; saved with the schedule for --continue); --preread_images (all images are held in memory
anyway, each rank its own) and --scratch_dir/--keep_free_scratch (the first rank on each host copies the stacks
to a new folder on that host's scratch disk while it keeps that much free, the host's ranks read from there,
and the folders are removed once every rank has read its images - RELION keeps them to the end because it
reads images every iteration; the host is MPI's processor name, or $POLISHPLUGIN_HOST where set).

Within an iteration the log tells, at most every 10 s, how many particles are done (of this rank's) and
about how long the E-step has left.

Normalisation and scale corrections (--norm, --scale): each particle's image is multiplied by
avg_norm / rlnNormCorrection before the E-step and its new rlnNormCorrection is the noise standard
deviation of its residual (old/avg x sqrt(2 sum_w |X - a cP|^2), the residual beyond the current size
being the image power); unlike RELION the residual is taken with the particle's best model amplitude
a = sum XA / sum AA, so that an amplitude error is left to the scale correction and not read as noise
(with the plain residual, a 5 % amplitude error outweighs the noise at high SNR and the corrections run
away; tests/programs/test_refine3d.py::test_auto_sampling_goes_fine_on_high_snr_data); each group's CTF is
multiplied by its rlnGroupScaleCorrection, re-estimated as
sum XA / sum AA over the shells with SSNR > 3, clipped to [median/5, 5 median] and renormalised to a
particle-weighted mean of 1.  Groups: rlnGroupNumber, else rlnGroupName, else one per micrograph.
Neither is updated in a --firstiter_cc iteration.

Differences from RELION (documented choices): with --firstiter_cc the first iteration scores
by normalised cross-correlation with the best sample only and keeps the initial noise spectra; global
searches at HEALPix order 3 or finer run a coarse pre-pass one order coarser that picks each particle's
regions of the grid (``core.refine.estep.CoarsePrepass``; --exhaustive_global scores the whole grid as RELION
does: 3-5x slower there, the same poses, bench/README.md); significant samples are capped by --maxsig
200; --relax_sym acts on the local searches (their window and prior take the nearest of the previous
orientation's mates), while RELION, given --relax_sym without --sigma_ang, searches from the first iteration
with a prior sigma of 0.0033 deg around the mates only (our global iterations see every mate anyway).
As in RELION the two half sets share the noise spectra, the offsets' sigma and the corrections;
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
  polishplugin refine3d ... --healpix_order 5 --auto_local_healpix_order 5 --sigma_ang 1.5
      (local refinement from the input poses, e.g. of polished particles: RELION's semantics, an initial order
      at the local order searches locally from the first iteration, +/- 3 x --sigma_ang around each
      particle's previous orientation; --sigma_ang alone makes every iteration local at any order)
  mpirun -n 2 polishplugin refine3d ...   (one rank per half set; more ranks split the particles)
  polishplugin refine3d --continue Refine3D/job027/run_it005_optimiser.star --o Refine3D/job027/run
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..io import labels as L
from ..io.mrc import read_mrc, write_mrc
from ..io.particles import ParticleTable, read_particles, write_particles
from ..io.refine import (OptimiserState, RefinedParticles, RefineModel, RefineSampling, norm_corrections,
                         particle_groups, read_optimiser, read_particle_images, refined_particles, write_model,
                         write_optimiser, write_sampling)
from ..io.scratch import ScratchError, copy_stacks_to_scratch
from ..io.star import StarError
from ..core.ctf import ctf_rfft_stack
from ..core.filters import low_pass_map, raised_cosine_sphere
from ..core.fsc import fsc as map_fsc, resolution_shell
from ..core.geometry import SymmetryError, euler_to_matrix, matrix_to_euler, symmetry_matrices
from ..core.refine.estep import EStepSettings, NoiseAccumulator, expectation, prepare_images
from ..core.refine.fourier3d import Backprojector, grid_to_map, map_to_grid, pixel_list, regularised_grid
from ..core.refine.mstep import (flatten_solvent, gold_standard_fsc, initial_noise_sums, initial_sigma2,
                                 join_low_resolution, low_resolution_join_shell, offsets_sigma_a,
                                 solvent_corrected_fsc, updated_norms, updated_scales)
from ..core.refine.sampling import OrientationGrid, angular_step_deg, perturbation_matrix
from ..core.refine.schedule import (AutoSampling, coarse_image_size, expected_accuracies, image_size,
                                    resolution_shell_from_ssnr, ssnr_from_fsc, symmetry_aware_angle_deg)
from ._cli import ProgramError
from ._mpi import get_comm, partition

log = logging.getLogger(__name__)

__all__ = ["add_args", "main", "run"]

INCR_SIZE = 10
MASK_EDGE_PX = 5.0
PERTURB_FACTOR = 0.5  # RELION --perturb
# options that --continue may change (and --iter if given; the scratch/pre-read options are the new command line's)
RESUME_KEEP = ("o", "j", "device", "continue_from", "scratch_dir", "keep_free_scratch", "preread_images")
PROGRESS_EVERY_S = 10.0  # at most one progress line per this many seconds within an iteration


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
    a("--relax_sym", default="",
      help="relax this point group (RELION --relax_sym; e.g. --sym C1 --relax_sym C2 for a pseudo-symmetric "
           "dimer): local searches also explore the previous orientation's mates under it and keep the best; "
           "applies where the searches are local (--sigma_ang, a local initial order, or from "
           "--auto_local_healpix_order on)")
    a("--particle_diameter", type=float, default=-1.0, help="mask diameter (Å); -1: 80%% of the box")
    a("--zero_mask", action="store_true", help="mask the particle background with zeros (else noise-free mean)")
    a("--flatten_solvent", action="store_true", help="mask the references (solvent mask or particle sphere)")
    a("--solvent_mask", default="", help="solvent mask (MRC, values in [0, 1])")
    a("--solvent_mask2", default="",
      help="second solvent mask (MRC, values in [0, 1], RELION --solvent_mask2): in solvent flattening, after the "
           "reference was multiplied by the solvent mask (or the particle sphere), the region under this mask is "
           "set to its own (mask-weighted) average density, e.g. a virion's interior or a detergent micelle; "
           "needs --flatten_solvent")
    a("--solvent_correct_fsc", action="store_true", help="solvent-corrected gold-standard FSC (needs --solvent_mask)")
    a("--ctf", action="store_true", help="perform CTF correction")
    a("--ctf_corrected_ref", action="store_true", help="the reference has been CTF-corrected (accepted)")
    a("--ctf_phase_flipped", action="store_true", help="the images were phase-flipped (use |CTF|)")
    a("--ctf_intact_first_peak", action="store_true", help="ignore the CTF until its first peak (CTF = 1 there)")
    a("--firstiter_cc", action="store_true",
      help="first iteration by normalised cross-correlation (reference not on absolute greyscale)")
    a("--healpix_order", type=int, default=2, help="initial HEALPix order (2 = 15° coarse, 7.5° with oversampling)")
    a("--auto_local_healpix_order", type=int, default=4,
      help="local searches from this order (default 4); a --healpix_order at least this high searches locally "
           "around the input poses from the first iteration (sigma: --sigma_ang, else 2x the oversampled step)")
    a("--sigma_ang", type=float, default=-1.0,
      help="prior sigma (degrees) on the three Euler angles: every iteration searches only within +/- 3 sigma "
           "of the particles' previous orientation (rlnAngleRot/Tilt/Psi of --i at the start), until "
           "auto-sampling reaches --auto_local_healpix_order (then 2x the step, as RELION); -1: global searches")
    a("--auto_ignore_angles", action="store_true",
      help="auto-sampling goes finer (and converges) regardless of changes still happening in the orientations "
           "and offsets (RELION; with --auto_resol_angles the GUI's 'Use finer angular sampling faster?')")
    a("--auto_resol_angles", action="store_true",
      help="auto-sampling also goes finer when the current resolution asks for a step finer than the current "
           "one at the particle's edge, 360/ceil(pi D/resolution) (D: --particle_diameter), except into the "
           "order of the local searches (RELION)")
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
    a("--exhaustive_global", action="store_true",
      help="global searches at HEALPix order 3 or finer score every orientation of the grid in the coarse pass "
           "(as RELION); default: a pre-pass one order coarser, on the coarse image size of that step, picks "
           "each particle's significant regions and the coarse pass scores only their orientations")
    a("--tau2_fudge", type=float, default=1.0, help="regularisation parameter T (default 1)")
    a("--iter", type=int, default=None,
      help="maximum number of iterations (auto_iter_max; default 999, or the original run's with --continue)")
    a("--auto_refine", action="store_true", help="accepted for compatibility (always on)")
    a("--split_random_halves", action="store_true", help="accepted for compatibility (always on)")
    a("--gpu", "--device", dest="device", default=None, nargs="?", const="",
      help="E-step device: an OpenCL device id (e.g. 0 or 0:1), 'cpu' for numpy/BLAS only; default (or "
           "--gpu alone): OpenCL when a device works, else numpy")
    a("--j", type=int, default=1, help="threads (BLAS threads are set by the environment)")
    a("--preread_images", action="store_true",
      help="read all particles into memory at the start (RELION); refine3d always does so (each MPI rank its "
           "own particles), so this only makes --scratch_dir unused, as in RELION")
    a("--scratch_dir", default="",
      help="copy the particle stacks to a new folder in this directory (e.g. a local disk) and read the images "
           "from there (RELION --scratch_dir); the stacks that would leave less than --keep_free_scratch free "
           "are read from where they are (a warning says so); the copy is removed once the images are read")
    a("--keep_free_scratch", type=float, default=10.0,
      help="Gb to leave free on the scratch disk (default 10)")
    a("--pool", type=int, default=1, help="accepted for compatibility")
    a("--dont_combine_weights_via_disc", action="store_true", help="accepted for compatibility")


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Inputs:
    """What a run reads once: the particle table and its geometry, the reference, the masks, the half
    sets, CTFs, groups and input norm corrections."""

    table: ParticleTable
    angpix: float
    box: int
    sym_ops: np.ndarray
    relax_ops: np.ndarray | None  # --relax_sym operators (None: no relaxation)
    ref: np.ndarray  # float64
    mask: np.ndarray | None  # --solvent_mask
    solvent: np.ndarray  # the mask that flattens the references (the solvent mask or the particle sphere)
    mask_radius: float  # px
    diameter: float  # Å
    halves: np.ndarray  # 1 or 2 per particle
    ctf: np.ndarray | None  # (n, N, N//2+1) with --ctf
    group_idx: np.ndarray
    group_names: list
    group_counts: np.ndarray
    norm: np.ndarray  # rlnNormCorrection of the input
    mask2: np.ndarray | None = None  # --solvent_mask2


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


@dataclass
class State:
    """What one iteration hands to the next (and ``--continue`` restores from the optimiser files)."""

    seed: int
    refs: dict  # half -> reference map (float64)
    sigma2: np.ndarray  # noise spectrum, shared by the halves
    sched: AutoSampling
    current_size: int
    resolution_a: float
    maxres: int
    scale: np.ndarray  # rlnGroupScaleCorrection per group
    avg_norm: float
    sigma_off: float = 10.0  # Å
    acc_rot: float = 999.0
    acc_trans: float = 999.0  # px
    ssnr_prev: np.ndarray | None = None  # data_vs_prior of the previous iteration: the shells of the scale products
    iteration: int = 0
    final: bool = False
    high_at_limit: bool = False


@dataclass
class Pass:
    """The sampling of one iteration: image sizes, Fourier pixels, orientations and their perturbation."""

    coarse: int
    prepass: int  # image size of the coarse pre-pass of global searches (one HEALPix order coarser)
    iy: np.ndarray
    ix: np.ndarray
    k2d: np.ndarray
    shells: np.ndarray
    scale_pix: np.ndarray | None
    orient: OrientationGrid
    perturb_instance: float
    perturb: np.ndarray


@dataclass
class Sums:
    """The E-step's rank-local sums (before the M-step adds them over the ranks)."""

    bps: dict
    noise: dict
    stats: np.ndarray  # per half: n, sum dangle, sum doff2, sum pmax, sum off-change2, loglik
    acc: np.ndarray  # sum acc_rot, sum acc_trans, n over the accuracy particles
    scale: np.ndarray  # sum XA, sum AA per group
    corrections: bool  # norm/scale corrections were updated


# ---------------------------------------------------------------------------------------------- inputs
def _read_inputs(args) -> Inputs:
    """Read and check the particles, reference and mask (ProgramError with a sentence otherwise)."""
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
    try:
        relax_ops = symmetry_matrices(args.relax_sym) if args.relax_sym else None
    except SymmetryError as exc:
        raise ProgramError(f"--relax_sym {args.relax_sym}: {exc}") from exc
    if relax_ops is not None and len(relax_ops) == 1:
        relax_ops = None  # C1: nothing to relax
    if args.ctf:
        try:
            ctf_params = table.ctf_params()
        except StarError as exc:
            raise ProgramError(f"--ctf was asked but particle STAR file {path} has no CTF parameters "
                               f"({exc})") from exc
    ref, mask, mask2 = _read_maps(args, box, angpix)
    halves = table.half_sets() if L.RANDOM_SUBSET in table.particles.columns else \
        (np.arange(len(table)) % 2 + 1)
    if not set(np.unique(halves)) <= {1, 2} or len(np.unique(halves)) < 2:
        raise ProgramError(f"particle STAR file {path}: rlnRandomSubset must hold both 1 and 2")
    try:
        norm = norm_corrections(table)
    except StarError as exc:
        raise ProgramError(str(exc)) from exc
    ctf_all = ctf_rfft_stack(ctf_params, box, angpix, args.ctf_phase_flipped, args.ctf_intact_first_peak) \
        if args.ctf else None
    diameter = args.particle_diameter if args.particle_diameter > 0 else 0.8 * box * angpix
    mask_radius = min(diameter / (2 * angpix), box / 2 - 1)
    solvent = mask if mask is not None else raised_cosine_sphere((box,) * 3, mask_radius, MASK_EDGE_PX)
    group_idx, group_names = particle_groups(table)
    group_counts = np.bincount(group_idx, minlength=len(group_names)).astype(np.float64)
    return Inputs(table, angpix, box, sym_ops, relax_ops, ref.astype(np.float64), mask, solvent, mask_radius,
                  diameter, halves, ctf_all, group_idx, group_names, group_counts, norm, mask2)


def _read_maps(args, box: int, angpix: float) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The reference (``box``^3 at ``angpix``) and the solvent masks (--solvent_mask, --solvent_mask2: values in
    [0, 1], float32, of the reference's box and pixel size) or None."""
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
    mask = _read_mask(args.solvent_mask, "solvent mask", ref.shape, angpix) if args.solvent_mask else None
    mask2 = _read_mask(args.solvent_mask2, "second solvent mask", ref.shape, angpix) if args.solvent_mask2 else None
    if args.solvent_correct_fsc and mask is None:
        raise ProgramError("--solvent_correct_fsc needs --solvent_mask")
    if mask2 is not None and not args.flatten_solvent:
        raise ProgramError(f"--solvent_mask2 {args.solvent_mask2} acts in solvent flattening: add --flatten_solvent")
    if mask2 is not None and not mask2.any():
        raise ProgramError(f"second solvent mask {args.solvent_mask2} is zero everywhere: it has no region to flatten")
    return ref, mask, mask2


def _read_mask(name: str, what: str, shape: tuple, angpix: float) -> np.ndarray:
    """A mask of the reference's ``shape`` and pixel size with values in [0, 1] (float32; ProgramError naming
    the file otherwise)."""
    mpath = Path(name)
    if not mpath.exists():
        raise ProgramError(f"{what} {mpath} does not exist")
    mask, mask_angpix = read_mrc(mpath)
    if mask.shape != shape:
        raise ProgramError(f"{what} {mpath} has shape {mask.shape}, the reference {shape}")
    if mask_angpix > 0 and abs(mask_angpix - angpix) > 0.01 * angpix:
        raise ProgramError(f"{what} {mpath} has pixel size {mask_angpix:.4f} Å but the particles have "
                           f"{angpix:.4f} Å; rescale the mask")
    if mask.min() < -1e-3 or mask.max() > 1 + 1e-3:
        raise ProgramError(f"{what} {mpath} has values outside [0, 1] ({mask.min():.3g} .. {mask.max():.3g})")
    return np.clip(mask, 0, 1).astype(np.float32)


def _local_halves(comm, inp: Inputs, stack_paths: dict | None = None) -> dict[int, HalfSet]:
    """This rank's particles: rank r works on half (r % 2) + 1 with its share of that half's particles
    (one rank: both halves), with their images (read from ``stack_paths`` where it names a stack), CTFs, start
    poses, norm corrections and groups."""
    local: dict[int, HalfSet] = {}
    for h in ([1, 2] if comm.size == 1 else [comm.rank % 2 + 1]):
        rows = np.nonzero(inp.halves == h)[0]
        if comm.size > 1:
            peers = [r for r in range(comm.size) if r % 2 + 1 == h]
            rows = rows[list(partition(len(rows), len(peers), peers.index(comm.rank)))]
        try:
            images = read_particle_images(inp.table, rows, inp.box, stack_paths)
        except StarError as exc:
            raise ProgramError(str(exc)) from exc
        ang = inp.table.angles_deg()[rows]
        ctf = inp.ctf[rows] if inp.ctf is not None else np.ones((len(rows), inp.box, inp.box // 2 + 1), np.float32)
        local[h] = HalfSet(h, rows, images, ctf, inp.table.origins_px()[rows],
                           euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2]), norm=inp.norm[rows],
                           group=inp.group_idx[rows])
    return local


def _read_halves(comm, args, inp: Inputs) -> dict[int, HalfSet]:
    """:func:`_local_halves`; with --scratch_dir (unless --preread_images, as RELION) the first rank on each host
    copies the stacks to that host's scratch disk, every rank reads its images from its host's copies, and each
    copy is removed once all have read (the images stay in memory for the whole run)."""
    if not args.scratch_dir or args.preread_images:
        if args.scratch_dir:
            log.info("--scratch_dir %s is not used with --preread_images (as in RELION)", args.scratch_dir)
        local = _local_halves(comm, inp)
    else:
        copy = None
        try:
            firsts = comm.first_ranks_per_host()
            error = None
            if firsts[comm.rank] == comm.rank:
                try:
                    copy = copy_stacks_to_scratch(inp.table, args.scratch_dir, args.keep_free_scratch)
                except ScratchError as exc:
                    error = f"{exc} (on host {comm.host()})" if comm.size > 1 else str(exc)
            reports = comm.allgather((comm.host(), copy.paths if copy is not None else None,
                                      str(copy.directory) if copy is not None else "",
                                      copy.warning if copy is not None else "", error))
            failed = [r[4] for r in reports if r[4]]
            if failed:
                raise ScratchError(failed[0])
            if comm.is_leader:
                for r, (host, paths, folder, warning, _) in enumerate(reports):
                    if firsts[r] == r:
                        log.info("--scratch_dir: %d particle stack(s) copied to %s%s", len(paths), folder,
                                 f" on host {host}" if comm.size > 1 else "")
                        if warning:
                            log.warning("%s", warning)
            paths = reports[firsts[comm.rank]][1]
            local = _local_halves(comm, inp, {k: v for k, v in paths.items() if Path(v).exists()})
            comm.barrier()
        except ScratchError as exc:
            raise ProgramError(str(exc)) from exc
        finally:
            if copy is not None:
                copy.remove()
    n_bytes = comm.allreduce_sum(np.array([float(sum(hs.images.nbytes for hs in local.values()))]))[0]
    if comm.is_leader:
        log.info("particle images held in memory: %.2f Gb over %d rank(s)", n_bytes / 1024 ** 3, comm.size)
    return local


def _initial_state(comm, args, inp: Inputs, local: dict, seed: int) -> State:
    """Iteration 0: the reference low-passed to --ini_high for both halves, the noise spectrum of all
    particles (summed over the ranks, so any rank count gives the same), no corrections yet."""
    box, angpix = inp.box, inp.angpix
    empty = (np.zeros((0, box, box), np.float32), np.zeros((0, 2)))
    init = comm.allreduce_sum(sum(initial_noise_sums(*((hs.images, hs.offsets_px) if hs is not None else empty),
                                                     inp.mask_radius, MASK_EDGE_PX, args.zero_mask)
                                  for hs in (local.get(1), local.get(2))))
    start = low_pass_map(inp.ref, args.ini_high, angpix)
    maxres = max(int(round(box * angpix / args.ini_high)), 5)
    return State(seed, {1: start, 2: start}, initial_sigma2(init, box),
                 AutoSampling.initial(args.healpix_order, args.offset_range, args.offset_step,
                                      args.auto_local_healpix_order, args.sigma_ang, args.auto_ignore_angles,
                                      args.auto_resol_angles),
                 image_size(maxres, box, INCR_SIZE, 0.0, False), box * angpix / maxres, maxres,
                 np.ones(len(inp.group_names)),
                 float(inp.norm.mean()))  # so that a set normalised earlier starts unchanged


def _resumed_state(args, inp: Inputs, local: dict, saved: OptimiserState) -> State:
    """The state after the iteration ``saved`` holds; the poses and norms of ``local`` are restored."""
    if len(saved.mats) != len(inp.table):
        raise ProgramError(f"--continue: optimiser file {args.continue_from} holds {len(saved.mats)} "
                           f"particles but {args.i} has {len(inp.table)}")
    for hs in local.values():
        hs.mats, hs.offsets_px, hs.norm = saved.mats[hs.rows], saved.offsets[hs.rows], saved.norm[hs.rows]
    log.info("--continue: iteration %d of %s restored; continuing with iteration %d%s", saved.iteration,
             args.continue_from, saved.iteration + 1, " (final)" if saved.final else "")
    return State(saved.seed, saved.refs, saved.sigma2, AutoSampling(**saved.schedule), saved.current_size,
                 saved.resolution_a, 0, saved.scale, saved.avg_norm, saved.sigma_off, saved.acc_rot,
                 saved.acc_trans_px, saved.ssnr, saved.iteration, saved.final)


def _continue_options(args) -> OptimiserState | None:
    """With --continue: the saved state, and the original run's options set on ``args`` (except those of
    RESUME_KEEP given again, and --iter if given); else check that --i and --ref were given."""
    saved = None
    if args.continue_from:
        try:
            saved = read_optimiser(args.continue_from)
        except StarError as exc:
            raise ProgramError(f"--continue: {exc}") from exc
        for k, v in saved.options.items():
            given = getattr(args, k, None) is not None
            if hasattr(args, k) and not (k in RESUME_KEEP and given) and not (k == "iter" and args.iter is not None):
                setattr(args, k, v)  # the original run's option (--device too, unless given again)
    elif not args.i or not args.ref:
        raise ProgramError("refine3d needs --i and --ref (or --continue <o>_itNNN_optimiser.star)")
    if args.iter is None:
        args.iter = 999
    return saved


def _estep_ops(device):
    """The E-step backend for ``--device`` (:func:`estep_cl.select_ops`; its errors as ProgramError)."""
    from ..core.opencl import estep_cl, runtime

    try:
        return estep_cl.select_ops(device)
    except runtime.OpenCLUnavailable as exc:
        raise ProgramError(str(exc)) from exc


# ----------------------------------------------------------------------------------------- iteration
def _sampling(inp: Inputs, st: State, grids: dict) -> Pass:
    """This iteration's image sizes, Fourier pixels, orientation grid (cached in ``grids`` while the
    order and search kind stay) and random grid perturbation (seeded by seed + iteration)."""
    sched = st.sched
    if st.final:
        st.current_size = inp.box
    coarse, prepass = (min(st.current_size, max(coarse_image_size(inp.box, inp.angpix, angular_step_deg(order),
                                                                  inp.diameter), 2 * 5))
                       for order in (sched.healpix_order, sched.healpix_order - 1))
    iy, ix, k2d = pixel_list(inp.box, st.current_size / 2.0)
    shells = np.rint(np.sqrt((k2d ** 2).sum(1))).astype(np.int64)
    scale_pix = None if st.ssnr_prev is None else st.ssnr_prev[np.minimum(shells, len(st.ssnr_prev) - 1)] > 3.0
    key = (sched.healpix_order, sched.local)
    if key not in grids:
        grids.clear()
        grids[key] = OrientationGrid(sched.healpix_order, None if sched.local else inp.sym_ops)
    rng = np.random.default_rng(st.seed + st.iteration)
    perturb_instance = float(rng.uniform(-PERTURB_FACTOR, PERTURB_FACTOR))
    perturb = perturbation_matrix(perturb_instance, angular_step_deg(sched.healpix_order))
    return Pass(coarse, prepass, iy, ix, k2d, shells, scale_pix, grids[key], perturb_instance, perturb)


class IterationProgress:
    """The E-step's progress on this rank within one iteration: a log line at most every ``every_s`` seconds
    (default :data:`PROGRESS_EVERY_S`) with the particles done, the total and the time left (from the
    share of the two passes done).  Called as ``progress(pass, n)`` by :func:`~..core.refine.estep.expectation`."""

    def __init__(self, iteration: int, total: int, every_s: float | None = None, clock=time.monotonic,
                 where: str = "", enabled: bool = True):
        self.iteration, self.total, self.where, self.enabled = iteration, max(int(total), 1), where, enabled
        self.every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self.clock = clock
        self.start = self.last = clock()
        self.done = {1: 0, 2: 0}

    def __call__(self, pass_no: int, n: int) -> None:
        self.done[pass_no] += n
        now = self.clock()
        if not self.enabled or now - self.last < self.every_s:
            return
        self.last = now
        frac = (self.done[1] + self.done[2]) / (2.0 * self.total)
        elapsed = now - self.start
        left = elapsed * (1.0 - frac) / frac if frac > 0 else float("nan")
        log.info("iteration %d: %d/%d particles done%s (coarse pass %d/%d), %.0f s, about %.0f s left",
                 self.iteration, self.done[2], self.total, self.where, self.done[1], self.total, elapsed, left)


def _expectation(args, inp: Inputs, local: dict, st: State, p: Pass, ops, acc_rows: np.ndarray,
                 progress: IterationProgress | None = None) -> Sums:
    """E-step of both halves on this rank: new poses (set on ``local``), back-projections, noise and
    correction sums, accuracy estimates (first 20 particles of half 1); ``progress`` is told of each
    particle's passes."""
    box, pad = inp.box, args.pad
    cc_iter = bool(args.firstiter_cc) and st.iteration == 1
    s = Sums({h: Backprojector(box, pad, ops) for h in (1, 2)}, {h: NoiseAccumulator(box // 2 + 1) for h in (1, 2)},
             np.zeros((2, 6)), np.zeros(3), np.zeros((2, len(st.scale))), (args.norm or args.scale) and not cc_iter)
    for h, hs in local.items():
        ref_map = flatten_solvent(st.refs[h], inp.solvent, inp.mask2) if (args.flatten_solvent and not st.final) \
            else st.refs[h]
        grid3d = map_to_grid(ref_map, pad)
        settings = EStepSettings(box=box, angpix=inp.angpix, pad=pad, coarse_radius=p.coarse / 2.0,
                                 current_radius=st.current_size / 2.0, offset_range_px=st.sched.offset_range_px,
                                 offset_step_px=st.sched.offset_step_px, sigma_offset_a=st.sigma_off,
                                 local_sigma_deg=st.sched.local_sigma_deg if st.sched.local else None,
                                 perturbation=p.perturb, max_significant=args.maxsig, cc=cc_iter,
                                 corrections=s.corrections, scale_pixels=p.scale_pix, ops=ops,
                                 relax_ops=inp.relax_ops,
                                 prepass_radius=None if args.exhaustive_global else p.prepass / 2.0)
        x, rounded = prepare_images(hs.images, hs.offsets_px, inp.mask_radius, MASK_EDGE_PX, args.zero_mask)
        xs, cs = x[:, p.iy, p.ix], hs.ctf[:, p.iy, p.ix]
        norm_factor = st.avg_norm / hs.norm if args.norm else np.ones(len(hs.rows))
        if args.norm:
            xs = xs * norm_factor[:, None].astype(np.float32)
        if args.scale:
            cs = cs * st.scale[hs.group][:, None].astype(np.float32)
        s2pix = st.sigma2[np.minimum(p.shells, len(st.sigma2) - 1)]
        # with CC the reference's scale is arbitrary: its residuals say nothing about the noise
        res = expectation(grid3d, p.orient, xs, cs, s2pix, p.k2d, p.shells, hs.offsets_px, rounded, hs.mats,
                          settings, s.bps[h], None if settings.cc else s.noise[h], progress)
        new_mats = euler_to_matrix(*np.array([r.angles for r in res]).T)
        new_off = np.array([r.origin_px for r in res])
        dang = symmetry_aware_angle_deg(new_mats, hs.mats, inp.sym_ops)
        s.stats[h - 1] = [len(res), dang.sum(), ((new_off - hs.offsets_px) ** 2).sum(),
                          sum(r.pmax for r in res), sum(r.offset_change2_a2 for r in res),
                          -sum(r.min_diff2 for r in res)]
        hs.mats, hs.offsets_px = new_mats, new_off
        hs.pmax = np.array([r.pmax for r in res])
        hs.n_sig = np.array([r.n_significant for r in res])
        hs.loglik = np.array([-r.min_diff2 for r in res])
        if s.corrections and args.norm:
            hs.norm = updated_norms(x, p.iy, p.ix, np.array([r.resid2 for r in res]), hs.norm, norm_factor,
                                    st.avg_norm)
        if s.corrections and args.scale:  # products with the unscaled CTF: the E-step's carries the old scale
            s_old = st.scale[hs.group]
            s.scale += [np.bincount(hs.group, np.array([r.xa for r in res]) / s_old, len(st.scale)),
                        np.bincount(hs.group, np.array([r.aa for r in res]) / s_old ** 2, len(st.scale))]
        sub = np.nonzero(np.isin(hs.rows, acc_rows))[0] if h == 1 and not st.final else np.zeros(0, np.int64)
        if sub.size:
            a_rot, a_trans = expected_accuracies(grid3d, new_mats[sub], cs[sub], s2pix, p.k2d, box, pad,
                                                 per_particle=True)
            s.acc += [a_rot.sum(), a_trans.sum(), len(sub)]
    return s


def _maximization(comm, args, inp: Inputs, local: dict, st: State, s: Sums) -> dict:
    """M-step: sums over the ranks, corrections, noise spectrum and offsets' sigma, the half maps, the
    gold-standard FSC and SSNR, then either the next references (halves joined at low resolution) or,
    in the final iteration, the joined map.  Updates ``st``; returns the maps and curves to write."""
    box, angpix, pad = inp.box, inp.angpix, args.pad
    s.stats = comm.allreduce_sum(s.stats)
    if s.corrections and args.norm:
        norm_sum = comm.allreduce_sum(np.array([sum(hs.norm.sum() for hs in local.values()),
                                                sum(len(hs.norm) for hs in local.values())], np.float64))
        st.avg_norm = float(norm_sum[0] / max(norm_sum[1], 1))
    if s.corrections and args.scale:
        scale_sums = comm.allreduce_sum(s.scale)
        st.scale = updated_scales(scale_sums[0], scale_sums[1], inp.group_counts)
    if not st.final:
        acc = comm.allreduce_sum(s.acc)
        st.acc_rot, st.acc_trans = acc[0] / max(acc[2], 1), acc[1] / max(acc[2], 1)
    dw = {}
    for h in (1, 2):
        bp = s.bps[h]
        bp.data, bp.weight = comm.allreduce_sum(bp.data), comm.allreduce_sum(bp.weight)
        dw[h] = bp.finalised(inp.sym_ops)
    # noise spectra and the offsets' sigma from both halves (RELION combineWeightedSumsTwoRandomHalves)
    nz = NoiseAccumulator(box // 2 + 1)
    n1, n2 = s.noise[1], s.noise[2]
    sums = comm.allreduce_sum(np.concatenate([n1.wsum + n2.wsum, n1.count + n2.count]))
    nz.wsum, nz.count = sums[:len(nz.wsum)], sums[len(nz.wsum):]
    st.sigma2 = nz.sigma2(st.sigma2)
    st.sigma_off = offsets_sigma_a(s.stats[:, 4].sum(), s.stats[:, 0].sum())
    (d1, w1), (d2, w2) = dw[1], dw[2]
    unfil = {h: grid_to_map(regularised_grid(*dw[h], None, pad, box), box) for h in (1, 2)}
    if st.final:  # the final FSC is that of the half maps as written (float32), as RELION reports it
        unfil = {h: m.astype(np.float32) for h, m in unfil.items()}
    if args.solvent_correct_fsc:
        fsc = solvent_corrected_fsc(unfil[1], unfil[2], inp.mask, st.current_size, st.seed + st.iteration)
    elif st.final:
        fsc = map_fsc(unfil[1], unfil[2])
    else:
        fsc = gold_standard_fsc(d1, w1, d2, w2, pad, box, st.current_size)
    ssnr = ssnr_from_fsc(fsc, joined=st.final, tau2_fudge=args.tau2_fudge)
    st.ssnr_prev = ssnr
    out = {"fsc": fsc, "ssnr": ssnr, "unfil": unfil}
    if st.final:
        joined = regularised_grid(d1 + d2, w1 + w2, ssnr, pad, box, tau2_fudge=args.tau2_fudge)
        out["final_map"] = grid_to_map(joined, box)
        st.resolution_a = box * angpix / max(resolution_shell(fsc, 0.143), 1)
        return out
    join_shell = low_resolution_join_shell(box, angpix, args.low_resol_join_halves, st.resolution_a)
    d1, w1, d2, w2 = join_low_resolution(d1, w1, d2, w2, join_shell, pad)
    for h, (d, w) in ((1, (d1, w1)), (2, (d2, w2))):
        st.refs[h] = grid_to_map(regularised_grid(d, w, ssnr, pad, box, tau2_fudge=args.tau2_fudge), box) \
            .astype(np.float32).astype(np.float64)  # as written: --continue restarts from the file
    st.maxres = resolution_shell_from_ssnr(ssnr)
    st.resolution_a = box * angpix / st.maxres
    st.high_at_limit = bool(fsc[max(st.current_size // 2 - 1, 0)] > 0.2)
    return out


def _gather(comm, local: dict, n: int) -> tuple[RefinedParticles, np.ndarray]:
    """Poses and statistics of all particles (over the ranks, in table order) and their rotations."""
    parts = comm.allgather([(hs.half, hs.rows, hs.offsets_px, hs.mats, hs.pmax, hs.n_sig, hs.loglik, hs.norm, hs.group)
                            for hs in local.values()])
    r = RefinedParticles(np.zeros((n, 3)), np.zeros((n, 2)), np.zeros(n), np.zeros(n), np.zeros(n, np.int64),
                         np.zeros(n, np.int64), np.ones(n), np.zeros(n, np.int64))
    mats = np.zeros((n, 3, 3))
    for half, rows, offsets, m, pmax, n_sig, loglik, norm, group in (x for part in parts for x in part):
        r.angles_deg[rows] = np.column_stack(matrix_to_euler(m))
        r.offsets_px[rows], mats[rows], r.pmax[rows], r.n_significant[rows] = offsets, m, pmax, n_sig
        r.loglik[rows], r.half[rows], r.norm[rows], r.group[rows] = loglik, half, norm, group
    return r, mats


def _write_iteration(args, inp: Inputs, st: State, p: Pass, out: dict, it_root: str, poses: RefinedParticles,
                     loglik: float, ave_pmax: float) -> None:
    """Model, sampling and data STAR files and the maps of one iteration (and the run's final outputs
    after the final one)."""
    sched, angpix, out_root = st.sched, inp.angpix, Path(args.o)
    model = RefineModel(inp.box, angpix, st.resolution_a, st.current_size, out["fsc"], out["ssnr"], st.sigma2,
                        args.pad, args.tau2_fudge, st.avg_norm, st.sigma_off, sched.local,
                        sched.local_sigma_deg or 0.0, loglik, ave_pmax, sched.healpix_order, sched.offset_range_px,
                        sched.offset_step_px,
                        f"{it_root}_class001.mrc" if st.final else f"{it_root}_half1_class001.mrc",
                        st.acc_rot, st.acc_trans * angpix, inp.group_names, inp.group_counts, st.scale)
    sampling = RefineSampling(sched.healpix_order, p.orient.psi_step, sched.offset_range_px, sched.offset_step_px,
                              p.perturb_instance, PERTURB_FACTOR, args.sym, sched.local, sched.local_sigma_deg or 0.0,
                              p.orient.directions)
    data = refined_particles(inp.table, poses, angpix)
    _write_stars(it_root, model, sampling, data)
    if st.final:
        write_mrc(f"{it_root}_class001.mrc", out["final_map"], angpix)
        write_mrc(f"{out_root}_class001.mrc", out["final_map"], angpix)
        for h in (1, 2):
            write_mrc(f"{out_root}_half{h}_class001_unfil.mrc", out["unfil"][h], angpix)
        _write_stars(str(out_root), model, sampling, data)
    else:
        for h in (1, 2):
            write_mrc(f"{it_root}_half{h}_class001.mrc", st.refs[h], angpix)


def _write_stars(root: str, model: RefineModel, sampling: RefineSampling, data) -> None:
    """``<root>_model.star``, ``<root>_sampling.star`` and ``<root>_data.star``."""
    write_model(f"{root}_model.star", model)
    write_sampling(f"{root}_sampling.star", sampling)
    write_particles(f"{root}_data.star", data)


def _next_sampling(args, inp: Inputs, st: State, ang_change: float, off_change: float, ave_pmax: float) -> None:
    """Auto-sampling and convergence after a non-final iteration: the schedule, the next image size and
    whether the next iteration is the final one."""
    sched = st.sched
    sched.record_resolution(st.resolution_a)
    sched.record_changes(ang_change, off_change)
    if st.iteration > 1:
        sched.update(st.acc_rot, st.acc_trans, off_change, st.resolution_a, inp.diameter,
                     max_step_px=1.5 / inp.angpix)
    st.current_size = image_size(st.maxres, inp.box, INCR_SIZE, ave_pmax, st.high_at_limit)
    st.final = sched.converged() or st.iteration + 1 >= args.iter


def _save_state(args, inp: Inputs, st: State, it_root: str, poses: RefinedParticles, mats: np.ndarray) -> None:
    """``<it_root>_optimiser.star``/``.npz``: what ``--continue`` needs to go on after this iteration."""
    options = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    write_optimiser(it_root, OptimiserState(options, st.seed, st.iteration, st.final, st.current_size,
                                            st.resolution_a, st.acc_rot, st.acc_trans, st.sigma_off, st.avg_norm,
                                            asdict(st.sched), mats, poses.offsets_px, st.sigma2, poses.norm,
                                            st.scale, st.ssnr_prev), inp.angpix)


def _log_iteration(st: State, p: Pass, ang_change: float, off_change: float, ave_pmax: float, t0: float,
                   t_start: float) -> None:
    """One log line per iteration: resolution, sizes, sampling, changes, Pmax, accuracies and times."""
    sched = st.sched
    log.info("iteration %d%s: resolution %.2f Å, image size %d (coarse %d), healpix order %d%s "
             "(%.2f°), offsets %.2f/%.2f px, changes: angles %.2f°, offsets %.2f px, Pmax %.3f, "
             "acc %.2f° %.2f px, %.1f s (total %.1f s)", st.iteration, " (final, halves joined)" if st.final else "",
             st.resolution_a, st.current_size, p.coarse, sched.healpix_order, " local" if sched.local else "",
             sched.fine_step_deg, sched.offset_range_px, sched.offset_step_px, ang_change, off_change,
             ave_pmax, st.acc_rot, st.acc_trans, time.time() - t0, time.time() - t_start)


# -------------------------------------------------------------------------------------------- main
def main(args: argparse.Namespace) -> int:
    """Read the inputs (or the state --continue names), iterate E-step -> M-step -> outputs until the
    final iteration with the halves joined has been written."""
    comm = get_comm()
    t_start = time.time()
    saved = _continue_options(args)
    inp = _read_inputs(args)
    ops = _estep_ops(args.device)
    seed = comm.bcast(args.random_seed if args.random_seed >= 0 else int(time.time()) % 100000)
    out_root = Path(args.o)
    if comm.is_leader:
        out_root.parent.mkdir(parents=True, exist_ok=True)
    local = _read_halves(comm, args, inp)
    st = _resumed_state(args, inp, local, saved) if saved is not None else \
        _initial_state(comm, args, inp, local, seed)
    acc_rows = np.nonzero(inp.halves == 1)[0][:20]  # the particles of the accuracy estimate (rank-independent)
    grids: dict = {}
    while True:
        st.iteration += 1
        t0 = time.time()
        p = _sampling(inp, st, grids)
        progress = IterationProgress(st.iteration, sum(len(hs.rows) for hs in local.values()),
                                     where=f" on rank {comm.rank}" if comm.size > 1 else "", enabled=comm.is_leader)
        sums = _expectation(args, inp, local, st, p, ops, acc_rows, progress)
        out = _maximization(comm, args, inp, local, st, sums)
        n_tot = max(sums.stats[:, 0].sum(), 1)
        ave_pmax = float(sums.stats[:, 3].sum() / n_tot)
        ang_change = float(sums.stats[:, 1].sum() / n_tot)
        off_change = float(np.sqrt(sums.stats[:, 2].sum() / (2 * n_tot)))
        it_root = f"{out_root}_it{st.iteration:03d}"
        poses, mats = _gather(comm, local, len(inp.table))
        if comm.is_leader:
            _write_iteration(args, inp, st, p, out, it_root, poses, float(sums.stats[:, 5].sum()), ave_pmax)
            _log_iteration(st, p, ang_change, off_change, ave_pmax, t0, t_start)
        if st.final:
            break
        _next_sampling(args, inp, st, ang_change, off_change, ave_pmax)
        if comm.is_leader:
            _save_state(args, inp, st, it_root, poses, mats)
    comm.barrier()
    if comm.is_leader:
        log.info("final resolution (FSC 0.143 of %s_half1/2_class001_unfil.mrc%s): %.2f Å after %d iterations",
                 out_root.name, ", solvent-corrected" if args.solvent_correct_fsc else "", st.resolution_a,
                 st.iteration)
    return 0


def run() -> None:
    from ._cli import run as _run
    import sys

    _run(["refine3d"] + sys.argv[1:])
