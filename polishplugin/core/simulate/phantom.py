"""A procedural D2 pseudo-protein made of Gaussian "atoms", its map and its exact projections.

The phantom is a sum of isotropic 3D Gaussians (``weight * N(r_a, sigma^2)``).  Everything is computed
from the analytic Fourier transform of a Gaussian, so maps and projections are consistent band-limited
samples of the same continuous object (no interpolation):

* map: ``F3(k) = (1/N^3) sum_a w_a exp(-2 pi^2 sigma^2 |k/N|^2) exp(-2 pi i k.(r_a + c)/N)`` on the rfft
  grid (``c = N//2`` the map centre), inverse-transformed with :func:`polishplugin.core.fourier.irfft`;
* projection for rotation ``A`` (RELION: image pixel ``q`` samples the 3D transform at ``A^T q``):
  the same sum on the central slice, i.e. with the rotated atom positions ``(A r_a)_xy``, divided by
  ``N^2`` (line integral = sum of voxels along z, :mod:`polishplugin.core.projector` convention).

Both sums are separable in x, y (and z), so they are evaluated as matrix products.
Positions are in pixels relative to the centre; ``pseudo_protein_atoms`` works in Å.
"""

from __future__ import annotations

import numpy as np

from polishplugin.core import fourier
from polishplugin.core.geometry import symmetry_matrices

__all__ = ["pseudo_protein_atoms", "gaussian_atoms_map_rfft", "gaussian_atoms_map",
           "project_atoms_rfft", "random_rotations", "splat_atoms_map"]


def pseudo_protein_atoms(rng: np.random.Generator, radius_a: float, symmetry: str = "D2",
                         residue_volume_a3: float = 135.0, step_a: float = 3.8,
                         min_dist_a: float = 3.2) -> tuple[np.ndarray, np.ndarray]:
    """Atoms ``(n, 3)`` (Å, centred on 0) and weights ``(n,)`` of a compact symmetric pseudo-protein.

    One asymmetric unit is a self-avoiding random walk (step ``step_a``, like C-alpha atoms) confined
    to a ball inside the particle, each step with a heavier "side-chain" atom 2.4 Å away; the unit is
    copied by the symmetry group (RELION convention, :func:`symmetry_matrices`).  The number of
    residues fills about half of the ``radius_a`` sphere at ``residue_volume_a3`` per residue.
    """
    mats = symmetry_matrices(symmetry)
    n_sym = len(mats)
    n_res = max(8, int(0.5 * (4.0 / 3.0) * np.pi * radius_a ** 3 / residue_volume_a3 / n_sym))
    # asymmetric-unit ball: generic direction, so that the copies do not overlap much
    direction = np.array([1.0, 0.8, 0.6]) / np.linalg.norm([1.0, 0.8, 0.6])
    asu_r = radius_a * (0.62 if n_sym > 1 else 0.9)
    asu_c = direction * (radius_a - asu_r) * (1.0 if n_sym > 1 else 0.0)
    ca = np.zeros((n_res, 3))
    ca[0] = asu_c
    k = 1
    tries = 0
    while k < n_res:
        tries += 1
        step = rng.normal(size=3)
        step *= step_a / np.linalg.norm(step)
        cand = ca[k - 1] + step
        ok = np.linalg.norm(cand - asu_c) <= asu_r
        if ok and k > 1:
            ok = np.min(np.linalg.norm(ca[:k - 1] - cand, axis=1)) >= min_dist_a
        if ok or tries > 200:
            if not ok:  # stuck: restart from a random earlier residue
                cand = ca[rng.integers(0, k)] + step
                if np.linalg.norm(cand - asu_c) > asu_r:
                    cand = asu_c + (cand - asu_c) * (asu_r / np.linalg.norm(cand - asu_c)) * 0.9
            ca[k] = cand
            k += 1
            tries = 0
    side_dir = rng.normal(size=(n_res, 3))
    side_dir /= np.linalg.norm(side_dir, axis=1, keepdims=True)
    side = ca + 2.4 * side_dir
    xyz = np.concatenate([ca, side])
    w = np.concatenate([np.full(n_res, 6.0), rng.uniform(4.0, 14.0, n_res)])
    all_xyz = np.concatenate([xyz @ m.T for m in mats])
    all_w = np.tile(w, n_sym)
    return all_xyz, all_w


