"""Orientation and translation grids of auto-refine (RELION ``src/healpix_sampling.cpp``).

Directions are HEALPix pixel centres (nested numbering, ``Npix = 12 * 4**order``), rot = phi in
[-180, 180), tilt = acos(z).  In-plane angles psi are multiples of ``360 / (6 * 2**order)``.  An
orientation is the pair (direction index, psi index); its matrix is ``euler_to_matrix(rot, tilt, psi)``.

Symmetry: orientation ``A`` and ``A R^T`` (``R`` in the point group) give the same projection, and
the viewing direction ``A^T z`` moves to ``R A^T z``.  We keep one fundamental domain of directions:
the Dirichlet cell ``{v : c.v >= c.(R v) for all R}`` around a fixed generic vector ``c`` (our
choice; RELION removes symmetry-equivalent points one by one with a tolerance).

Adaptive oversampling (order +1): a direction's children are its 4 nested HEALPix pixels, a psi's
children are ``psi -/+ step/4``, a translation's children the 2x2 sub-steps ``+/- step/4``.
"""

from __future__ import annotations

import numpy as np

from ..geometry import euler_to_matrix

__all__ = [
    "healpix_directions", "psi_step_deg", "angular_step_deg", "asymmetric_unit_mask", "OrientationGrid",
    "translation_grid", "translation_children", "rotation_angle_deg", "perturbation_matrix",
    "local_orientation_indices", "relaxed_mates",
]

_JRLL = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4])
_JPLL = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7])
# A generic vector for the Dirichlet cell of the symmetry reduction (no symmetry axis passes through it).
_DIRICHLET_CENTRE = np.array([0.1234, 0.3456, 0.9301]) / np.linalg.norm([0.1234, 0.3456, 0.9301])


def _compact_bits(v: np.ndarray) -> np.ndarray:
    """Every other bit of ``v`` (bits 0, 2, 4, ...) packed together."""
    out = np.zeros_like(v)
    for b in range(30):
        out |= ((v >> (2 * b)) & 1) << b
    return out


def healpix_directions(order: int, pixels: np.ndarray | None = None) -> np.ndarray:
    """``(n, 2)`` (rot, tilt) in degrees of nested HEALPix pixel centres (all pixels by default)."""
    nside = 1 << order
    npface = nside * nside
    pix = np.arange(12 * npface, dtype=np.int64) if pixels is None else np.asarray(pixels, np.int64)
    face, ipf = np.divmod(pix, npface)
    ix, iy = _compact_bits(ipf), _compact_bits(ipf >> 1)
    jr = _JRLL[face] * nside - ix - iy - 1
    north, south = jr < nside, jr > 3 * nside
    nr = np.where(north, jr, np.where(south, 4 * nside - jr, nside))
    z = np.where(north, 1.0 - nr ** 2 / (3.0 * npface),
                 np.where(south, nr ** 2 / (3.0 * npface) - 1.0, (2 * nside - jr) * 2.0 / (3.0 * nside)))
    kshift = np.where(north | south, 0, (jr - nside) & 1)
    jp = (_JPLL[face] * nr + ix - iy + 1 + kshift) // 2
    jp = np.where(jp > 4 * nside, jp - 4 * nside, np.where(jp < 1, jp + 4 * nside, jp))
    phi = (jp - (kshift + 1) * 0.5) * (np.pi / 2) / nr
    rot = np.rad2deg(phi)
    rot = np.where(rot >= 180.0, rot - 360.0, rot)
    return np.stack([rot, np.rad2deg(np.arccos(np.clip(z, -1, 1)))], axis=1)


def psi_step_deg(order: int) -> float:
    """In-plane step of a HEALPix order: ``360 / (6 * 2**order)`` (order 2 -> 15 degrees)."""
    return 360.0 / (6 * 2 ** order)


def angular_step_deg(order: int, oversampling: int = 0) -> float:
    """RELION ``getAngularSampling``: the step after ``oversampling`` extra orders."""
    return psi_step_deg(order + oversampling)


def _unit_vectors(dirs_deg: np.ndarray) -> np.ndarray:
    rot, tilt = np.deg2rad(dirs_deg[:, 0]), np.deg2rad(dirs_deg[:, 1])
    return np.stack([np.sin(tilt) * np.cos(rot), np.sin(tilt) * np.sin(rot), np.cos(tilt)], axis=1)


def asymmetric_unit_mask(dirs_deg: np.ndarray, sym_ops: np.ndarray) -> np.ndarray:
    """True for directions in the Dirichlet fundamental domain of the point group ``sym_ops``."""
    v = _unit_vectors(dirs_deg)
    own = v @ _DIRICHLET_CENTRE
    keep = np.ones(len(v), bool)
    for r in sym_ops[1:]:
        keep &= own >= (v @ r.T) @ _DIRICHLET_CENTRE - 1e-9
    return keep


