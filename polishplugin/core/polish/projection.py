"""Reference predictions for polishing: Fourier-slice projections of a half map.

RELION (``ReferenceMap``/``Projector``, ALGORITHMS.md 1.4) pads the (masked) half map 2x after a
gridding pre-correction (divide by ``sinc^2(r / (N pad))``), transforms it and samples the central
slice ``A^T (x, y, 0)`` with trilinear interpolation, keeping ``|k| <= N/2``.  The result equals the
rfft (forward ``/N^2``) of the line-integral projection (sum of voxels along z) whose centre is pixel
``N // 2``, so the absolute scale of the reference is kept (ALGORITHMS.md section 7).

:func:`make_projector` builds it with ``core.projector.FourierProjector``.
"""

from __future__ import annotations

import numpy as np

from ..projector import FourierProjector

__all__ = ["make_projector", "predict_images"]


def make_projector(volume: np.ndarray, pad: int = 2, r_max_px: float | None = None) -> FourierProjector:
    """The reference projector of one half map (``core.projector.FourierProjector``); ``r_max_px``: zero
    beyond this radius (default Nyquist)."""
    return FourierProjector(volume, pad=pad, r_max_px=r_max_px)


def predict_images(projector, rotations: np.ndarray, origins_px: np.ndarray, ctfs: np.ndarray | None,
                   backend: str = "numpy") -> np.ndarray:
    """Predicted particle images: projection centred at ``N//2``, shifted by ``-origin``, times CTF.

    ``origins_px`` (n, 2) are ``rlnOriginX/YAngst / angpix`` (xy order); ``ctfs`` (n, N, N//2+1) or None;
    ``backend`` is passed to ``FourierProjector.project`` ("numpy", "opencl" or "auto").
    Returns complex64 ``(n, N, N//2+1)``.
    """
    from .shift import shift_phase_2d

    proj = projector.project(rotations, backend=backend)
    n = proj.shape[1]
    shift = np.asarray(origins_px, np.float64).reshape(-1, 2)
    pred = np.asarray(proj, np.complex64) * shift_phase_2d(n, -shift)
    if ctfs is not None:
        pred *= np.asarray(ctfs, np.float32)
    return pred
