"""M-step of 3D auto-refine besides the reconstruction itself (RELION ``MlOptimiser::maximization*``).

Solvent flattening of the references (``flatten_solvent``, with RELION's second mask); the noise spectrum
at the start (``initial_noise_sums`` summed over the ranks, then ``initial_sigma2``), the offsets' prior
sigma, the per-particle normalisation (``rlnNormCorrection``) and per-group scale
(``rlnGroupScaleCorrection``) corrections, the solvent-corrected gold-standard FSC and the low-resolution
join of the two half sets.  Pure numpy on arrays; the E-step (:mod:`.estep`) supplies the sums, the
3D grids come from :mod:`.fourier3d`.
"""

from __future__ import annotations

import numpy as np

from ..fsc import fsc as map_fsc, fsc_true, phase_randomization_shell, randomize_phases_beyond
from .estep import prepare_images
from .fourier3d import grid_shells, halfgrid_fsc, pixel_list

__all__ = [
    "MIN_SIGMA2_OFFSET_A2", "initial_noise_sums", "initial_sigma2", "offsets_sigma_a", "updated_norms",
    "updated_scales", "gold_standard_fsc", "solvent_corrected_fsc", "low_resolution_join_shell",
    "join_low_resolution", "flatten_solvent",
]

#: floor of the offsets' prior variance (Å^2), as RELION's ``sigma2_offset`` update
MIN_SIGMA2_OFFSET_A2 = 2.0


# ------------------------------------------------------------------------------- noise spectrum
def initial_noise_sums(images: np.ndarray, offsets_px: np.ndarray, mask_radius: float, mask_edge_px: float,
                       zero_mask: bool) -> np.ndarray:
    """Per-pixel sums ``[sum |X|^2, sum Re X, sum Im X, n]`` of the masked images ``(n, N, N)`` over the
    Fourier pixels up to Nyquist (zeros for no image).  Sums of several ranks add up; they become the
    initial noise spectrum in :func:`initial_sigma2`."""
    box = images.shape[-1]
    iy, ix, k = pixel_list(box, box / 2 + 1)
    out = np.zeros(3 * len(k) + 1)
    if len(images) == 0:
        return out
    x, _ = prepare_images(images, offsets_px, mask_radius, mask_edge_px, zero_mask)
    xs = x[:, iy, ix].astype(np.complex128)
    out[:len(k)] = (np.abs(xs) ** 2).sum(0)
    out[len(k):2 * len(k)] = xs.real.sum(0)
    out[2 * len(k):3 * len(k)] = xs.imag.sum(0)
    out[-1] = len(xs)
    return out


def initial_sigma2(sums: np.ndarray, box: int) -> np.ndarray:
    """Initial noise spectrum ``(N//2+1,)`` from :func:`initial_noise_sums`: mean power of the masked
    images minus the power of their mean, per shell, per (real or imaginary) component; empty shells
    take the previous shell's value (RELION ``calculateSumOfPowerSpectraAndAverageImage``)."""
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


def offsets_sigma_a(sum_offset_change2_a2: float, n_particles: float) -> float:
    """Prior sigma of the offsets (Å) from the posterior-weighted squared offset changes of all particles:
    ``sqrt(max(sum / (2 n), MIN_SIGMA2_OFFSET_A2))`` (two dimensions)."""
    return float(np.sqrt(max(sum_offset_change2_a2 / (2 * max(n_particles, 1)), MIN_SIGMA2_OFFSET_A2)))


# ------------------------------------------------------------------------------ corrections
def updated_norms(x: np.ndarray, iy: np.ndarray, ix: np.ndarray, resid2: np.ndarray, norm: np.ndarray,
                  factor: np.ndarray, avg_norm: float) -> np.ndarray:
    """New rlnNormCorrection: ``norm / avg_norm * sqrt(2 wsum)`` with ``wsum`` the posterior-weighted
    residual power ``resid2`` of the (corrected) image up to the current size (pixels ``iy, ix``) plus
    its power beyond it up to Nyquist (RELION ``exp_wsum_norm_correction``; ``x`` is the uncorrected
    transform ``(n, N, N//2+1)``, ``factor`` the correction applied to it in the E-step)."""
    box = x.shape[1]
    fy, fx, _ = pixel_list(box, box / 2.0 + 0.5)
    beyond = (np.abs(x[:, fy, fx]) ** 2).sum(1, dtype=np.float64) - (np.abs(x[:, iy, ix]) ** 2).sum(1, dtype=np.float64)
    wsum = resid2 + np.maximum(beyond, 0.0) * factor ** 2
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


