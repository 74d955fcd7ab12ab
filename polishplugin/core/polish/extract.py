"""Particle boxes cut from movie frames (RELION ``StackHelper::extractMovieStackFS``, ALGORITHMS.md 1.5).

Boxes of ``M`` movie pixels are cut at ``x0 = round(xpO * angpix / movie_angpix) - M/2`` with
``xpO = (int)(coords_angpix * xC / angpix)``; pixels outside the micrograph are clamped to the edge.
Each box is transformed (rfft, forward ``/M^2``), Fourier-cropped to the particle box ``N`` and its DC
term zeroed.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["movie_box", "box_origins", "extract_boxes", "fourier_crop"]


def movie_box(box: int, angpix: float, movie_angpix: float) -> int:
    """Particle box in movie pixels ``2*(int)(0.5*s*angpix/movie_angpix + 0.5)``."""
    return 2 * int(0.5 * box * angpix / movie_angpix + 0.5)


def box_origins(coords_xy: np.ndarray, coords_angpix: float, angpix: float, movie_angpix: float,
                box_movie: int) -> np.ndarray:
    """Top-left corner (x0, y0) in movie pixels of each particle's box (RELION ``extractMovieStackFS``)."""
    xpo = np.trunc(coords_angpix * np.asarray(coords_xy, np.float64) / angpix)
    centre = np.sign(xpo * angpix / movie_angpix) * np.floor(np.abs(xpo * angpix / movie_angpix) + 0.5)
    return centre.astype(np.int64) - box_movie // 2


#: particles cut and transformed at a time: bounds the scratch memory (a K3 super-resolution movie has
#: 512-px movie boxes: 32 of them are 34 MB of pixels and 34 MB of transforms)
EXTRACT_BATCH = 32


def extract_boxes(frame: np.ndarray, corners_xy: np.ndarray, box_movie: int, box_out: int,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Cut ``box_movie`` boxes at integer ``corners_xy`` (n, 2) from ``frame`` (edge-clamped), rfft them
    (``/M^2``), Fourier-crop to ``box_out`` and zero the DC term.  Returns complex64 (n, N, N//2+1), written into
    ``out`` when given (e.g. one frame's slice of a micrograph's frames array)."""
    frame = np.asarray(frame, dtype=np.float32)  # one conversion per frame (float16/memory-mapped movies)
    h, w = frame.shape
    corners = np.asarray(corners_xy, np.int64).reshape(-1, 2)
    n = corners.shape[0]
    if out is None:
        out = np.empty((n, box_out, box_out // 2 + 1), np.complex64)
    ar = np.arange(box_movie)
    for start in range(0, n, EXTRACT_BATCH):
        part = corners[start:start + EXTRACT_BATCH]
        boxes = _box_buffer(len(part), box_movie)
        for i, (x0, y0) in enumerate(part):
            if x0 >= 0 and y0 >= 0 and x0 + box_movie <= w and y0 + box_movie <= h:
                boxes[i] = frame[y0:y0 + box_movie, x0:x0 + box_movie]
            else:  # edge-clamped gather only for boxes that leave the micrograph
                xs = np.clip(x0 + ar, 0, w - 1)
                ys = np.clip(y0 + ar, 0, h - 1)
                boxes[i] = frame[np.ix_(ys, xs)]
        ft = scipy.fft.rfft2(boxes, workers=-1)  # float32 in -> complex64 out
        dest = out[start:start + len(part)]
        dest[...] = fourier_crop(ft, box_movie, box_out)
        dest *= np.float32(1.0 / (box_movie * box_movie))
        dest[:, 0, 0] = 0
    return out


_BOXES: dict = {}


def _box_buffer(n: int, box: int) -> np.ndarray:
    """A reused float32 ``(n, box, box)`` scratch array: a fresh 50 MB array per frame costs more in page
    faults than the copy into it (every cell is overwritten before use)."""
    key = box
    buf = _BOXES.get(key)
    if buf is None or buf.shape[0] < n:
        _BOXES.clear()
        buf = _BOXES[key] = np.empty((n, box, box), np.float32)
    return buf[:n]


def fourier_crop(ft: np.ndarray, box_in: int, box_out: int) -> np.ndarray:
    """Crop rfft images (..., M, M//2+1) to (..., N, N//2+1) (RELION ``cropCorner2D``; Nyquist row from +N/2)."""
    if box_in == box_out:
        return ft
    if box_out > box_in:
        raise ValueError(f"cannot crop a {box_in}-pixel box to a larger {box_out}-pixel box")
    h = box_out // 2 + 1
    rows = np.concatenate([np.arange(h), np.arange(box_in - (box_out - h), box_in)])
    return ft[..., rows, :h]
