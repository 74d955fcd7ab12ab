"""Expectation step of auto-refine as batched dense products (RELION ``expectationOneParticle``).

For Fourier pixels ``k`` (a :func:`~.fourier3d.pixel_list`), a particle ``X``, its CTF ``c`` and the
noise ``sigma2(shell)``:

``diff2[t, r] = sum_k |X_t - c P_r|^2 / (2 sigma2) = sum w|X|^2 - 2 Re((w c X_t) . conj(P_r)) + (w c^2) . |P_r|^2``

with ``w = 1/(2 sigma2)`` and ``X_t`` the image shifted by translation ``t``.  The middle term is a
real matrix product ``[Re Y, Im Y] @ [Re P, Im P]^T`` (BLAS), the others are matrix-vector products.

Two passes (adaptive oversampling 1): pass 1 on the coarse grid and the coarse pixels; the smallest
set of (translation, orientation) pairs holding ``adaptive_fraction`` of the posterior is
significant; pass 2 evaluates only their oversampled children on all current pixels.  The posterior
includes the offset prior (Gaussian around the old offset) and, for local searches, a Gaussian prior on
the rotation angle to the previous orientation (``3 sigma`` cut-off).

With ``EStepSettings.cc`` (RELION ``--firstiter_cc``, first iteration only) the score is minus the
normalised cross-correlation (:func:`cc_scores`) and each particle keeps its single best sample with
weight 1 (no marginalisation, no priors; the local-search window still applies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import weakref

import numpy as np

from ..filters import raised_cosine_sphere
from ..geometry import euler_to_matrix, matrix_to_euler
from .fourier3d import Backprojector, image_rfft, project_pixels, spread_pixels
from .sampling import (OrientationGrid, local_orientation_indices, relaxed_mates, rotation_angle_deg,
                       translation_children, translation_grid)

SHARED_LIMIT = 16_000_000  # fine orientations x pixels held in memory for a global search (complex64)

__all__ = [
    "EStepSettings", "ParticleResult", "prepare_images", "squared_differences", "posterior_weights",
    "significant_mask", "expectation", "NoiseAccumulator", "cc_scores", "NumpyOps", "EStepOps", "CoarsePrepass",
]


class EStepOps(Protocol):
    """The E-step's backend: its dense kernels (the contract is :class:`NumpyOps`' docstring).

    Implemented by :class:`NumpyOps` and ``polishplugin.core.opencl.estep_cl.OpenCLOps``.
    """

    name: str

    def project(self, grid: np.ndarray, rotations: np.ndarray, k2d: np.ndarray, pad: int) -> np.ndarray: ...

    def cross(self, x: np.ndarray, weight: np.ndarray, proj: np.ndarray, shifts_px: np.ndarray, k2d: np.ndarray,
              box: int) -> np.ndarray: ...

    def spread(self, m: int, pad: int, rotations: np.ndarray, k2d: np.ndarray, values: np.ndarray,
               weights: np.ndarray) -> tuple: ...


@dataclass
class EStepSettings:
    """Sampling and size settings of one iteration (pixels unless named otherwise)."""

    box: int
    angpix: float
    pad: int = 2
    coarse_radius: float = 8.0
    current_radius: float = 16.0
    offset_range_px: float = 5.0
    offset_step_px: float = 2.0
    sigma_offset_a: float = 10.0
    adaptive_fraction: float = 0.999
    local_sigma_deg: float | None = None
    perturbation: np.ndarray = field(default_factory=lambda: np.eye(3))
    batch: int = 32
    max_significant: int = 200  # RELION --maxsig (RELION's default is no limit; ours caps the cost)
    cc: bool = False  # --firstiter_cc: score by normalised cross-correlation, best sample only (no priors)
    ops: EStepOps = field(default_factory=lambda: NumpyOps())  # projection + cross-product backend
    corrections: bool = False  # also sum each particle's residual power and scale products (--norm/--scale)
    scale_pixels: np.ndarray | None = None  # bool over the pixels: shells used for the scale products
    relax_ops: np.ndarray | None = None  # --relax_sym: local searches around every mate of the previous pose
    prepass_radius: float | None = None  # global searches at order >= 3: CoarsePrepass on pixels within this radius


class NumpyOps:
    """The E-step's dense kernels on the host (numpy/BLAS).

    ``project(grid, rotations, k2d, pad)`` -> ``(n_rot, n_pix)`` complex64 (:func:`project_pixels`);
    ``cross(x, weight, proj, shifts_px, k2d, box)`` -> ``Re sum_k weight X_t conj(P_r)`` as
    ``(n_part, n_trans, n_rot)``; ``spread(m, pad, rotations, k2d, values, weights)`` -> the back-projection
    sums of :func:`spread_pixels` (what :class:`Backprojector` spreads with).
    ``polishplugin.core.opencl.estep_cl.OpenCLOps`` is the device twin with the same contract.
    """

    name = "numpy"

    def project(self, grid: np.ndarray, rotations: np.ndarray, k2d: np.ndarray, pad: int) -> np.ndarray:
        return project_pixels(grid, rotations, k2d, pad)

    def cross(self, x, weight, proj, shifts_px, k2d, box) -> np.ndarray:
        return _cross_products(x, weight, proj, shifts_px, k2d, box)

    def spread(self, m, pad, rotations, k2d, values, weights) -> tuple:
        return spread_pixels(m, pad, rotations, k2d, values, weights)


@dataclass
class ParticleResult:
    """Max-posterior pose and bookkeeping of one particle."""

    angles: np.ndarray  # rot, tilt, psi (degrees)
    origin_px: np.ndarray  # xy
    pmax: float
    n_significant: int
    offset_change2_a2: float  # posterior-weighted |t - t_old|^2 (Å^2)
    min_diff2: float
    resid2: float = 0.0  # posterior-weighted sum_k |X - a c P|^2 (best amplitude a), current pixels (norm)
    xa: float = 0.0  # posterior-weighted sum_k Re(conj(c P) X) over the scale pixels (scale correction)
    aa: float = 0.0  # posterior-weighted sum_k |c P|^2 over the scale pixels


def prepare_images(images: np.ndarray, old_offsets_px: np.ndarray, mask_radius_px: float,
                   edge_px: float = 5.0, zero_mask: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Shift images by their rounded old offsets, soft-mask them (background 0) and transform.

    Returns the rfft ``(n, N, N//2+1)`` (origin at ``N//2``) and the rounded offsets ``(n, 2)``.
    """
    images = np.asarray(images, np.float32)
    n_box = images.shape[-1]
    rounded = np.rint(old_offsets_px).astype(np.int64)
    out = np.empty_like(images)
    for i, img in enumerate(images):
        out[i] = np.roll(img, (rounded[i, 1], rounded[i, 0]), axis=(0, 1))
    mask = raised_cosine_sphere((n_box, n_box), mask_radius_px, edge_px).astype(np.float32)
    if zero_mask:
        out *= mask
    else:
        bg = ((out * (1 - mask)).sum((1, 2)) / max((1 - mask).sum(), 1))[:, None, None]
        out = out * mask + bg * (1 - mask)
    return image_rfft(out).astype(np.complex64), rounded


