"""Small synthetic particle sets with known poses for tests and benchmarks (arrays only, no I/O).

``blob_phantom`` builds a map of Gaussian blobs made symmetric under a point group;
``simulate_particles`` projects it at random poses, applies CTFs and shifts and adds white noise of a
chosen SNR (signal variance / noise variance inside the box).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.ctf import CtfParams, ctf_2d
from ..core.geometry import euler_to_matrix, symmetry_matrices
from ..core.refine.fourier3d import map_to_grid, project_images

__all__ = ["blob_phantom", "SyntheticParticles", "simulate_particles", "random_rotations_deg"]


def blob_phantom(box: int, sym: str = "C1", n_blobs: int = 12, radius_px: float | None = None,
                 blob_sigma_px: float = 1.5, seed: int = 0) -> np.ndarray:
    """``(N, N, N)`` float32 map: ``n_blobs`` Gaussian blobs (and their symmetry mates) inside
    ``radius_px`` (default ``N/4``) of the centre."""
    rng = np.random.default_rng(seed)
    radius_px = box / 4.0 if radius_px is None else radius_px
    pts = rng.normal(size=(n_blobs, 3))
    pts *= (radius_px * rng.uniform(0.3, 1.0, n_blobs) / np.linalg.norm(pts, axis=1))[:, None]
    ops = symmetry_matrices(sym)
    allpts = np.concatenate([pts @ r.T for r in ops])
    amps = np.tile(rng.uniform(0.5, 1.5, n_blobs), len(ops))
    c = np.arange(box) - box // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    vol = np.zeros((box,) * 3)
    for p, a in zip(allpts, amps):
        vol += a * np.exp(-((x - p[0]) ** 2 + (y - p[1]) ** 2 + (z - p[2]) ** 2) / (2 * blob_sigma_px ** 2))
    return vol.astype(np.float32)


def random_rotations_deg(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` uniformly distributed rot, tilt, psi (degrees)."""
    return np.column_stack([rng.uniform(-180, 180, n), np.rad2deg(np.arccos(rng.uniform(-1, 1, n))),
                            rng.uniform(-180, 180, n)])


@dataclass
class SyntheticParticles:
    images: np.ndarray  # (n, N, N) float32
    angles_deg: np.ndarray  # (n, 3) true rot, tilt, psi
    origins_px: np.ndarray  # (n, 2) true rlnOrigin (xy, pixels)
    ctf: list[CtfParams]
    noise_sigma: float


def simulate_particles(volume: np.ndarray, n: int, angpix: float, snr: float = 0.05, max_shift_px: float = 2.0,
                       defocus_range_a: tuple[float, float] = (10000.0, 25000.0), voltage_kv: float = 300.0,
                       seed: int = 0, signal_scale: np.ndarray | None = None) -> SyntheticParticles:
    """Particles of ``volume`` at random poses with CTF, shifts and white noise of ``snr``.

    ``signal_scale (n,)`` multiplies each particle's signal (not its noise; the noise level is set
    from the unscaled signals): a planted intensity-scale difference."""
    rng = np.random.default_rng(seed)
    box = volume.shape[0]
    ang = random_rotations_deg(n, rng)
    origins = rng.uniform(-max_shift_px, max_shift_px, (n, 2))
    params = []
    for _ in range(n):
        du = rng.uniform(*defocus_range_a)
        params.append(CtfParams(du, du * rng.uniform(0.95, 1.05), rng.uniform(0, 180), voltage_kv, 2.7, 0.1))
    ctf = np.stack([ctf_2d(p, box, angpix) for p in params]).astype(np.float32)
    grid = map_to_grid(volume)
    clean = project_images(grid, euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2]), box, ctf=ctf,
                           shifts_px=-origins)
    sigma = float(np.sqrt(clean.var() / snr))
    if signal_scale is not None:
        clean = clean * np.asarray(signal_scale, np.float32)[:, None, None]
    images = clean + rng.normal(0.0, sigma, clean.shape).astype(np.float32)
    return SyntheticParticles(images.astype(np.float32), ang, origins, params, sigma)
