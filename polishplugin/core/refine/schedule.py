"""Resolution, image sizes, auto-sampling and convergence of auto-refine (RELION ``MlOptimiser``:
``updateCurrentResolution``, ``updateImageSizeAndResolutionPointers``, ``updateAngularSampling``,
``checkConvergence``, ``calculateExpectedAngularErrors``).  Pure bookkeeping on numbers and arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import rotation_about
from .fourier3d import project_pixels
from .sampling import angular_step_deg, rotation_angle_deg

__all__ = [
    "AutoSampling", "ssnr_from_fsc", "resolution_shell_from_ssnr", "coarse_image_size", "image_size",
    "expected_accuracies", "symmetry_aware_angle_deg",
]


def ssnr_from_fsc(fsc: np.ndarray, joined: bool = False, tau2_fudge: float = 1.0) -> np.ndarray:
    """``SSNR = fsc'/(1-fsc') * tau2_fudge`` with ``fsc' = clip(max(0.001, FSC))``; in the joined
    (final) iteration ``fsc' = sqrt(2 fsc/(1+fsc))`` (RELION ``updateTau2``)."""
    f = np.maximum(0.001, np.asarray(fsc, np.float64))
    if joined:
        f = np.sqrt(2 * f / (1 + f))
    f = np.minimum(0.999, f)
    return f / (1 - f) * tau2_fudge


def resolution_shell_from_ssnr(ssnr: np.ndarray, minres_map: int = 5) -> int:
    """``maxres`` of ``updateCurrentResolution`` (auto-refine): first shell >= 1 with SSNR < 1, minus
    1; a later shell with SSNR > 1 beyond ``ires + 3`` (FSC dipped and rose) is used instead; at least
    ``minres_map``."""
    s = np.asarray(ssnr)
    below = np.nonzero(s[1:] < 1.0)[0]
    ires = int(below[0]) if below.size else len(s) - 1  # (first index >= 1) - 1
    above = np.nonzero(s[1:] > 1.0)[0]
    if above.size and int(above[-1]) + 1 > ires + 3:
        ires = int(above[-1]) + 1
    return max(ires, minres_map)


def coarse_image_size(box: int, angpix: float, coarse_step_deg: float, particle_diameter_a: float) -> int:
    """``2 ceil(N angpix / (rotated_distance/1.2))``, ``rotated_distance = step/360 pi D``."""
    rotated = coarse_step_deg / 360.0 * np.pi * particle_diameter_a
    return int(2 * np.ceil(box * angpix / (rotated / 1.2)))


def image_size(maxres: int, box: int, incr_size: int, ave_pmax: float, high_fsc_at_limit: bool,
               use_all: bool = False) -> int:
    """``current_size`` (even) from ``maxres`` (RELION ``updateImageSizeAndResolutionPointers``)."""
    if use_all:
        return box
    if ave_pmax > 0.1 and high_fsc_at_limit:
        maxres += int(round(0.25 * box / 2))
    else:
        maxres += incr_size
    return int(min(2 * maxres, box))


def symmetry_aware_angle_deg(a: np.ndarray, b: np.ndarray, sym_ops: np.ndarray) -> np.ndarray:
    """Smallest rotation angle between ``a (n,3,3)`` and the symmetry mates ``b R^T`` of ``b``."""
    best = np.full(len(a), np.inf)
    for r in sym_ops:
        best = np.minimum(best, rotation_angle_deg(a, b @ r.T))
    return best


#: ``sum c^2 |P - P'|^2 / (2 sigma2)`` at which a pose is told apart from the rotated/shifted one.  RELION
#: (``calculateExpectedAngularErrors``: ``pvalue``) uses 4.605, a probability ratio of 0.01 (the angle of 3
#: posterior sigmas), and stops refining the sampling once the step is below 0.75 of it.  We use 2 (2 sigmas):
#: measured on the simulator's sets (bench/README.md, "Stop rule"), 4.605 stops one HEALPix order too early
#: (D2 box 32: 3.60 deg against 2.77 at SNR 1, 1.23 against 1.12 at SNR 10; 600 particles C1 box 96: 0.86 against
#: 0.74 deg), while 2 is as accurate as the former 1 and spends no iterations at orders where the angles no longer
#: improve (D2 box 32 at SNR 1: 15 iterations and 20 s instead of 19 and 58 s).
ACCURACY_LOG_DROP = 2.0