def _phases(shifts_px: np.ndarray, k2d: np.ndarray, box: int) -> np.ndarray:
    """``exp(-2 pi i k.s / N)`` for shifts ``(..., 2)``: ``(..., n_pix)`` complex64.

    For integer pixels (a :func:`~.fourier3d.pixel_list`) the phase is the product of a phase per distinct
    ``kx`` and one per distinct ``ky`` (``N + 1`` sines and cosines per shift instead of one per pixel)."""
    shifts_px = np.asarray(shifts_px, np.float64)
    kx, ky = np.rint(k2d[:, 0]).astype(np.int64), np.rint(k2d[:, 1]).astype(np.int64)
    if len(k2d) == 0 or not (np.array_equal(kx, k2d[:, 0]) and np.array_equal(ky, k2d[:, 1])):
        arg = (shifts_px[..., None, 0] * k2d[:, 0] + shifts_px[..., None, 1] * k2d[:, 1]) * (-2 * np.pi / box)
        return (np.cos(arg) + 1j * np.sin(arg)).astype(np.complex64)
    x0, y0 = int(kx.min()), int(ky.min())
    ax = (-2 * np.pi / box) * shifts_px[..., None, 0] * np.arange(x0, int(kx.max()) + 1)
    ay = (-2 * np.pi / box) * shifts_px[..., None, 1] * np.arange(y0, int(ky.max()) + 1)
    cx, sx = np.cos(ax)[..., kx - x0], np.sin(ax)[..., kx - x0]
    cy, sy = np.cos(ay)[..., ky - y0], np.sin(ay)[..., ky - y0]
    # the complex product as separate float64 multiplies and adds: each rounded once, whatever the arrays'
    # alignment (numpy's vectorised complex multiply may fuse them differently for different alignments,
    # which made runs differ in the last bits from one process to the next)
    out = np.empty(cx.shape, np.complex64)
    out.real = cx * cy - sx * sy
    out.imag = cx * sy + sx * cy
    return out


