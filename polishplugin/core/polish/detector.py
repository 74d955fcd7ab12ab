"""Raw movie frame -> the frame polishing extracts boxes from (RELION ``MovieLoader``, ALGORITHMS.md 1.5).

Each pixel becomes ``mu = -gain * min(val, hot)`` (contrast inverted; ``hot`` only when > 0), then every
defective pixel (defect file, hot-pixel list, zero gain) is replaced by the value of a random
non-defective pixel within ``+-2`` px (``+-4`` for EER), or, where fewer than 7 such neighbours exist, by
a Gaussian draw with the frame's mean and standard deviation over non-defective pixels
(``MovieLoader::fixDefects``).  RELION draws with ``rand()`` in threads; we draw from a numpy generator
seeded per movie and frame, so the result is reproducible.

Defects are given as sorted flat pixel indices (``y * width + x``): the work is proportional to their
number, not to the frame size (a K3 super-resolution frame has 94 M pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DefectPlan", "plan_defects", "fill_defects", "DetectorCorrection"]

#: RELION replaces a defect by a neighbour only when more than this many neighbours are usable
MIN_NEIGHBOURS = 6


@dataclass
class DefectPlan:
    """Where each defective pixel may take its value from: ``index`` (n,) flat defect indices,
    ``neighbours`` (n, k) flat indices of the window around each, ``usable`` (n, k) in the frame and not
    defective, ``n_usable`` (n,), ``shape`` of the frame."""

    index: np.ndarray
    neighbours: np.ndarray
    usable: np.ndarray
    n_usable: np.ndarray
    shape: tuple[int, int]


def plan_defects(defects: np.ndarray, shape: tuple[int, int], reach: int = 2) -> DefectPlan:
    """The :class:`DefectPlan` of the sorted flat ``defects`` in a frame of ``shape`` (``reach`` 2, EER 4)."""
    h, w = int(shape[0]), int(shape[1])
    idx = np.unique(np.asarray(defects, np.int64).ravel())
    if idx.size and (idx[0] < 0 or idx[-1] >= h * w):
        raise ValueError(f"defect indices outside a {w} x {h} frame")
    d = np.arange(-reach, reach + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(d, d, indexing="ij"))
    y = idx[:, None] // w + dy[None, :]
    x = idx[:, None] % w + dx[None, :]
    inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    nb = np.where(inside, y * w + x, 0)
    pos = np.clip(np.searchsorted(idx, nb), 0, max(idx.size - 1, 0))
    defective = idx[pos] == nb if idx.size else np.zeros(nb.shape, bool)
    usable = inside & ~defective
    return DefectPlan(idx, nb, usable, usable.sum(axis=1), (h, w))


def fill_defects(frame: np.ndarray, plan: DefectPlan, rng: np.random.Generator) -> np.ndarray:
    """Replace the defects of ``frame`` (2D, in place) as RELION does (module docstring); returns it."""
    if plan.index.size == 0:
        return frame
    flat = frame.reshape(-1)
    # a random usable neighbour per defect: the r-th usable entry of its row, r uniform in [0, n_usable)
    pick = np.floor(rng.random(plan.index.size) * np.maximum(plan.n_usable, 1)).astype(np.int64)
    rank = np.cumsum(plan.usable, axis=1) - 1
    col = np.argmax(plan.usable & (rank == pick[:, None]), axis=1)
    values = flat[plan.neighbours[np.arange(plan.index.size), col]]
    few = plan.n_usable <= MIN_NEIGHBOURS
    if few.any():
        total = total2 = 0.0
        for i in range(0, flat.size, 1 << 22):  # float64 in chunks: no frame-sized float64 copy
            chunk = flat[i:i + (1 << 22)].astype(np.float64)
            total += float(chunk.sum())
            total2 += float(chunk @ chunk)
        bad = flat[plan.index].astype(np.float64)
        total, total2 = total - float(bad.sum()), total2 - float(bad @ bad)
        n = flat.size - plan.index.size
        mean = total / max(n, 1)
        std = np.sqrt(max(total2 - n * mean * mean, 0.0) / max(n - 1, 1))
        values = np.where(few, rng.normal(mean, std, plan.index.size), values)
    flat[plan.index] = values
    return frame


@dataclass
class DetectorCorrection:
    """Gain (multiplicative, frame shape, or None), hot-pixel cut-off (``--hot``; <= 0: none) and defects
    of one movie; :meth:`apply` turns a raw frame into RELION's ``mu`` frame."""

    gain: np.ndarray | None = None
    defects: DefectPlan | None = None
    hot: float = -1.0
    seed: int = 0

    def apply(self, raw: np.ndarray, frame_index: int, in_place: bool = False) -> np.ndarray:
        """``-gain * min(raw, hot)`` with the defects replaced (float32; ``in_place``: into ``raw`` itself when it
        is a writable float32 array, saving a frame of memory: 377 MB for a K3 super-resolution frame)."""
        reuse = in_place and raw.dtype == np.float32 and raw.flags.writeable and raw.flags.c_contiguous
        frame = np.negative(raw, out=raw) if reuse else np.negative(raw, dtype=np.float32)
        if self.hot > 0:
            np.maximum(frame, np.float32(-self.hot), out=frame)
        if self.gain is not None:
            frame *= self.gain
        if self.defects is not None and self.defects.index.size:
            fill_defects(frame, self.defects, np.random.default_rng([self.seed, int(frame_index)]))
        return frame
