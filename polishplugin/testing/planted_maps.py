"""Half maps with planted resolutions, for the post-processing and local-resolution tests and benchmarks.

* :func:`sphere_half_maps`: a B-factor-blurred white signal in a soft sphere plus white noise per half,
  the noise set so that the true FSC ``S/(S+N)`` crosses 0.143 at shell ``k_cross``;
* :func:`two_resolution_half_maps`: the two halves of the box along x carry two planted resolutions.
"""

from __future__ import annotations

import numpy as np

from ..core.filters import raised_cosine_sphere
from ..core.fourier import irfft, radius_grid, rfft

__all__ = ["sphere_half_maps", "two_resolution_half_maps"]

#: signal-to-noise power ratio per coefficient where FSC = S/(S+N) = 0.143
FSC_0143_SNR = 0.143 / 0.857


def sphere_half_maps(rng: np.random.Generator, box: int, angpix: float, bfactor: float, k_cross: float,
                     radius: float, edge: float = 4.0, identical: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(signal, half1, half2)``: white noise in a soft sphere (``radius`` + ``edge`` px) blurred by
    ``bfactor``, plus white noise per half whose power makes the true FSC cross 0.143 at shell
    ``k_cross`` (so the last shell >= 0.143 is ``floor(k_cross)``); ``identical``: the same noise in both."""
    shape = (box,) * 3
    sphere = raised_cosine_sphere(shape, radius, edge)
    s = radius_grid(shape) / (box * angpix)
    signal = irfft(rfft(rng.standard_normal(shape) * sphere) * np.exp(-bfactor / 4 * s * s), shape)
    p0 = np.mean(sphere ** 2) / sphere.size             # signal power per coefficient before the blur
    s0 = k_cross / (box * angpix)
    noise_power = p0 * np.exp(-bfactor / 2 * s0 ** 2) / FSC_0143_SNR
    sd = np.sqrt(noise_power * sphere.size)            # white noise: |F|^2 = sd^2 / n_voxels
    n1 = sd * rng.standard_normal(shape)
    return signal, signal + n1, signal + (n1 if identical else sd * rng.standard_normal(shape))


def two_resolution_half_maps(box: int = 64, angpix: float = 1.244, resolutions_a: tuple[float, float] = (4.0, 8.0),
                      noise: float = 0.3, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two half maps whose halves along x carry planted resolutions (a known answer for tests).

    ``x < N/2`` carries ``resolutions_a[0]``, ``x >= N/2`` ``resolutions_a[1]`` (smooth 2-px tanh
    boundary).  Each region's signal is white noise with a B-factor envelope chosen so that the
    spectral SNR against the half maps' independent white noise (std ``noise``) is
    ``0.143 / (1 - 0.143)`` at the planted resolution, i.e. the region's FSC crosses 0.143 there.
    Returns ``(half1, half2, region_a)`` (float32 maps; boolean map of ``x < N/2``).
    """
    rng = np.random.default_rng(seed)
    shape = (box,) * 3
    s2 = (radius_grid(shape) / (box * angpix)) ** 2
    x = np.arange(box) - box / 2 + 0.5
    weight_a = 0.5 - 0.5 * np.tanh(x / 2.0)
    snr_at = 0.143 / (1.0 - 0.143)
    signal = np.zeros(shape, np.float32)
    for weight, res in zip((weight_a, 1.0 - weight_a), resolutions_a):
        bfac = 2.0 * np.log(1.0 / (noise ** 2 * snr_at)) * res * res
        part = irfft(rfft(rng.standard_normal(shape, dtype=np.float32)) * np.exp(-bfac * s2 / 4.0), shape)
        signal += (weight[None, None, :] * part).astype(np.float32)
    half1 = signal + noise * rng.standard_normal(shape, dtype=np.float32)
    half2 = signal + noise * rng.standard_normal(shape, dtype=np.float32)
    region_a = np.broadcast_to((x < 0)[None, None, :], shape).copy()
    return half1.astype(np.float32), half2.astype(np.float32), region_a