def expected_accuracies(grid3d: np.ndarray, mats: np.ndarray, ctf: np.ndarray, sigma2_pix: np.ndarray,
                        k2d: np.ndarray, box: int, pad: int = 2, per_particle: bool = False):
    """``(acc_rot_deg, acc_trans_px)``: rotation/shift at which ``sum c^2 |P - P'|^2 / (2 sigma2)``
    exceeds :data:`ACCURACY_LOG_DROP` (2), averaged over the particles given (RELION
    ``calculateExpectedAngularErrors``: at most 30 degrees and 10 pixels; we rotate about the x, y and z axes
    and average).  ``per_particle``: two arrays ``(n,)`` instead (mean over the axes), so that sums over MPI
    ranks give the same mean as one rank."""
    steps = np.geomspace(0.05, 30.0, 24)
    w = 0.5 / sigma2_pix
    p0 = project_pixels(grid3d, mats, k2d, pad)
    acc_rot = []
    for axis in np.eye(3):
        first = np.full(len(mats), steps[-1])
        for d in steps[::-1]:
            p1 = project_pixels(grid3d, mats @ rotation_about(axis, d), k2d, pad)
            diff = (w * ctf ** 2 * np.abs(p0 - p1) ** 2).sum(1)
            first = np.where(diff > ACCURACY_LOG_DROP, d, first)
        acc_rot.append(first)
    shifts = np.geomspace(0.01, 10.0, 24)
    first_t = np.full(len(mats), shifts[-1])
    kr = np.sqrt((k2d ** 2).sum(1))
    for t in shifts[::-1]:
        ph = 2 - 2 * np.cos(2 * np.pi * kr * t / box)  # |1 - exp(-i phi)|^2 along the gradient direction
        diff = (w * ctf ** 2 * np.abs(p0) ** 2 * ph[None]).sum(1)
        first_t = np.where(diff > ACCURACY_LOG_DROP, t, first_t)
    if per_particle:
        return np.mean(acc_rot, axis=0), first_t
    return float(np.mean(acc_rot)), float(np.mean(first_t))


