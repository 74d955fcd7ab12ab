"""Padded 3D Fourier grids for auto-refine: projection of chosen Fourier pixels, back-projection,
symmetrisation and the regularised reconstruction (RELION ``Projector``/``BackProjector``).

Unlike :mod:`polishplugin.core.projector` (whole rfft slices on a half grid), the E-step only needs
the Fourier pixels inside the current image size, so this module works on a *list* of 2D pixels
``(kx, ky)`` and a full (non-Hermitian-folded) centred complex grid of size ``M = pad * N``:
``grid[M//2 + pad*kz, M//2 + pad*ky, M//2 + pad*kx]``.

Scaling: the grid is ``fftshift(fftn(ifftshift(padded map))) / N**2``, so that trilinear samples of
the central slice ``A^T (kx, ky, 0)`` equal the rfft (divided by ``N**2``, origin at pixel ``N//2``)
of the line-integral projection (sum over z) of the map rotated by ``A``.  Images are put on the same
convention with :func:`image_rfft`.  A back-projection of such images followed by ``data / weight``
gives the grid back, so :func:`grid_to_map` is the exact inverse of :func:`map_to_grid`.
"""

from __future__ import annotations

import numpy as np

from ..fourier import round_half_away
from ..projector import gridding_correction, soft_mask_outside_map

__all__ = [
    "image_rfft", "pixel_list", "map_to_grid", "grid_to_map", "project_pixels", "Backprojector",
    "grid_shells", "symmetrise_grid", "halfgrid_fsc", "regularised_grid", "sample_grid", "project_images",
]

CHUNK = 1 << 20  # samples per interpolation chunk / back-projection flush


def image_rfft(images: np.ndarray) -> np.ndarray:
    """rfft (``/N**2``) of images ``(..., N, N)`` with the origin at pixel ``N//2``."""
    n = images.shape[-1]
    return np.fft.rfftn(np.fft.ifftshift(images, axes=(-2, -1)), axes=(-2, -1)) / (n * n)


