"""Movie-frame synthesis, the aligned frame sum and particle extraction (framework-free, no file I/O).

Image model of frame ``f`` of one micrograph (movie pixels = particle pixels):

``clean_f = IFFT( CTF(k) * scale_f * exp(B_f |q|^2 / 4) * FFT( sum_p P_p(x - c_p - d_pf) ) )``

where ``P_p`` is the particle's projection (``project_atoms_rfft`` or a projector), ``c_p`` its
coordinate, ``d_pf`` its displacement in frame ``f`` (global drift + local motion, px), ``q`` the
spatial frequency in 1/Å and ``B_f <= 0`` the planted per-frame B-factor (RELION's polishing weight
``a_f exp(B_f q^2/4)``).  The detector sees ``counts ~ Poisson(dose_px * (1 - contrast_scale * clean_f))``:
particles are dark in the raw movie, as in real movies (RELION negates pixels on load).
"""

from __future__ import annotations

import numpy as np

from polishplugin.core import fourier
from polishplugin.core.ctf import CtfParams, gamma_and_envelope

__all__ = ["shift_rfft_2d", "ctf_rect", "bfactor_rect", "paste_particles", "clean_frame", "detector_counts",
           "align_shift_rfft", "extract_boxes", "extract_tracked", "mtf_rect", "normalize_background",
           "background_mask"]


