"""What the simulated detector records: counting with a non-uniform sensitivity (the gain reference is its
inverse), planted hot pixels and a dead column, super-resolution (counts on a grid of half the pixel size),
and EER events (one event per detector pixel and raw frame, with sub-pixel positions).

:class:`DetectorModel` turns the expected image of one frame (on the simulation grid) into

* the frame as written to the movie (``written``: counts on the movie grid: the simulation grid, or twice
  it with super-resolution), and
* the gain-corrected, defect-free frame on the simulation grid (``corrected``), from which the simulator
  builds the motion-corrected micrograph and the "previous refine" (as motion correction would).

:func:`split_events` spreads the counts of one rendered fraction over the raw frames of an EER movie.
No file I/O: ``io.eer.write_eer``/``io.movies.MovieWriter`` write what this module computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from polishplugin.core import fourier

__all__ = ["DetectorModel", "make_detector", "fourier_resize_rect", "split_events", "eer_grouping_for"]


def fourier_resize_rect(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` band-limited to or interpolated onto ``shape`` by cropping or zero-padding its transform
    (pixel values keep their scale: a constant image stays that constant)."""
    h0, w0 = image.shape
    h1, w1 = shape
    f = fourier.rfft(np.asarray(image, np.float64))
    out = np.zeros((h1, w1 // 2 + 1), np.complex128)
    hh = min(h0, h1) // 2
    ww = min(w0, w1) // 2 + 1
    out[:hh + 1, :ww] = f[:hh + 1, :ww]
    out[h1 - hh + 1:, :ww] = f[h0 - hh + 1:, :ww]
    return fourier.irfft(out, (h1, w1))


@dataclass
class DetectorModel:
    """The detector of one movie.

    ``shape``: simulation grid (H, W); ``upsample``: 2 for super-resolution (movie grid 2H x 2W), else 1;
    ``sensitivity``: per movie-grid pixel (counts are drawn with mean x sensitivity) or None;
    ``hot_index``/``hot_value``: flat movie-grid pixels that read ``hot_value`` in every frame;
    ``dead_column``: a movie-grid column that reads 0 (-1: none).
    """

    shape: tuple[int, int]
    upsample: int = 1
    sensitivity: np.ndarray | None = None
    hot_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    hot_value: float = 0.0
    dead_column: int = -1

    @property
    def movie_shape(self) -> tuple[int, int]:
        return self.shape[0] * self.upsample, self.shape[1] * self.upsample

    def gain(self) -> np.ndarray | None:
        """The multiplicative gain reference (movie grid): 1 / sensitivity."""
        return None if self.sensitivity is None else (1.0 / self.sensitivity).astype(np.float32)

    def defect_mask(self) -> np.ndarray:
        """Movie-grid pixels that do not report counts (hot pixels, dead column)."""
        mask = np.zeros(self.movie_shape, bool)
        mask.reshape(-1)[self.hot_index] = True
        if self.dead_column >= 0:
            mask[:, self.dead_column] = True
        return mask

    def expose(self, rng: np.random.Generator, mean: np.ndarray, noise: str = "poisson"
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(written, corrected)`` of one frame whose expected counts per simulation pixel are ``mean``."""
        up = self.upsample
        fine = np.maximum(fourier_resize_rect(mean, self.movie_shape) / (up * up), 0.0) if up > 1 else mean
        expected = fine * self.sensitivity if self.sensitivity is not None else fine
        if noise == "poisson":
            counts = rng.poisson(expected).astype(np.float32)
        elif noise == "gaussian":
            counts = np.maximum(np.rint(expected + rng.normal(size=expected.shape) * np.sqrt(fine)), 0)
            counts = counts.astype(np.float32)
        else:
            counts = np.rint(expected).astype(np.float32)
        good = counts / self.sensitivity if self.sensitivity is not None else counts.astype(np.float64)
        bad = self.defect_mask()
        good = np.where(bad, fine, good)  # motion correction repairs the defects: use the expected counts
        counts.reshape(-1)[self.hot_index] = self.hot_value
        if self.dead_column >= 0:
            counts[:, self.dead_column] = 0
        corrected = fourier_resize_rect(good, self.shape) * (up * up) if up > 1 else good
        return counts, corrected


def make_detector(rng: np.random.Generator, shape: tuple[int, int], upsample: int = 1, gain: bool = False,
                  n_hot: int = 0, hot_value: float = 0.0, near_px: np.ndarray | None = None,
                  near_radius_px: float = 0.0, dead_column: bool = False) -> DetectorModel:
    """A detector with (``gain``) a sensitivity of smooth 0.8-1.2 gradients times 5 % pixel noise, ``n_hot``
    hot pixels (half of them within ``near_radius_px`` of the points ``near_px``, simulation px: inside
    particle boxes, where they would harm most) and (``dead_column``) one dead column."""
    h, w = shape[0] * upsample, shape[1] * upsample
    sens = None
    if gain:
        yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w], float)[:, None, None]
        a, b = rng.uniform(-0.2, 0.2, 2)
        sens = (1.0 + a * (xx - 0.5) * 2 + b * (yy - 0.5) * 2) * rng.normal(1.0, 0.05, (h, w))
        sens = np.clip(sens, 0.5, 1.5)
    hot = np.zeros(0, np.int64)
    if n_hot > 0:
        n_near = n_hot // 2 if near_px is not None and len(near_px) else 0
        pts = []
        if n_near and near_px is not None:
            centres = np.asarray(near_px, np.float64)[rng.integers(0, len(near_px), n_near)]
            off = rng.uniform(-near_radius_px, near_radius_px, (n_near, 2))
            pts.append(np.rint((centres + off) * upsample))
        pts.append(np.stack([rng.integers(0, w, n_hot - n_near), rng.integers(0, h, n_hot - n_near)], 1))
        xy = np.concatenate(pts).astype(np.int64)
        xy[:, 0] = np.clip(xy[:, 0], 0, w - 1)
        xy[:, 1] = np.clip(xy[:, 1], 0, h - 1)
        hot = np.unique(xy[:, 1] * w + xy[:, 0])
    column = int(rng.integers(w // 4, 3 * w // 4)) if dead_column else -1
    return DetectorModel((int(shape[0]), int(shape[1])), upsample, sens, hot, float(hot_value), column)


def eer_grouping_for(counts_per_detector_pixel: float) -> int:
    """Raw frames per fraction so that a detector pixel's count in a fraction (Poisson, this mean) almost never
    exceeds it (one event per pixel and raw frame: more would be lost): mean + 6 sd + 3."""
    m = float(counts_per_detector_pixel)
    return max(1, int(np.ceil(m + 6.0 * np.sqrt(m) + 3.0)))


def split_events(rng: np.random.Generator, counts: np.ndarray, upsampling: int, grouping: int):
    """Yield ``(positions, symbols)`` of ``grouping`` raw frames whose rendering at ``upsampling`` sums to
    ``counts`` (a fraction, rendered grid): each detector pixel has at most one event per raw frame (counts
    beyond ``grouping`` are lost, as on a real counting detector); an event's sub-pixel symbol holds its
    rendered half pixel in the high bit of each 2-bit field and a random low bit."""
    up = int(upsampling)
    c = np.rint(np.asarray(counts)).astype(np.int64)
    hd, wd = c.shape[0] // up, c.shape[1] // up
    # remaining counts per detector pixel and per sub-pixel (sy, sx) -> (n_det, up*up)
    sub = c.reshape(hd, up, wd, up).transpose(0, 2, 1, 3).reshape(hd * wd, up * up)
    active = np.flatnonzero(sub.sum(axis=1) > 0)
    rem = sub[active].copy()
    for g in range(grouping):
        left = grouping - g
        tot = rem.sum(axis=1)
        fire = rng.random(active.size) * left < tot
        idx = np.flatnonzero(fire)
        # which sub-pixel: proportional to the remaining counts
        cum = np.cumsum(rem[idx], axis=1)
        choice = np.argmax(rng.random(idx.size)[:, None] * tot[idx, None] < cum, axis=1)
        rem[idx, choice] -= 1
        sy, sx = np.divmod(choice, up)
        if up == 2:
            hbits = sx * 2 + rng.integers(0, 2, idx.size)
            vbits = sy * 2 + rng.integers(0, 2, idx.size)
        else:
            hbits, vbits = rng.integers(0, 4, idx.size), rng.integers(0, 4, idx.size)
        yield active[idx], hbits | (vbits << 2)