def pixel_list(box: int, max_radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent rfft pixels with ``|k| < max_radius``: ``(iy, ix)`` array indices and ``(kx, ky)``.

    Pixels with ``kx == 0, ky < 0`` (Hermitian mates of ``kx == 0, ky > 0``) are left out, so every
    independent complex coefficient appears once.  Sorted by radius.
    """
    ky = np.fft.fftfreq(box, 1.0 / box).astype(np.int64)
    ky = np.where(np.arange(box) == box // 2, box // 2, ky)  # positive Nyquist
    kx = np.arange(box // 2 + 1)
    kyy, kxx = np.meshgrid(ky, kx, indexing="ij")
    iy, ix = np.meshgrid(np.arange(box), kx, indexing="ij")
    r = np.sqrt(kxx ** 2 + kyy ** 2)
    sel = (r < max_radius) & ~((kxx == 0) & (kyy < 0))
    order = np.argsort(r[sel], kind="stable")
    return iy[sel][order], ix[sel][order], np.column_stack([kxx[sel], kyy[sel]])[order].astype(np.float64)


def map_to_grid(volume: np.ndarray, pad: int = 2) -> np.ndarray:
    """Centred padded complex Fourier grid ``(M, M, M)`` of a cubic map (see module docstring)."""
    n = volume.shape[0]
    m = pad * n
    padded = np.zeros((m, m, m), np.float64)
    s = m // 2 - n // 2
    padded[s:s + n, s:s + n, s:s + n] = volume
    grid = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(padded))) / (n * n)
    return np.ascontiguousarray(grid, dtype=np.complex64)  # fftn may return a Fortran-ordered array


def grid_to_map(grid: np.ndarray, box: int, gridding: bool = True, corner_mask: bool = True) -> np.ndarray:
    """Real map ``(N, N, N)`` of a centred padded grid; sinc^2 gridding correction and RELION's
    corner soft mask (radius N/2, width 3) when asked."""
    m = grid.shape[0]
    padded = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(grid))).real * (box * box)
    s = m // 2 - box // 2
    vol = padded[s:s + box, s:s + box, s:s + box]
    if corner_mask:
        vol = soft_mask_outside_map(vol, box / 2.0, 3.0)
    if gridding:
        vol = vol / gridding_correction(box, m)
    return vol.astype(np.float32)


def _slice_coords(rotations: np.ndarray, k2d: np.ndarray, pad: int, m: int) -> np.ndarray:
    """Padded grid coordinates ``(n_rot, n_pix, 3)`` in (x, y, z) of pixels ``k2d`` under ``rotations``."""
    # A^T (kx, ky, 0) = kx * A[0, :] + ky * A[1, :]
    r = (rotations[:, :2, :] * pad).astype(np.float32)
    k = k2d.astype(np.float32)
    return k[None, :, 0, None] * r[:, None, 0, :] + k[None, :, 1, None] * r[:, None, 1, :] + np.float32(m // 2)


def _corners(coords: np.ndarray, m: int):
    """Yield ``(flat index, weight)`` of the 8 trilinear corners of ``coords (..., 3)`` (x, y, z).

    Coordinates are clipped to ``[0, m-1)`` (pixels used stay inside ``|k| < N/2``, so only the very
    edge is affected).
    """
    c = np.clip(np.asarray(coords, np.float32), 0.0, m - 1.001)
    base = c.astype(np.int32)
    frac = c - base
    i000 = (base[..., 2].astype(np.int64) * m + base[..., 1]) * m + base[..., 0]
    fx, fy, fz = frac[..., 0], frac[..., 1], frac[..., 2]
    gx, gy, gz = 1 - fx, 1 - fy, 1 - fz
    wyz = ((gy * gz, 0), (fy * gz, m), (gy * fz, m * m), (fy * fz, m * m + m))
    for w_yz, off in wyz:
        yield i000 + off, gx * w_yz
        yield i000 + (off + 1), fx * w_yz


def sample_grid(grid: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Trilinear samples of a centred grid at ``coords (..., 3)`` (x, y, z padded voxels)."""
    m = grid.shape[0]
    flat = np.ascontiguousarray(grid).reshape(-1)  # a view for C-ordered grids
    out = np.zeros(coords.shape[:-1], np.complex64)
    for idx, w in _corners(coords, m):
        out += flat[idx] * w
    return out


def project_pixels(grid: np.ndarray, rotations: np.ndarray, k2d: np.ndarray, pad: int = 2) -> np.ndarray:
    """Fourier pixels ``k2d (n_pix, 2)`` of the projections for ``rotations (n, 3, 3)``: ``(n, n_pix)``."""
    rotations = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
    m = grid.shape[0]
    out = np.empty((len(rotations), len(k2d)), np.complex64)
    step = max(1, CHUNK // max(1, len(k2d)))
    for a in range(0, len(rotations), step):
        out[a:a + step] = sample_grid(grid, _slice_coords(rotations[a:a + step], k2d, pad, m))
    return out


def grid_shells(m: int, pad: int) -> np.ndarray:
    """Shell index (in units of the unpadded box) of every voxel of a centred ``M^3`` grid."""
    k = (np.arange(m) - m // 2) / pad
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    return round_half_away(r)


def symmetrise_grid(grid: np.ndarray, sym_ops: np.ndarray) -> np.ndarray:
    """``sum_R grid(R k)`` over the point group (trilinear; RELION ``applyPointGroupSymmetry``)."""
    if len(sym_ops) <= 1:
        return grid.copy()
    m = grid.shape[0]
    c = np.arange(m, dtype=np.float64) - m // 2
    kz, ky, kx = np.meshgrid(c, c, c, indexing="ij")
    inside = np.nonzero((kx ** 2 + ky ** 2 + kz ** 2).ravel() <= (m // 2 - 1) ** 2)[0]  # data lie inside
    k = np.stack([kx.ravel()[inside], ky.ravel()[inside], kz.ravel()[inside]], axis=-1)
    del kx, ky, kz
    out = np.array(grid, dtype=np.complex128 if np.iscomplexobj(grid) else np.float64, order="C").reshape(-1)
    flat = np.ascontiguousarray(grid).reshape(-1)
    for r in sym_ops[1:]:
        coords = k @ r.T + m // 2
        for a in range(0, len(k), CHUNK):
            vals = np.zeros(min(CHUNK, len(k) - a), out.dtype)
            for idx, w in _corners(coords[a:a + CHUNK], m):
                vals += flat[idx] * w
            out[inside[a:a + CHUNK]] += vals
    return out.reshape(grid.shape)


class Backprojector:
    """Accumulates ``sum CTF X / sigma2`` (data) and ``sum CTF^2 / sigma2`` (weight) on a padded grid."""

    def __init__(self, box: int, pad: int = 2):
        self.box, self.pad, self.m = box, pad, pad * box
        self.data = np.zeros(self.m ** 3, np.complex128)
        self.weight = np.zeros(self.m ** 3, np.float64)
        self._buf: list = []
        self._n_buf = 0

    def insert(self, values: np.ndarray, weights: np.ndarray, rotations: np.ndarray, k2d: np.ndarray) -> None:
        """Add ``values (n_rot, n_pix)`` complex and ``weights (n_rot, n_pix)`` at the slices of ``rotations``.

        Samples are buffered and spread in large blocks (one ``bincount`` per corner and block).
        """
        rotations = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
        coords = _slice_coords(rotations, k2d, self.pad, self.m).reshape(-1, 3)
        self._buf.append((coords, np.asarray(values, np.complex64).reshape(-1),
                          np.asarray(weights, np.float32).reshape(-1)))
        self._n_buf += len(coords)
        if self._n_buf >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Spread the buffered samples into the grids."""
        if not self._buf:
            return
        coords = np.concatenate([b[0] for b in self._buf])
        vals = np.concatenate([b[1] for b in self._buf])
        wts = np.concatenate([b[2] for b in self._buf]).astype(np.float64)
        self._buf, self._n_buf = [], 0
        n = self.m ** 3
        corners = list(_corners(coords, self.m))
        idx = np.concatenate([c[0] for c in corners])
        w = np.concatenate([c[1] for c in corners]).astype(np.float64)
        del corners
        self.data += np.bincount(idx, np.tile(vals.real, 8) * w, n) + 1j * np.bincount(idx, np.tile(vals.imag, 8) * w, n)
        self.weight += np.bincount(idx, np.tile(wts, 8) * w, n)

    def add(self, other: "Backprojector") -> None:
        self.flush()
        other.flush()
        self.data += other.data
        self.weight += other.weight

    def finalised(self, sym_ops: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Hermitian-completed (``D(k) + conj D(-k)``) and symmetrised data and weight grids ``(M,M,M)``."""
        self.flush()
        m = self.m
        d = self.data.reshape(m, m, m)
        w = self.weight.reshape(m, m, m)
        # index of -k: (m - i) % m for a centred grid of even size
        flip = (-np.arange(m)) % m
        d = d + np.conj(d[np.ix_(flip, flip, flip)])
        w = w + w[np.ix_(flip, flip, flip)]
        if sym_ops is not None and len(sym_ops) > 1:
            d = symmetrise_grid(d, sym_ops)
            w = symmetrise_grid(w, sym_ops)
        return d, w


def halfgrid_fsc(d1: np.ndarray, w1: np.ndarray, d2: np.ndarray, w2: np.ndarray, pad: int, box: int) -> np.ndarray:
    """FSC between ``d1/w1`` and ``d2/w2`` at the unpadded grid points (RELION ``compareTwoHalves``);
    ``FSC(0) = 1``; ``N//2 + 1`` shells."""
    m = d1.shape[0]
    sub = slice(m // 2 - pad * (box // 2), m // 2 + pad * (box // 2) + 1, pad)
    f1 = np.where(w1[sub, sub, sub] > 0, d1[sub, sub, sub] / np.maximum(w1[sub, sub, sub], 1e-30), 0)
    f2 = np.where(w2[sub, sub, sub] > 0, d2[sub, sub, sub] / np.maximum(w2[sub, sub, sub], 1e-30), 0)
    k = np.arange(f1.shape[0]) - box // 2
    shells = round_half_away(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2))
    n = box // 2 + 1
    sel = shells < n
    num = np.bincount(shells[sel], (f1 * np.conj(f2)).real[sel], n)
    a = np.bincount(shells[sel], (np.abs(f1) ** 2)[sel], n)
    b = np.bincount(shells[sel], (np.abs(f2) ** 2)[sel], n)
    out = np.where(a * b > 0, num / np.sqrt(np.maximum(a * b, 1e-300)), 0.0)
    out[0] = 1.0
    return out


def regularised_grid(d: np.ndarray, w: np.ndarray, ssnr: np.ndarray | None, pad: int, box: int,
                     minres_map: int = 5, tau2_fudge: float = 1.0) -> np.ndarray:
    """``data / (weight + mean_shell(weight) / (tau2_fudge * SSNR))`` (RELION ``reconstruct``; the
    prior term is RELION's ``1 / (pad^3 tau2)`` with ``tau2 = SSNR * sigma2_rec``), then
    ``W = max(W, radavg(W)/1000)``; shells beyond the SSNR table are zero.  ``ssnr=None``: no prior
    (unregularised map, ``W`` floored only)."""
    m = d.shape[0]
    shells = grid_shells(m, pad)
    n = box // 2 + 1
    inside = shells < n
    sh = np.where(inside, shells, n)
    counts = np.bincount(sh.ravel(), minlength=n + 1)[:n]
    wmean = np.bincount(sh.ravel(), w.ravel(), n + 1)[:n] / np.maximum(counts, 1)
    big = w.copy()
    if ssnr is not None:
        s = np.asarray(ssnr, np.float64)[:n]
        prior = np.where(s > 0, wmean / np.maximum(tau2_fudge * s, 1e-30), 0.0)
        prior = np.where((s <= 0), wmean / 1e-3, prior)
        prior[:minres_map] = 0.0
        big = big + np.append(prior, 0.0)[sh]
    floor = np.append(wmean / 1000.0, np.inf)[sh]
    big = np.maximum(big, np.maximum(floor, 1e-30))
    out = np.where(inside, d / big, 0)
    return np.ascontiguousarray(out, dtype=np.complex64)


def project_images(grid: np.ndarray, rotations: np.ndarray, box: int, pad: int = 2,
                   ctf: np.ndarray | None = None, shifts_px: np.ndarray | None = None) -> np.ndarray:
    """Real-space projections ``(n, N, N)`` (origin at ``N//2``) of the map behind ``grid``.

    Optional ``ctf`` ``(n, N, N//2+1)`` multiplies each transform, ``shifts_px (n, 2)`` moves the
    content (xy, pixels).  Used to simulate particles and in tests.
    """
    ky = np.fft.fftfreq(box, 1.0 / box)
    ky = np.where(np.arange(box) == box // 2, box // 2, ky)
    kx = np.arange(box // 2 + 1, dtype=np.float64)
    k2d = np.column_stack([np.repeat(kx[None, :], box, 0).ravel(), np.repeat(ky[:, None], len(kx), 1).ravel()])
    r = np.sqrt((k2d ** 2).sum(1))
    f = project_pixels(grid, rotations, k2d, pad) * (r < box / 2)[None, :]
    f = f.reshape(-1, box, box // 2 + 1)
    if ctf is not None:
        f = f * ctf
    if shifts_px is not None:
        s = np.asarray(shifts_px, np.float64)
        f = f * np.exp(-2j * np.pi * (s[:, None, None, 0] * kx[None, None, :]
                                      + s[:, None, None, 1] * ky[None, :, None]) / box)
    img = np.fft.irfftn(f * (box * box), s=(box, box), axes=(-2, -1))
    return np.fft.fftshift(img, axes=(-2, -1)).astype(np.float32)
