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

__all__ = ["make_projector", "predict_images", "project_rescaled"]


def make_projector(volume: np.ndarray, pad: int = 2, r_max_px: float | None = None) -> FourierProjector:
    """The reference projector of one half map (``core.projector.FourierProjector``); ``r_max_px``: zero
    beyond this radius (default Nyquist)."""
    return FourierProjector(volume, pad=pad, r_max_px=r_max_px)


def project_rescaled(projector: FourierProjector, rotations: np.ndarray, box: int, angpix: float,
                     angpix_ref: float) -> np.ndarray:
    """Projections for particles of another optics group: box ``box`` at ``angpix`` Å, from a reference of
    ``projector.box`` px at ``angpix_ref`` Å (RELION ``ObservationModel``: the reference's Fourier values at the
    same physical frequencies; zero beyond the reference's ``r_max``).  rfft ``(n, box, box//2+1)`` complex64,
    centred at pixel ``box // 2``."""
    from ..fourier import centre_shift_phase, fftfreq_signed

    rot = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
    scale = (projector.box * angpix_ref) / (box * angpix)  # particle frequency index -> reference index
    ky = fftfreq_signed(box).astype(np.float64)[:, None] * scale
    kx = fftfreq_signed(box, half=True).astype(np.float64)[None, :] * scale
    keep = (ky ** 2 + kx ** 2) <= projector.r_max_px ** 2
    kxk, kyk = np.broadcast_to(kx, keep.shape)[keep], np.broadcast_to(ky, keep.shape)[keep]
    phase = centre_shift_phase((box, box), (box // 2, box // 2))[keep]
    out = np.zeros((len(rot), box, box // 2 + 1), np.complex64)
    for i, r in enumerate(rot):  # A^T (kx, ky, 0) in padded reference pixels
        coords = (r[0][None, :] * kxk[:, None] + r[1][None, :] * kyk[:, None]) * projector.pad
        out[i][keep] = projector.sample(coords) * phase
    return out


def predict_images(projector, rotations: np.ndarray, origins_px: np.ndarray, ctfs: np.ndarray | None,
                   backend: str = "numpy", box: int | None = None, angpix: float | None = None,
                   angpix_ref: float | None = None) -> np.ndarray:
    """Predicted particle images: projection centred at ``N//2``, shifted by ``-origin``, times CTF.

    ``origins_px`` (n, 2) are ``rlnOriginX/YAngst / angpix`` (xy order); ``ctfs`` (n, N, N//2+1) or None;
    ``backend`` is passed to ``FourierProjector.project`` ("numpy", "opencl" or "auto").  Particles of another
    box or pixel size than the reference (``box``, ``angpix`` vs ``angpix_ref``) go through
    :func:`project_rescaled` (numpy).
    Returns complex64 ``(n, N, N//2+1)``.
    """
    from .shift import shift_phase_2d

    if box is not None and angpix is not None and angpix_ref is not None and (
            box != projector.box or abs(angpix - angpix_ref) > 1e-6 * angpix_ref):
        proj = project_rescaled(projector, rotations, box, angpix, angpix_ref)
    else:
        proj = projector.project(rotations, backend=backend)
    n = proj.shape[1]
    shift = np.asarray(origins_px, np.float64).reshape(-1, 2)
    pred = np.asarray(proj, np.complex64) * shift_phase_2d(n, -shift)
    if ctfs is not None:
        pred *= np.asarray(ctfs, np.float32)
    return pred
