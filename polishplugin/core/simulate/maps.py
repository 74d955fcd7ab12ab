"""Masks and the simple "MTF" of the simulated project."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from polishplugin.core.filters import low_pass_map
from polishplugin.core.fsc import ShellGrid
from polishplugin.core.geometry import symmetry_matrices
from polishplugin.core.mask import soft_edge

__all__ = ["soft_mask_from_map", "smooth_mtf", "expected_particle_map", "noisy_half_maps", "reconstruct_symmetric"]


def soft_mask_from_map(volume: np.ndarray, angpix: float, lowpass_a: float = 15.0,
                       threshold_fraction: float = 0.1, extend_px: int = 3, soft_px: int = 5) -> np.ndarray:
    """A soft solvent mask in [0, 1] (like ``relion_mask_create``): low-pass the map, threshold at
    ``threshold_fraction`` of its maximum, extend the binary mask by ``extend_px`` and add a raised-cosine
    edge of ``soft_px`` pixels."""
    lp = low_pass_map(np.asarray(volume, np.float64), lowpass_a, angpix)
    binary = lp > threshold_fraction * lp.max()
    if extend_px > 0:
        binary = ndimage.binary_dilation(binary, iterations=extend_px)
    return soft_edge(binary, soft_px).astype(np.float32)


def smooth_mtf(n_rows: int = 65) -> tuple[np.ndarray, np.ndarray]:
    """A smooth detector-like MTF table ``(invpix, value)`` from 0 to 0.5 1/pixel (value 1 at 0)."""
    x = np.linspace(0.0, 0.5, n_rows)
    y = np.sinc(x) * np.exp(-1.2 * x ** 2) * (1.0 - 0.5 * x)
    return x, y


def expected_particle_map(true_map: np.ndarray, angpix: float, amplitude: float, bfactors: np.ndarray,
                          scales: np.ndarray) -> np.ndarray:
    """The map that particles extracted from the frame sum see: ``amplitude * true_map`` filtered by the
    mean frame weight ``mean_f scale_f exp(B_f q^2/4)`` (what a reconstruction converges to, without
    the motion blur)."""
    from polishplugin.core import fourier
    n = true_map.shape[0]
    q2 = (fourier.radius_grid(true_map.shape) / (n * angpix)) ** 2
    damp = np.zeros_like(q2)
    for b, s in zip(bfactors, scales):  # accumulate (a list of per-frame grids would cost GiBs at box 256)
        damp += s * np.exp(b * q2 / 4.0)
    damp /= max(1, len(bfactors))
    f = fourier.rfft(np.asarray(true_map, np.float64)) * damp * amplitude
    return fourier.irfft(f, true_map.shape)


def noisy_half_maps(rng: np.random.Generator, expected: np.ndarray, angpix: float, resolution_a: float,
                    width_shells: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Two half maps = ``expected`` + independent Gaussian noise whose power per shell gives a target
    FSC ``1 / (1 + exp((k - k0) / width))`` with ``FSC(k0) = 0.5`` placed so that FSC = 0.143 at
    ``resolution_a`` (FSC = S/(S+N))."""
    from polishplugin.core import fourier
    n = expected.shape[0]
    f = fourier.rfft(np.asarray(expected, np.float64))
    grid = ShellGrid(expected.shape)
    nsh = grid.n
    power = grid.radial_sum(np.abs(f) ** 2) / np.maximum(grid.count, 1)
    k143 = n * angpix / resolution_a
    k0 = k143 - width_shells * np.log(1 / 0.143 - 1)
    k = np.arange(nsh)
    target = 1.0 / (1.0 + np.exp((k - k0) / width_shells))
    noise_power = power * (1 - target) / np.maximum(target, 1e-6)
    sig = np.sqrt(noise_power[np.minimum(grid.shell, nsh - 1)])
    out = []
    for _ in range(2):
        white = fourier.rfft(rng.normal(size=expected.shape))  # per-coefficient power 1/N^3 on average
        out.append(fourier.irfft(f + white * sig * np.sqrt(n ** 3), expected.shape).astype(np.float32))
    return out[0], out[1]


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