@dataclass
class AutoSampling:
    """The auto-refine schedule state (pixels for offsets; coarse steps, oversampling 1)."""

    healpix_order: int
    offset_range_px: float
    offset_step_px: float
    auto_local_order: int
    oversampling: int = 1
    local: bool = False
    local_sigma_deg: float | None = None
    nr_iter_wo_resol_gain: int = 0
    nr_iter_wo_large_changes: int = 0
    smallest_angle_change: float = 999.0
    smallest_offset_change: float = 999.0
    best_resolution_inv_a: float = 0.0
    has_fine_enough_sampling: bool = False
    auto_ignore_angles: bool = False  # --auto_ignore_angles
    auto_resol_angles: bool = False  # --auto_resol_angles

    @classmethod
    def initial(cls, healpix_order: int, offset_range_px: float, offset_step_px: float, auto_local_order: int,
                sigma_ang_deg: float = -1.0, auto_ignore_angles: bool = False,
                auto_resol_angles: bool = False) -> "AutoSampling":
        """The schedule before iteration 1 (RELION ``parseInitial``/``initialiseGeneral``): local searches
        around the input poses from the start when ``sigma_ang_deg > 0`` (``--sigma_ang``: prior sigma on
        the three angles, search +/- 3 sigma) or when ``healpix_order >= auto_local_order`` (sigma
        ``sigma_ang_deg`` if given, else 2x the oversampled step); otherwise global searches.  The two
        flags are RELION's "Use finer angular sampling faster?" (see :meth:`update`)."""
        s = cls(healpix_order, offset_range_px, offset_step_px, auto_local_order,
                auto_ignore_angles=auto_ignore_angles, auto_resol_angles=auto_resol_angles)
        if sigma_ang_deg > 0 or healpix_order >= auto_local_order:
            s.local = True
            s.local_sigma_deg = float(sigma_ang_deg) if sigma_ang_deg > 0 else 2.0 * s.fine_step_deg
        return s

    @property
    def fine_step_deg(self) -> float:
        return angular_step_deg(self.healpix_order, self.oversampling)

    def record_resolution(self, resolution_a: float) -> None:
        if 1.0 / resolution_a <= self.best_resolution_inv_a + 1e-4:
            self.nr_iter_wo_resol_gain += 1
        else:
            self.nr_iter_wo_resol_gain = 0
            self.best_resolution_inv_a = 1.0 / resolution_a

    def record_changes(self, angle_change_deg: float, offset_change_px: float) -> None:
        """RELION ``updateOverallChangesInHiddenVariables`` (one class)."""
        fine_offset = self.offset_step_px / 2 ** self.oversampling
        small_off = (offset_change_px / fine_offset < 0.40
                     or 1.03 * offset_change_px >= self.smallest_offset_change)
        small_ang = (angle_change_deg / self.fine_step_deg < 0.40
                     or 1.03 * angle_change_deg >= self.smallest_angle_change)
        if small_off and small_ang:
            self.nr_iter_wo_large_changes += 1
        else:
            self.nr_iter_wo_large_changes = 0
        self.smallest_angle_change = min(self.smallest_angle_change, angle_change_deg)
        self.smallest_offset_change = min(self.smallest_offset_change, offset_change_px)

    @staticmethod
    def resolution_step_deg(resolution_a: float, particle_diameter_a: float) -> float:
        """The angular step the resolution asks for at the particle's edge: ``360 / ceil(pi D / res)``."""
        return float(360.0 / np.ceil(np.pi * particle_diameter_a / resolution_a))

    def may_proceed(self, resolution_a: float = 0.0, particle_diameter_a: float = 0.0) -> bool:
        """RELION ``updateAngularSampling``'s condition to go finer: no resolution gain for an iteration or,
        with ``auto_resol_angles``, a resolution-based step (:meth:`resolution_step_deg`, needs both
        arguments > 0) finer than the current one unless the next order would start local searches; and
        small changes of the angles and offsets for an iteration unless ``auto_ignore_angles``."""
        by_resolution = (self.auto_resol_angles and resolution_a > 0 and particle_diameter_a > 0
                         and self.resolution_step_deg(resolution_a, particle_diameter_a) < self.fine_step_deg
                         and self.healpix_order + 1 != self.auto_local_order)
        return ((by_resolution or self.nr_iter_wo_resol_gain >= 1)
                and (self.auto_ignore_angles or self.nr_iter_wo_large_changes >= 1))

    def update(self, acc_rot_deg: float, acc_trans_px: float, offset_change_px: float, resolution_a: float = 0.0,
               particle_diameter_a: float = 0.0, max_step_px: float = 1.5) -> bool:
        """RELION ``updateAngularSampling`` (``resolution_a``, ``particle_diameter_a``: for
        ``auto_resol_angles``, see :meth:`may_proceed`); True when the sampling was made finer.

        ``max_step_px``: RELION's 1.5 Å cap on the new fine offset step, in pixels (1.5 / pixel size)."""
        if self.has_fine_enough_sampling:
            return False
        if not self.may_proceed(resolution_a, particle_diameter_a):
            return False
        if self.fine_step_deg < 0.75 * acc_rot_deg:
            self.has_fine_enough_sampling = True
            return False
        self.healpix_order += 1
        new_step = min(max_step_px, 0.75 * acc_trans_px) * 2 ** self.oversampling
        new_range = max(min(1.3 * self.offset_range_px, 5.0 * offset_change_px), 1.5 * new_step)
        if new_range > 4 * new_step:  # RELION: halve the range first, then widen the step (at most 9x9 steps)
            new_range /= 2.0
        if new_range > 4 * new_step:
            new_step = new_range / 4.0
        if new_step > self.offset_step_px:  # never coarser than before: keep the old grid
            new_step, new_range = self.offset_step_px, self.offset_range_px
        self.offset_step_px, self.offset_range_px = new_step, new_range
        self.nr_iter_wo_resol_gain = 0
        self.nr_iter_wo_large_changes = 0
        self.smallest_angle_change = self.smallest_offset_change = 999.0
        if self.healpix_order >= self.auto_local_order:
            self.local = True
            # RELION: sigma2 = 4 step^2 with the (oversampled) angular step of the new order
            self.local_sigma_deg = 2.0 * self.fine_step_deg
        return True

    def converged(self) -> bool:
        """RELION ``checkConvergence``: fine enough sampling, no resolution gain for an iteration and small
        changes of the hidden variables for one (not asked with ``auto_ignore_angles``)."""
        return self.has_fine_enough_sampling and self.nr_iter_wo_resol_gain >= 1 \
            and (self.auto_ignore_angles or self.nr_iter_wo_large_changes >= 1)