# ------------------------------------------------------------------------ gold-standard FSC
def solvent_corrected_fsc(h1: np.ndarray, h2: np.ndarray, mask: np.ndarray, current_size: int,
                          seed: int) -> np.ndarray:
    """FSC of the unregularised half maps corrected for the solvent mask (RELION
    ``reconstructUnregularisedMapAndCalculateSolventCorrectedFSC``): phases randomised beyond the shell
    where the unmasked FSC drops below 0.8 (seeds ``seed`` and ``seed + 1``), ``(FSC_m - FSC_n)/(1 - FSC_n)``
    from two shells further on, and 0 where the randomised FSC exceeds the masked one; 0 from
    ``current_size // 2``, 1 at shell 0."""
    unmasked = map_fsc(h1, h2)
    at = phase_randomization_shell(unmasked, 0.8)
    if at is None:
        out = unmasked.copy()
    else:
        masked = map_fsc(h1 * mask, h2 * mask)
        rand = map_fsc(randomize_phases_beyond(h1, at, seed) * mask, randomize_phases_beyond(h2, at, seed + 1) * mask)
        out = fsc_true(masked, rand, at)
        start = at + 2
        out[start:] = np.where(rand[start:] > masked[start:], 0.0, out[start:])
    out[current_size // 2:] = 0.0
    out[0] = 1.0
    return out


def gold_standard_fsc(d1: np.ndarray, w1: np.ndarray, d2: np.ndarray, w2: np.ndarray, pad: int, box: int,
                      current_size: int) -> np.ndarray:
    """FSC of the two half sets' back-projected grids (data, weight), 0 from ``current_size // 2``."""
    fsc = halfgrid_fsc(d1, w1, d2, w2, pad, box)
    fsc[current_size // 2:] = 0.0
    return fsc


# ----------------------------------------------------------------------- low-resolution join
def low_resolution_join_shell(box: int, angpix: float, join_resolution_a: float, resolution_a: float) -> int:
    """Shell up to which the half sets are averaged (``--low_resol_join_halves``, never beyond the
    current resolution); 0 when ``join_resolution_a <= 0`` (halves never joined)."""
    if join_resolution_a <= 0:
        return 0
    return int(np.ceil(box * angpix / max(join_resolution_a, resolution_a)))


def join_low_resolution(d1: np.ndarray, w1: np.ndarray, d2: np.ndarray, w2: np.ndarray, join_shell: int,
                        pad: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The half sets' grids (data, weight) with their average in both below shell ``join_shell`` (RELION
    ``joinTwoHalvesAtLowResolution``); unchanged when ``join_shell <= 0``."""
    if join_shell <= 0:
        return d1, w1, d2, w2
    low = grid_shells(d1.shape[0], pad) <= join_shell
    d = np.where(low, 0.5 * (d1 + d2), 0)
    w = np.where(low, 0.5 * (w1 + w2), 0)
    return (np.where(low, d, d1), np.where(low, w, w1), np.where(low, d, d2), np.where(low, w, w2))


# --------------------------------------------------------------------------- solvent flattening
def flatten_solvent(ref: np.ndarray, mask: np.ndarray, mask2: np.ndarray | None = None) -> np.ndarray:
    """The reference flattened as RELION's ``solventFlatten``: ``ref * mask``; with a second mask ``mask2``
    (``--solvent_mask2``, values in [0, 1], 1 = the region to flatten, e.g. a virion's interior or a
    micelle) the masked map then becomes ``(1 - m2) map + m2 a`` with ``a`` the ``m2``-weighted mean of the
    masked map (RELION ``softMaskOutsideMap(map, mask2, invert)``); ``mask2`` must not be all zero."""
    out = ref * mask
    if mask2 is None:
        return out
    m2 = np.asarray(mask2, np.float64)
    avg = float((m2 * out).sum() / m2.sum())
    return (1.0 - m2) * out + m2 * avg
