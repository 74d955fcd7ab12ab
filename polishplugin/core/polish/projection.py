"""Reference predictions for polishing: Fourier-slice projections of a half map.

RELION (``ReferenceMap``/``Projector``, ALGORITHMS.md 1.4) pads the (masked) half map 2x after a
gridding pre-correction (divide by ``sinc^2(r / (N pad))``), transforms it and samples the central
slice ``A^T (x, y, 0)`` with trilinear interpolation, keeping ``|k| <= N/2``.  The result equals the
rfft (forward ``/N^2``) of the line-integral projection (sum of voxels along z) whose centre is pixel
``N // 2``, so the absolute scale of the reference is kept (ALGORITHMS.md section 7).

``SliceProjector`` is used when engineer B's ``core.projector.FourierProjector`` is not available;
:func:`make_projector` picks one.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..fourier import centre_shift_phase, frequency_grid

__all__ = ["SliceProjector", "make_projector", "predict_images"]


class SliceProjector:
    """Central-slice projector of a cubic ``volume`` (numpy order z, y, x; centre at ``N // 2``)."""

    def __init__(self, volume: np.ndarray, pad: int = 2) -> None:
        vol = np.asarray(volume, np.float64)
        n = vol.shape[0]
        if vol.shape != (n, n, n):
            raise ValueError(f"the reference must be a cube, got shape {vol.shape}")
        self.n, self.pad = n, pad
        npad = pad * n
        # gridding pre-correction for trilinear interpolation on the padded grid
        z, y, x = np.indices(vol.shape, dtype=np.float64) - n // 2
        r = np.sqrt(x * x + y * y + z * z) / npad
        corr = np.sinc(r) ** 2
        vol = vol / np.maximum(corr, 1e-6)
        big = np.zeros((npad,) * 3)
        o = npad // 2 - n // 2
        big[o:o + n, o:o + n, o:o + n] = vol
        big = np.fft.ifftshift(big)  # centre voxel to the origin
        # unnormalised 3D transform of the padded map; index 2k == transform of the unpadded map at k
        self._ft = np.fft.rfftn(big).astype(np.complex128)
        self._re = np.ascontiguousarray(self._ft.real)
        self._im = np.ascontiguousarray(self._ft.imag)

    def project(self, rotations: np.ndarray) -> np.ndarray:
        """rfft (``/N^2``) of projections at ``rotations`` (n, 3, 3), image centre at pixel ``N // 2``.

        Shape ``(n, N, N//2+1)`` complex128 (same convention as ``core.projector.FourierProjector``).
        """
        rots = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
        n, pad = self.n, self.pad
        ky, kx = frequency_grid((n, n))
        kx = np.broadcast_to(kx, (n, n // 2 + 1)).astype(np.float64)
        ky = np.broadcast_to(ky, (n, n // 2 + 1)).astype(np.float64)
        inside = (kx * kx + ky * ky) <= (n / 2.0) ** 2
        out = np.zeros((rots.shape[0], n, n // 2 + 1), np.complex128)
        npad = pad * n
        for i, a in enumerate(rots):
            # q = A^T (kx, ky, 0)  (xyz order)
            qx = a[0, 0] * kx + a[1, 0] * ky
            qy = a[0, 1] * kx + a[1, 1] * ky
            qz = a[0, 2] * kx + a[1, 2] * ky
            conj = qx < 0
            sgn = np.where(conj, -1.0, 1.0)
            coords = np.stack([(sgn * qz * pad) % npad, (sgn * qy * pad) % npad, sgn * qx * pad])
            c = coords[:, inside]
            re = ndimage.map_coordinates(self._re, c, order=1, mode="grid-wrap")
            im = ndimage.map_coordinates(self._im, c, order=1, mode="grid-wrap")
            im = np.where(conj[inside], -im, im)
            out[i][inside] = re + 1j * im
        return out / float(n * n) * centre_shift_phase((n, n), (n // 2, n // 2))


def make_projector(volume: np.ndarray, pad: int = 2):
    """``core.projector.FourierProjector`` when available, else our :class:`SliceProjector` (same convention)."""
    try:
        from ..projector import FourierProjector
    except ImportError:  # pragma: no cover - fallback while the shared projector is missing
        return SliceProjector(volume, pad=pad)
    return FourierProjector(volume, pad=pad)


def predict_images(projector, rotations: np.ndarray, origins_px: np.ndarray, ctfs: np.ndarray | None,
                   backend: str = "numpy") -> np.ndarray:
    """Predicted particle images: projection centred at ``N//2``, shifted by ``-origin``, times CTF.

    ``origins_px`` (n, 2) are ``rlnOriginX/YAngst / angpix`` (xy order); ``ctfs`` (n, N, N//2+1) or None;
    ``backend`` is passed to ``FourierProjector.project`` ("numpy", "opencl" or "auto").
    Returns complex64 ``(n, N, N//2+1)``.
    """
    from .shift import shift_phase_2d

    try:
        proj = projector.project(rotations, backend=backend)
    except TypeError:  # SliceProjector has no backend choice
        proj = projector.project(rotations)
    n = proj.shape[1]
    shift = np.asarray(origins_px, np.float64).reshape(-1, 2)
    pred = np.asarray(proj, np.complex64) * shift_phase_2d(n, -shift)
    if ctfs is not None:
        pred *= np.asarray(ctfs, np.float32)
    return pred
