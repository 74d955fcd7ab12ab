"""Trilinear spreading of 1M random points onto the padded half grid (``core.projector._ExtendedIndex.bincounts``,
what every back-projection of the numpy path runs): time and the three sums, at padded sizes 64 and 192
(box 32 and 96 with padding 2).

    .venv/bin/python bench/spread_points.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polishplugin.core.projector import _ExtendedIndex  # noqa: E402


def main() -> int:
    rng = np.random.default_rng(0)
    for m, k in ((64, 1 << 20), (192, 1 << 20)):
        ext = _ExtendedIndex(m, m / 2)
        r = rng.uniform(0, m / 2 - 1, k)
        d = rng.normal(size=(k, 3))
        coords = d / np.linalg.norm(d, axis=1)[:, None] * r[:, None]
        vals = (rng.normal(size=k) + 1j * rng.normal(size=k)).astype(np.complex64)
        w = rng.uniform(size=k)
        t = time.perf_counter()
        sums = ext.bincounts(coords, vals, w)
        print(f"padded size {m}, {k} points: {time.perf_counter() - t:.3f} s, sums {[float(x.sum()) for x in sums]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