def _freqs_rect(height: int, width: int, angpix: float) -> tuple[np.ndarray, np.ndarray]:
    fy = fourier.fftfreq_signed(height).astype(np.float64)[:, None] / (height * angpix)
    fx = fourier.fftfreq_signed(width, half=True).astype(np.float64)[None, :] / (width * angpix)
    return np.broadcast_to(fx, (height, width // 2 + 1)), np.broadcast_to(fy, (height, width // 2 + 1))


def ctf_rect(params: CtfParams, height: int, width: int, angpix: float) -> np.ndarray:
    """RELION CTF on the rfft grid ``(H, W//2+1)`` of a (possibly non-square) image."""
    fx, fy = _freqs_rect(height, width, angpix)
    gamma, env = gamma_and_envelope(params, fx, fy)
    return -np.sin(gamma) * env * params.scale


def bfactor_rect(height: int, width: int, angpix: float, bfactor_a2: float, scale: float = 1.0) -> np.ndarray:
    """``scale * exp(B |q|^2 / 4)`` on the rfft grid ``(H, W//2+1)`` (``B <= 0`` damps)."""
    fx, fy = _freqs_rect(height, width, angpix)
    return scale * np.exp(bfactor_a2 * (fx ** 2 + fy ** 2) / 4.0)


def shift_rfft_2d(f: np.ndarray, shift_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """:func:`polishplugin.core.fourier.shift_rfft` for 2D images (optionally batched), computed as the
    product of a y and an x phase vector (separable: much cheaper than the full phase grid)."""
    h, w = shape
    s = np.asarray(shift_px, np.float64)
    ky = fourier.fftfreq_signed(h).astype(np.float64)
    kx = fourier.fftfreq_signed(w, half=True).astype(np.float64)
    px = np.exp(-2j * np.pi * s[..., 0, None] * kx / w)  # (..., W//2+1)
    py = np.exp(-2j * np.pi * s[..., 1, None] * ky / h)  # (..., H)
    return f * (py[..., :, None] * px[..., None, :])


def paste_particles(height: int, width: int, proj_rfft: np.ndarray, centres_px: np.ndarray) -> np.ndarray:
    """Real image ``(H, W)`` with each projection's centre pixel ``N//2`` placed at ``centres_px`` (x, y).

    The sub-pixel part is applied as a Fourier shift of the box, the integer part by placement;
    parts of boxes outside the image are dropped.
    """
    n = proj_rfft.shape[-2]
    c = n // 2
    out = np.zeros((height, width), np.float64)
    centres = np.asarray(centres_px, np.float64).reshape(-1, 2)
    whole = np.floor(centres + 0.5)
    frac = centres - whole
    boxes = fourier.irfft(shift_rfft_2d(proj_rfft, frac, (n, n)), (n, n), axes=(-2, -1))
    for (x, y), img in zip(whole.astype(np.int64), boxes):
        x0, y0 = x - c, y - c
        xs0, ys0 = max(0, x0), max(0, y0)
        xs1, ys1 = min(width, x0 + n), min(height, y0 + n)
        if xs1 <= xs0 or ys1 <= ys0:
            continue
        out[ys0:ys1, xs0:xs1] += img[ys0 - y0:ys1 - y0, xs0 - x0:xs1 - x0]
    return out


def clean_frame(pasted: np.ndarray, ctf: np.ndarray, damage: np.ndarray) -> np.ndarray:
    """``IFFT(CTF * damage * FFT(pasted))``: the noise-free (white-protein) signal of one frame."""
    h, w = pasted.shape
    f = fourier.rfft(pasted)
    return fourier.irfft(f * ctf * damage, (h, w))


def detector_counts(rng: np.random.Generator, clean: np.ndarray, dose_px: float, contrast_scale: float,
                    noise: str = "poisson") -> np.ndarray:
    """Counts of one frame: Poisson (or Gaussian of equal variance) around
    ``dose_px * (1 - contrast_scale * clean)`` (dark particles), float32."""
    mean = np.maximum(dose_px * (1.0 - contrast_scale * clean), 0.0)
    if noise == "poisson":
        return rng.poisson(mean).astype(np.float32)
    if noise == "gaussian":
        return (mean + rng.normal(size=mean.shape) * np.sqrt(dose_px)).astype(np.float32)
    if noise == "none":
        return mean.astype(np.float32)
    raise ValueError(f"unknown noise model {noise!r}")


def align_shift_rfft(frame: np.ndarray, shift_px: np.ndarray) -> np.ndarray:
    """rfft of ``frame`` with its content moved by ``shift_px`` (x, y), for summing aligned frames."""
    h, w = frame.shape
    return shift_rfft_2d(fourier.rfft(np.asarray(frame, np.float64)), np.asarray(shift_px, np.float64), (h, w))


def extract_boxes(image: np.ndarray, coords_px: np.ndarray, box: int) -> np.ndarray:
    """Boxes ``(n, N, N)`` whose pixel ``N//2`` is the integer coordinate (x, y); pixels outside the
    image are clamped to the edge (RELION)."""
    h, w = image.shape
    c = box // 2
    coords = np.asarray(coords_px).reshape(-1, 2).astype(np.int64)
    ar = np.arange(box) - c
    out = np.empty((len(coords), box, box), np.float64)
    for i, (x, y) in enumerate(coords):
        xi = np.clip(x + ar, 0, w - 1)
        yi = np.clip(y + ar, 0, h - 1)
        out[i] = image[np.ix_(yi, xi)]
    return out


def background_mask(box: int, radius_px: float) -> np.ndarray:
    """Pixels farther than ``radius_px`` from the centre ``N//2`` (RELION's background area)."""
    ar = np.arange(box) - box // 2
    return np.hypot(ar[None, :], ar[:, None]) > radius_px


def normalize_background(images: np.ndarray, radius_px: float) -> np.ndarray:
    """``relion_preprocess --norm``: subtract the background mean and divide by its std, per image."""
    imgs = np.asarray(images, np.float64)
    bg = background_mask(imgs.shape[-1], radius_px)
    vals = imgs[:, bg]
    mean = vals.mean(axis=1)
    std = vals.std(axis=1)
    std = np.where(std > 0, std, 1.0)
    return (imgs - mean[:, None, None]) / std[:, None, None]


def extract_tracked(image: np.ndarray, centres_px: np.ndarray, box: int) -> np.ndarray:
    """Boxes ``(n, N, N)`` with the (sub-pixel) points ``centres_px`` (x, y) moved to pixel ``N//2``:
    integer part by placement (edges clamped), residual by a Fourier shift (inverse of
    :func:`paste_particles` for one box)."""
    centres = np.asarray(centres_px, np.float64).reshape(-1, 2)
    whole = np.floor(centres + 0.5)
    boxes = extract_boxes(image, whole.astype(np.int64), box)
    f = shift_rfft_2d(fourier.rfft(boxes, axes=(-2, -1)), -(centres - whole), (box, box))
    return fourier.irfft(f, (box, box), axes=(-2, -1))


def mtf_rect(height: int, width: int, mtf_invpix: np.ndarray, mtf_values: np.ndarray) -> np.ndarray:
    """A detector MTF table (abscissa in 1/pixel) on the rfft grid ``(H, W//2+1)``, linear interpolation."""
    fx, fy = _freqs_rect(height, width, 1.0)
    return np.interp(np.hypot(fx, fy), mtf_invpix, mtf_values)