class OrientationGrid:
    """All (direction, psi) orientations of one HEALPix order, directions restricted to ``pixels``.

    ``pixels`` are nested HEALPix indices; orientation ``i`` is ``(pixels[i // n_psi], i % n_psi)``.
    """

    def __init__(self, order: int, sym_ops: np.ndarray | None = None, pixels: np.ndarray | None = None):
        self.order = order
        if pixels is None:
            pixels = np.arange(12 * 4 ** order)
            if sym_ops is not None and len(sym_ops) > 1:
                pixels = pixels[asymmetric_unit_mask(healpix_directions(order, pixels), sym_ops)]
        self.pixels = np.asarray(pixels, np.int64)
        self.directions = healpix_directions(order, self.pixels)
        self.n_psi = 6 * 2 ** order
        self.psi_step = psi_step_deg(order)
        self._vectors: np.ndarray | None = None

    @property
    def unit_vectors(self) -> np.ndarray:
        """``(n_pixels, 3)`` unit vectors of the directions (computed once per grid)."""
        if self._vectors is None:
            self._vectors = _unit_vectors(self.directions)
        return self._vectors

    def __len__(self) -> int:
        return len(self.pixels) * self.n_psi

    def angles(self, index: np.ndarray | None = None) -> np.ndarray:
        """``(n, 3)`` rot, tilt, psi (degrees) of orientation indices (all by default)."""
        index = np.arange(len(self)) if index is None else np.asarray(index, np.int64)
        d, p = np.divmod(index, self.n_psi)
        return np.column_stack([self.directions[d], p * self.psi_step])

    def children(self, index: np.ndarray) -> np.ndarray:
        """``(n, 8, 3)`` angles of the oversampled children (order + 1) of orientation indices."""
        index = np.asarray(index, np.int64)
        d, p = np.divmod(index, self.n_psi)
        kids = self.pixels[d][:, None] * 4 + np.arange(4)[None, :]
        kid_dirs = healpix_directions(self.order + 1, kids.ravel()).reshape(len(index), 4, 2)
        psi = p[:, None] * self.psi_step + np.array([-0.25, 0.25])[None, :] * self.psi_step
        out = np.empty((len(index), 4, 2, 3))
        out[..., :2] = kid_dirs[:, :, None, :]
        out[..., 2] = psi[:, None, :]
        return out.reshape(len(index), 8, 3)


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Geodesic angle (degrees) between rotation matrices ``a (..., 3, 3)`` and ``b (..., 3, 3)``."""
    tr = np.einsum("...ij,...ij->...", a, b)
    return np.rad2deg(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def local_orientation_indices(grid: OrientationGrid, prev_matrix: np.ndarray, max_angle_deg: float,
                              perturbation: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``grid`` orientations (times ``perturbation``) within ``max_angle_deg`` of ``prev_matrix``
    ``(3, 3)``, or of any of several centres ``(k, 3, 3)`` (the previous orientation and its mates under a
    relaxed symmetry: the union, sorted)."""
    if prev_matrix.ndim == 3:
        if len(prev_matrix) > 1:
            return np.unique(np.concatenate([local_orientation_indices(grid, c, max_angle_deg, perturbation)
                                             for c in prev_matrix]))
        prev_matrix = prev_matrix[0]
    perturbation = np.eye(3) if perturbation is None else perturbation
    v_prev = prev_matrix[2]
    cos_lim = np.cos(np.deg2rad(min(max_angle_deg + 2 * grid.psi_step, 180.0)))
    near = np.nonzero(grid.unit_vectors @ v_prev >= cos_lim)[0]
    idx = near[:, None] * grid.n_psi + np.arange(grid.n_psi)[None, :]
    # the angle to prev of every psi of a direction from one 3x3 product: with A = Rz(psi) B (B: rot and tilt),
    # trace(A P prev^T) = cos(psi) (C00 + C11) + sin(psi) (C10 - C01) + C22 for C = B P prev^T
    d = grid.directions[near]
    c = euler_to_matrix(d[:, 0], d[:, 1], 0.0) @ perturbation @ prev_matrix.T
    psi = np.deg2rad(np.arange(grid.n_psi) * grid.psi_step)
    trace = np.cos(psi)[None, :] * (c[:, 0, 0] + c[:, 1, 1])[:, None] \
        + np.sin(psi)[None, :] * (c[:, 1, 0] - c[:, 0, 1])[:, None] + c[:, 2, 2][:, None]
    angle = np.rad2deg(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))
    keep = angle <= max_angle_deg
    if not keep.any():  # always search at least the nearest orientation
        keep.flat[np.argmin(angle)] = True
    return idx[keep]


def relaxed_mates(prev_matrix: np.ndarray, relax_ops: np.ndarray | None) -> np.ndarray:
    """The orientations a local search is centred on: ``prev_matrix`` ``(3, 3)`` alone (``relax_ops`` None),
    else its mates ``prev R^T`` under every operator ``R`` of the relaxed point group, ``(k, 3, 3)``: for a
    map with that symmetry they give the same projection (RELION ``--relax_sym``)."""
    if relax_ops is None:
        return prev_matrix
    return prev_matrix[None] @ np.transpose(relax_ops, (0, 2, 1))


def perturbation_matrix(instance: float, step_deg: float) -> np.ndarray:
    """RELION's random grid perturbation: Euler (p, p, p) with ``p = instance * step``; RELION draws
    ``instance`` (rlnSamplingPerturbInstance) uniformly in ``+/- 0.5`` (rlnSamplingPerturbFactor) each
    iteration."""
    p = instance * step_deg
    return euler_to_matrix(p, p, p)


def translation_grid(range_px: float, step_px: float) -> np.ndarray:
    """``(n, 2)`` xy offsets ``i*step`` with ``|i| <= ceil(range/step)`` inside the circle of ``range``."""
    m = int(np.ceil(range_px / step_px - 1e-9))
    i = np.arange(-m, m + 1) * step_px
    xx, yy = np.meshgrid(i, i, indexing="xy")
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    return grid[(grid ** 2).sum(1) <= range_px ** 2 + 1e-9]


def translation_children(offsets: np.ndarray, step_px: float) -> np.ndarray:
    """``(n, 4, 2)`` oversampled children ``offset +/- step/4`` (2x2) of translations ``(n, 2)``."""
    d = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]]) * (step_px / 4.0)
    return np.asarray(offsets)[:, None, :] + d[None]