class _ProjectionForms:
    """The forms of one projection array that every batch of a global search needs again: ``[Re P, Im P]``
    (float32, the BLAS operand) and ``|P|^2`` (float32).  Kept for the last large array seen (a weak
    reference, so an array that was freed is never matched): a global search's shared projections are
    converted once per iteration instead of once per batch of particles."""

    MIN_ROWS = 1024  # smaller arrays (a particle's own local or pass-2 projections) are not kept

    def __init__(self):
        self._ref: weakref.ref | None = None
        self._forms: tuple[np.ndarray, np.ndarray] | None = None

    def get(self, proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._ref is not None and self._forms is not None and self._ref() is proj:
            return self._forms
        forms = (np.concatenate([proj.real, proj.imag], axis=-1).astype(np.float32, copy=False),
                 (proj.real ** 2 + proj.imag ** 2).astype(np.float32, copy=False))
        if len(proj) >= self.MIN_ROWS:
            self._ref, self._forms = weakref.ref(proj), forms
        return forms


_FORMS = _ProjectionForms()


def squared_differences(x: np.ndarray, ctf: np.ndarray, w: np.ndarray, proj: np.ndarray,
                        shifts_px: np.ndarray, k2d: np.ndarray, box: int, ops: EStepOps | None = None) -> np.ndarray:
    """``diff2 (n_part, n_trans, n_rot)`` of images ``x (n_part, n_pix)`` shifted by
    ``shifts_px (n_part, n_trans, 2)`` against projections ``proj (n_rot, n_pix)``.

    ``ctf (n_part, n_pix)``, ``w (n_part, n_pix)`` = ``1/(2 sigma2)`` per pixel.
    """
    cross = (ops or _NUMPY).cross(x, ctf * w, proj, shifts_px, k2d, box)
    xx = (w * np.abs(x) ** 2).sum(-1)
    pp = (w * ctf * ctf) @ _FORMS.get(proj)[1].T  # (p, r)
    out = np.multiply(cross, -2.0, dtype=np.float64)
    out += xx[:, None, None]
    out += pp[:, None, :]
    return out


def _cross_products(x: np.ndarray, weight: np.ndarray, proj: np.ndarray, shifts_px: np.ndarray, k2d: np.ndarray,
                    box: int) -> np.ndarray:
    """``Re sum_k weight X_t conj(P_r)`` as ``(n_part, n_trans, n_rot)``: one real BLAS product."""
    n_part, n_trans = shifts_px.shape[:2]
    y = (x * weight)[:, None, :] * _phases(shifts_px, k2d, box)  # (p, t, k)
    yr = np.concatenate([y.real, y.imag], axis=-1).reshape(n_part * n_trans, -1).astype(np.float32, copy=False)
    return (yr @ _FORMS.get(proj)[0].T).reshape(n_part, n_trans, -1)


def cc_scores(x: np.ndarray, ctf: np.ndarray, proj: np.ndarray, shifts_px: np.ndarray, k2d: np.ndarray,
              box: int, ops: EStepOps | None = None) -> np.ndarray:
    """Minus the normalised cross-correlation ``Re sum X_t conj(c P_r) / sqrt(sum |c P_r|^2 sum |X|^2)``,
    shaped like :func:`squared_differences` (smaller is better): RELION's first-iteration score with
    ``--firstiter_cc``, blind to the reference's absolute scale."""
    cross = (ops or _NUMPY).cross(x, ctf, proj, shifts_px, k2d, box).astype(np.float64)
    xx = (np.abs(x) ** 2).sum(-1).astype(np.float64)
    pp = ((ctf * ctf) @ _FORMS.get(proj)[1].T).astype(np.float64)  # (p, r)
    return -cross / np.sqrt(np.maximum(xx[:, None, None] * pp[:, None, :], 1e-300))


def _scores(x, ctf, w, proj, shifts_px, k2d, box, cc: bool, ops: EStepOps | None = None) -> np.ndarray:
    if cc:
        return cc_scores(x, ctf, proj, shifts_px, k2d, box, ops)
    return squared_differences(x, ctf, w, proj, shifts_px, k2d, box, ops)


def _best_only(score: np.ndarray) -> np.ndarray:
    """Weight 1 on the smallest finite score, 0 elsewhere (RELION's binarised weights with CC)."""
    out = np.zeros(score.shape)
    out[np.unravel_index(np.argmin(np.where(np.isfinite(score), score, np.inf)), score.shape)] = 1.0
    return out


def posterior_weights(log_post: np.ndarray) -> np.ndarray:
    """Normalised ``exp(log_post - max)`` over all entries (``-inf`` entries get weight 0)."""
    m = np.max(log_post)
    p = np.exp(log_post - m)
    return p / p.sum()


def _descending_candidates(flat: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the entries of ``flat`` (weights >= 0) that can belong to the smallest set holding
    ``fraction`` of the total, largest first.

    Entries below ``t = (1 - fraction) total / n`` sum to less than ``(1 - fraction) total``, so the largest
    entries reach ``fraction`` of the total before any of them is needed: only the entries ``>= t`` are sorted
    (a global search has ~10^6 entries per particle, of which a few hundred are above ``t``)."""
    total = float(flat.sum())
    cand = np.nonzero(flat >= (1.0 - fraction) * total / flat.size)[0] if total > 0 else np.arange(flat.size)
    return cand[np.argsort(flat[cand], kind="stable")[::-1]]


def significant_mask(weights: np.ndarray, fraction: float, limit: int = 0) -> np.ndarray:
    """Smallest set of entries whose summed weight reaches ``fraction`` (RELION ``significant_weight``);
    with ``limit > 0`` at most the ``limit`` largest of them."""
    return _significant(weights, fraction, limit)[0]


def _significant(weights: np.ndarray, fraction: float, limit: int = 0) -> tuple[np.ndarray, int]:
    """:func:`significant_mask` and the size of the set before the ``limit``."""
    flat = weights.ravel()
    order = _descending_candidates(flat, fraction)
    csum = np.cumsum(flat[order])
    n_sig = min(int(np.searchsorted(csum, fraction * float(flat.sum())) + 1), len(order))
    mask = np.zeros(flat.size, bool)
    mask[order[:min(n_sig, limit) if limit > 0 else n_sig]] = True
    return mask.reshape(weights.shape), n_sig


class NoiseAccumulator:
    """Sums ``|X - c P|^2`` per shell (posterior-weighted) for the sigma2 update."""

    def __init__(self, n_shells: int):
        self.wsum = np.zeros(n_shells)
        self.count = np.zeros(n_shells)
        self.n_images = 0

    def add(self, resid2: np.ndarray, shells: np.ndarray) -> None:
        n = len(self.wsum)
        sel = shells < n
        self.wsum += np.bincount(shells[sel], resid2[sel], n)
        self.count += np.bincount(shells[sel], minlength=n)[:n]
        self.n_images += 1

    def sigma2(self, previous: np.ndarray) -> np.ndarray:
        """Per-component ``sigma2 = sum|r|^2 / (2 n_pix)``; shells without data keep ``previous``."""
        out = np.array(previous, np.float64)
        ok = self.count > 0
        out[ok] = self.wsum[ok] / (2.0 * self.count[ok])
        for i in range(1, len(out)):  # RELION: tiny values replaced by the previous shell
            if out[i] < 1e-14:
                out[i] = out[i - 1]
        return out


def _offset_logprior(trans_px: np.ndarray, prior_px: np.ndarray, sigma_a: float, angpix: float) -> np.ndarray:
    d2 = (((trans_px - prior_px) * angpix) ** 2).sum(-1)
    return -d2 / (2.0 * sigma_a ** 2)


def _rotation_logprior(mats: np.ndarray, prev: np.ndarray, sigma_deg: float | None) -> np.ndarray:
    """Gaussian log prior on the angle to ``prev`` ``(3, 3)`` (or to the nearest of several centres
    ``(k, 3, 3)``: :func:`~.sampling.relaxed_mates`), ``-inf`` beyond ``3 sigma``; when no orientation lies
    within ``3 sigma`` (a --sigma_ang narrower than the grid), the Gaussian without the cut-off."""
    if sigma_deg is None:
        return np.zeros(len(mats))
    if prev.ndim == 3:
        ang = np.min([rotation_angle_deg(mats, c[None]) for c in prev], axis=0)
    else:
        ang = rotation_angle_deg(mats, prev[None])
    inside = ang <= 3 * sigma_deg
    lp = -ang ** 2 / (2 * sigma_deg ** 2)
    return np.where(inside, lp, -np.inf) if inside.any() else lp


def expectation(grid3d: np.ndarray, orient: OrientationGrid, x_all: np.ndarray, ctf_all: np.ndarray,
                sigma2_pix: np.ndarray, k2d: np.ndarray, shells_pix: np.ndarray, old_offsets_px: np.ndarray,
                rounded_px: np.ndarray, prev_mats: np.ndarray, s: EStepSettings,
                bp: Backprojector | None, noise: NoiseAccumulator | None,
                progress: Callable[[int, int], None] | None = None) -> list[ParticleResult]:
    """E-step of a set of particles (one half set) against the reference ``grid3d``.

    ``x_all``/``ctf_all`` ``(n, n_pix)`` hold the current-size pixels ``k2d`` (sorted by radius);
    ``sigma2_pix (n_pix,)``; ``old_offsets_px``/``rounded_px (n, 2)``; ``prev_mats (n, 3, 3)``.
    Accumulates the back-projection and noise sums when given; returns per-particle results.
    ``progress(pass, n)``, when given, is told each time ``n`` more particles finished pass 1 or 2.

    Pass 1 runs for all particles first.  In a global search, when the particles' significant
    orientations overlap (broad posteriors), the oversampled children are projected once for the
    union and the weighted slices are summed per orientation before one back-projection.
    """
    n_coarse = _pixels_within(k2d, s.coarse_radius)
    kc = k2d[:n_coarse]
    w_all = (0.5 / sigma2_pix).astype(np.float32)
    trans = translation_grid(s.offset_range_px, s.offset_step_px)
    perturb = s.perturbation
    glob = s.local_sigma_deg is None
    local_range_deg = 0.0 if s.local_sigma_deg is None else 3 * s.local_sigma_deg  # local searches: +-3 sigma
    pre = None
    if glob:
        all_idx = np.arange(len(orient))
        global_mats = orient_matrices(orient, all_idx) @ perturb
        global_proj = s.ops.project(grid3d, global_mats, kc, s.pad)
        if s.prepass_radius is not None and orient.order >= 3 and not s.cc:
            pre = CoarsePrepass(orient, perturb, grid3d, k2d, s)
    frac_all = old_offsets_px - rounded_px
    firsts = []
    centres = [relaxed_mates(m, s.relax_ops) for m in prev_mats] if not glob else prev_mats
    for a in range(0, len(x_all), s.batch):
        sl = slice(a, a + s.batch)
        shifts = frac_all[sl, None, :] + trans[None]  # residual shift applied to the pre-shifted image
        if pre is not None:
            candidates = pre.candidates(x_all[sl], ctf_all[sl], w_all, shifts, trans, s)
        elif glob:
            d2 = _scores(x_all[sl, :n_coarse], ctf_all[sl, :n_coarse], w_all[None, :n_coarse],
                         global_proj, shifts, kc, s.box, s.cc, s.ops)
        for j in range(len(x_all[sl])):
            i = a + j
            if pre is not None:
                idx = candidates[j]
                mats = global_mats[idx]
                diff = _scores(x_all[i:i + 1, :n_coarse], ctf_all[i:i + 1, :n_coarse], w_all[None, :n_coarse],
                               global_proj[idx], shifts[j:j + 1], kc, s.box, s.cc, s.ops)[0]
            elif glob:
                idx, mats, diff = all_idx, global_mats, d2[j]
            else:
                idx = local_orientation_indices(orient, centres[i], local_range_deg, perturb)
                mats = orient_matrices(orient, idx) @ perturb
                proj = s.ops.project(grid3d, mats, kc, s.pad)
                diff = _scores(x_all[i:i + 1, :n_coarse], ctf_all[i:i + 1, :n_coarse],
                               w_all[None, :n_coarse], proj, shifts[j:j + 1], kc, s.box, s.cc, s.ops)[0]
            firsts.append(_pass1(idx, mats, diff, trans, centres[i], s))
        if progress is not None:
            progress(1, len(x_all[sl]))
    shared = None
    if glob:
        union = np.unique(np.concatenate([f[0][f[2]] for f in firsts]))
        per_particle = sum(len(f[2]) for f in firsts)
        if per_particle > 2 * len(union) and 8 * len(union) * len(k2d) <= SHARED_LIMIT:
            kids = orient.children(union).reshape(-1, 3)
            fine_mats = euler_to_matrix(kids[:, 0], kids[:, 1], kids[:, 2]) @ perturb
            fine_proj = s.ops.project(grid3d, fine_mats, k2d, s.pad)
            row_of = np.full(len(orient), -1, np.int64)
            row_of[union] = np.arange(len(union))
            shared = (fine_mats, fine_proj, np.zeros(fine_proj.shape, np.complex64),
                      np.zeros(fine_proj.shape, np.float32), row_of)
    results = []
    for i, first in enumerate(firsts):
        results.append(_pass2(grid3d, orient, first, x_all[i], ctf_all[i], w_all, sigma2_pix, k2d, shells_pix,
                              frac_all[i], old_offsets_px[i], centres[i], s, bp, noise, shared))
        if progress is not None:
            progress(2, 1)
    if shared is not None and bp is not None:
        fine_mats, _, acc_d, acc_w, _ = shared
        rows = np.nonzero(acc_w.any(axis=1))[0]
        for b in range(0, len(rows), 512):
            r = rows[b:b + 512]
            bp.insert(acc_d[r], acc_w[r], fine_mats[r], k2d)
    return results


_NUMPY = NumpyOps()


def _pixels_within(k2d: np.ndarray, radius: float) -> int:
    """How many of the pixels ``k2d`` (sorted by radius) lie within ``radius`` (at least 1, at most all)."""
    n = int(np.searchsorted(np.sqrt((k2d ** 2).sum(1)), radius, side="left"))
    return max(1, min(n, len(k2d)))


class CoarsePrepass:
    """A global search's pre-pass one HEALPix order coarser (``EStepSettings.prepass_radius``).

    Pass 1 of a global search at order ``o >= 3`` scores every orientation of the grid (``12 4^o 6 2^o`` in
    C1: 36864 at order 3) for every translation; that product is most of a global iteration.  The pre-pass
    scores the order ``o - 1`` grid (8x fewer orientations) on the pixels within ``prepass_radius`` (the coarse
    size RELION derives for that step: ``coarse_image_size``), takes each particle's significant parents (the
    smallest set holding ``adaptive_fraction`` of the pre-pass posterior, with the offset prior) and hands
    pass 1 only their children on the order-``o`` grid: the 4 nested HEALPix pixels and the 3 in-plane angles
    ``2q - 1, 2q, 2q + 1`` of parent angle ``q``, which cover the parent's cell.  Parents are the order
    ``o - 1`` pixels of the grid's own (symmetry-reduced) pixels, so every orientation of the grid has one.
    """

    MIN_PARENTS = 64  # at least the best parents (a posterior sharper than the grid hides its neighbours)

    def __init__(self, orient: OrientationGrid, perturb: np.ndarray, grid3d: np.ndarray, k2d: np.ndarray,
                 s: EStepSettings):
        parents = OrientationGrid(orient.order - 1, pixels=np.unique(orient.pixels // 4))
        self.n_pix = _pixels_within(k2d, float(s.prepass_radius if s.prepass_radius is not None else np.inf))
        self.k = k2d[:self.n_pix]
        self.proj = s.ops.project(grid3d, orient_matrices(parents, np.arange(len(parents))) @ perturb, self.k,
                                  s.pad)
        # children[parent orientation] = orientation indices of the grid (-1 where a child pixel is not in it)
        position = np.full(12 * 4 ** orient.order, -1, np.int64)
        position[orient.pixels] = np.arange(len(orient.pixels))
        kid_pix = position[parents.pixels[:, None] * 4 + np.arange(4)[None, :]]  # (n_parent_pix, 4)
        q = np.arange(parents.n_psi)
        kid_psi = (2 * q[:, None] + np.array([-1, 0, 1])[None, :]) % orient.n_psi  # (n_parent_psi, 3)
        kids = kid_pix[:, None, :, None] * orient.n_psi + kid_psi[None, :, None, :]
        kids = np.where(kid_pix[:, None, :, None] >= 0, kids, -1)
        self.children = kids.reshape(len(parents), -1)

    def candidates(self, x: np.ndarray, ctf: np.ndarray, w: np.ndarray, shifts: np.ndarray, trans: np.ndarray,
                   s: EStepSettings) -> list[np.ndarray]:
        """Per particle of the batch, the sorted orientation indices of the grid that pass 1 scores."""
        n = self.n_pix
        d2 = _scores(x[:, :n], ctf[:, :n], w[None, :n], self.proj, shifts, self.k, s.box, False, s.ops)
        lp_t = _offset_logprior(trans, np.zeros(2), s.sigma_offset_a, s.angpix)
        out = []
        for diff in d2:
            post = posterior_weights(-diff + lp_t[:, None]).sum(axis=0)  # per parent orientation
            keep = significant_mask(post, s.adaptive_fraction)
            keep[np.argpartition(post, -self.MIN_PARENTS)[-self.MIN_PARENTS:]] = True
            kids = self.children[np.nonzero(keep)[0]].ravel()
            out.append(np.unique(kids[kids >= 0]))
        return out


def orient_matrices(orient: OrientationGrid, idx: np.ndarray) -> np.ndarray:
    """Rotation matrices of orientation indices of ``orient``."""
    ang = orient.angles(idx)
    return euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2])


def _pass1(idx, mats, diff, trans, prev_mat, s: EStepSettings):
    """Pass-1 posterior and its significant (translation, orientation) pairs.

    Returns ``(idx, sig_t, unique_r, inv_r, unique_t, inv_t, n_sig)``; ``unique_r`` indexes ``idx``.
    """
    lp_t = _offset_logprior(trans, np.zeros(2), s.sigma_offset_a, s.angpix)
    lp_r = _rotation_logprior(mats, prev_mat, s.local_sigma_deg)
    if s.cc:  # best coarse sample only; the local window still limits the orientations
        weights = _best_only(np.where(np.isfinite(lp_r)[None, :], diff, np.inf))
    else:
        weights = posterior_weights(-diff + lp_t[:, None] + lp_r[None, :])
    sig, n_sig = _significant(weights, s.adaptive_fraction, s.max_significant)
    sig_t, sig_r = np.nonzero(sig)
    ut, inv_t = np.unique(sig_t, return_inverse=True)
    ur, inv_r = np.unique(sig_r, return_inverse=True)
    return idx, sig_t, ur, inv_r, ut, inv_t, n_sig


def _pass2(grid3d, orient, first, x, ctf, w, sigma2_pix, k2d, shells_pix, frac, old_offset, prev_mat,
           s: EStepSettings, bp, noise, shared=None) -> ParticleResult:
    """Oversampled children of the significant pairs, accumulation and the max-posterior pose."""
    idx, _, ur, inv_r, ut, inv_t, n_sig = first
    trans = translation_grid(s.offset_range_px, s.offset_step_px)
    t_kids = translation_children(trans[ut], s.offset_step_px).reshape(-1, 2)
    if shared is not None:
        rows = (shared[4][idx[ur]][:, None] * 8 + np.arange(8)[None, :]).ravel()
        kid_mats, proj = shared[0][rows], shared[1][rows]
    else:
        rows = None
        r_kids = orient.children(idx[ur]).reshape(-1, 3)
        kid_mats = euler_to_matrix(r_kids[:, 0], r_kids[:, 1], r_kids[:, 2]) @ s.perturbation
        proj = s.ops.project(grid3d, kid_mats, k2d, s.pad)
    allowed = np.zeros((len(ut), len(ur)), bool)
    allowed[inv_t, inv_r] = True
    # only the children of significant pairs: one product per significant coarse translation
    diff2 = np.full((4 * len(ut), 8 * len(ur)), np.inf)
    for jt in range(len(ut)):
        cols = (np.nonzero(allowed[jt])[0][:, None] * 8 + np.arange(8)[None, :]).ravel()
        shifts = (frac[None, :] + t_kids[4 * jt:4 * jt + 4])[None]
        diff2[4 * jt:4 * jt + 4, cols] = _scores(x[None], ctf[None], w[None], proj[cols], shifts, k2d, s.box,
                                                 s.cc, s.ops)[0]
    allowed = np.repeat(np.repeat(allowed, 4, axis=0), 8, axis=1)
    log_post = -diff2 + _offset_logprior(t_kids, np.zeros(2), s.sigma_offset_a, s.angpix)[:, None] \
        + _rotation_logprior(kid_mats, prev_mat, s.local_sigma_deg)[None, :]
    log_post = np.where(allowed, log_post, -np.inf)
    wts = _best_only(np.where(np.isfinite(log_post), diff2, np.inf)) if s.cc else posterior_weights(log_post)
    best_t, best_r = np.unravel_index(np.argmax(wts), wts.shape)
    offset_change2 = float((wts.sum(1) * ((t_kids * s.angpix) ** 2).sum(1)).sum())
    sums = (0.0, 0.0, 0.0)
    if bp is not None or noise is not None or s.corrections:
        target = (shared[2], shared[3], rows) if shared is not None else None
        sums = _accumulate(wts, proj, kid_mats, x, ctf, sigma2_pix, k2d, shells_pix, frac[None, :] + t_kids, s, bp,
                           noise, target)
    rot, tilt, psi = matrix_to_euler(kid_mats[best_r])
    return ParticleResult(np.array([rot, tilt, psi], np.float64), old_offset + t_kids[best_t],
                          float(wts[best_t, best_r]), n_sig, offset_change2, float(np.min(diff2[allowed])), *sums)


def _accumulate(wts, proj, mats, x, ctf, sigma2_pix, k2d, shells_pix, shifts, s, bp, noise,
                target=None) -> tuple[float, float, float]:
    """Add the particle's weighted slices to the back-projector (or to the shared per-orientation
    sums ``target = (data, weight, row ids)``) and its weighted residual power to ``noise``.

    Returns ``(resid2, xa, aa)`` (zeros unless ``s.corrections``): the posterior-weighted residual
    power ``sum_k |X - a c P|^2`` with the particle's best amplitude ``a`` and the scale products
    ``sum_k Re(conj(c P) X)``, ``sum_k |c P|^2`` over ``s.scale_pixels`` (RELION ``exp_wsum_norm_correction``,
    ``exp_wsum_scale_correction_XA/AA``).
    """
    # RELION storeWeightedSums: only the samples of the smallest set holding adaptive_fraction of the posterior
    wts = np.where(significant_mask(wts, s.adaptive_fraction), wts, 0.0)
    keep_r = np.nonzero(wts.sum(0) > 0)[0]
    keep_t = np.nonzero(wts.sum(1) > 0)[0]
    w_rt = wts[np.ix_(keep_t, keep_r)]
    xt = x[None, :] * _phases(shifts[keep_t], k2d, s.box)  # (t, k)
    sums = w_rt.T.astype(np.complex64) @ xt  # (r, k): sum_t w X_t
    wr = w_rt.sum(0)  # (r,)
    p = proj[keep_r]
    inv_s2 = (1.0 / sigma2_pix).astype(np.float32)
    if target is not None:
        rows = target[2][keep_r]
        target[0][rows] += sums * (ctf * inv_s2)[None, :]
        target[1][rows] += wr[:, None].astype(np.float32) * (ctf * ctf * inv_s2)[None, :]
    elif bp is not None:
        bp.insert(sums * (ctf * inv_s2)[None, :], wr[:, None] * (ctf * ctf * inv_s2)[None, :], mats[keep_r], k2d)
    if noise is None and not s.corrections:
        return 0.0, 0.0, 0.0
    wtot = max(wr.sum(), 1e-300)
    cp = ctf[None, :] * p
    xa_pix = (np.conj(cp) * sums).real.sum(0) / wtot  # sum_r,t w Re(conj(c P_r) X_t), per pixel
    aa_pix = (wr[:, None] * np.abs(cp) ** 2).sum(0) / wtot
    resid = (np.abs(x) ** 2 - 2.0 * xa_pix + aa_pix).astype(np.float64)
    if noise is not None:
        noise.add(resid, shells_pix)
    if not s.corrections:
        return 0.0, 0.0, 0.0
    sel = slice(None) if s.scale_pixels is None else s.scale_pixels
    # residual power with the particle's best model amplitude (sum XA / sum AA): an amplitude error is
    # left to the scale correction instead of being read as noise (see refine3d's module docstring)
    xa_tot, aa_tot = float(xa_pix.sum()), float(aa_pix.sum())
    resid2 = float(resid.sum()) - (xa_tot - aa_tot) ** 2 / aa_tot if aa_tot > 0 else float(resid.sum())
    return resid2, float(xa_pix[sel].sum()), float(aa_pix[sel].sum())