def _phase_1d(pos_px: np.ndarray, n: int, sigma_px: float, half: bool = False) -> np.ndarray:
    """``exp(-pi^2 s^2 (k/N)^2 ... )`` separable factor ``(n_atoms, n_k)`` for one axis."""
    k = fourier.fftfreq_signed(n, half=half).astype(np.float64)
    g = np.exp(-2.0 * np.pi ** 2 * sigma_px ** 2 * (k / n) ** 2)
    return g[None, :] * np.exp(-2j * np.pi * np.outer(pos_px, k) / n)


def gaussian_atoms_map_rfft(xyz_a: np.ndarray, weights: np.ndarray, box: int, angpix: float,
                            sigma_a: float, chunk: int = 8) -> np.ndarray:
    """rfft ``(N, N, N//2+1)`` (forward /N^3) of the Gaussian-atom map, centre voxel ``N//2``."""
    pos = np.asarray(xyz_a, np.float64) / angpix + box // 2
    w = np.asarray(weights, np.float64)
    s = sigma_a / angpix
    ex = _phase_1d(pos[:, 0], box, s, half=True) * w[:, None]
    ey = _phase_1d(pos[:, 1], box, s)
    ez = _phase_1d(pos[:, 2], box, s)
    out = np.empty((box, box, box // 2 + 1), np.complex128)
    for z0 in range(0, box, chunk):
        zz = slice(z0, min(box, z0 + chunk))
        zy = (ez[:, zz, None] * ey[:, None, :]).reshape(len(w), -1)  # (a, nz*N)
        out[zz] = (zy.T @ ex).reshape(-1, box, box // 2 + 1)
    return out / float(box) ** 3


def gaussian_atoms_map(xyz_a: np.ndarray, weights: np.ndarray, box: int, angpix: float,
                       sigma_a: float) -> np.ndarray:
    """The Gaussian-atom map ``(N, N, N)`` float32 (band-limited at Nyquist)."""
    f = gaussian_atoms_map_rfft(xyz_a, weights, box, angpix, sigma_a)
    return fourier.irfft(f, (box, box, box)).astype(np.float32)


def project_atoms_rfft(xyz_a: np.ndarray, weights: np.ndarray, rotations: np.ndarray, box: int,
                       angpix: float, sigma_a: float) -> np.ndarray:
    """Exact rfft ``(n, N, N//2+1)`` complex128 (forward /N^2) of the projections for ``rotations``.

    Equal to the central slices of :func:`gaussian_atoms_map_rfft`'s continuous transform: the
    projection (sum along z) of the rotated map, image centre pixel ``N//2``.
    """
    xyz = np.asarray(xyz_a, np.float64)
    w = np.asarray(weights, np.float64)
    rots = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
    s = sigma_a / angpix
    out = np.empty((len(rots), box, box // 2 + 1), np.complex128)
    for i, a in enumerate(rots):
        p = xyz @ a.T / angpix + box // 2  # rotated positions (px), A r
        ex = _phase_1d(p[:, 0], box, s, half=True) * w[:, None]
        ey = _phase_1d(p[:, 1], box, s)
        out[i] = ey.T @ ex
    return out / float(box) ** 2


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniformly distributed (rot, tilt, psi) in degrees, ``(n, 3)``."""
    rot = rng.uniform(-180.0, 180.0, n)
    tilt = np.rad2deg(np.arccos(rng.uniform(-1.0, 1.0, n)))
    psi = rng.uniform(-180.0, 180.0, n)
    return np.stack([rot, tilt, psi], axis=1)


def splat_atoms_map(xyz_a: np.ndarray, weights: np.ndarray, box: int, angpix: float, sigma_a: float) -> np.ndarray:
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
