"""Auto-refine's front end to the package's one padded Fourier grid (:mod:`polishplugin.core.projector`):
projection of chosen Fourier pixels, back-projection, symmetrisation and the regularised reconstruction
(RELION ``Projector``/``BackProjector``).

The grid, its interpolation and its gridding correction are :mod:`polishplugin.core.projector`'s: the
half transform ``(M, M, M//2+1)`` (numpy rfftn layout, ``M = pad * N``) of the padded map with its centre
voxel at the origin, divided by ``N**2``, so that trilinear samples of the central slice
``A^T (kx, ky, 0)`` equal the rfft (divided by ``N**2``, origin at pixel ``N//2``) of the line-integral
projection (sum over z) of the map rotated by ``A``.  Images are put on the same convention with
:func:`image_rfft`.  The E-step only needs the Fourier pixels inside the current image size, so this
module works on a *list* of 2D pixels ``(kx, ky)`` (:func:`pixel_list`) instead of whole rfft images.

What refine does its own way (as it always has; the device kernel ``estep.cl`` repeats it):

* :func:`map_to_grid` transforms the reference in double precision and without the gridding
  pre-correction (a :class:`~polishplugin.core.projector.FourierProjector` with ``gridding=False``);
* slice coordinates are ``pad A^T k + M//2`` in float32, clamped to ``[0, M - 1.001]``, then taken back
  to logical frequencies (:func:`_slice_coords`; symmetrisation clamps the same way);
* the M-step: :meth:`Backprojector.finalised` (Hermitian planes, symmetrisation for ``|K| <= M/2 - 1``),
  :func:`regularised_grid` (the SSNR prior), :func:`halfgrid_fsc` (the FSC on the unpadded sub-grid)
  and :func:`grid_to_map` (double-precision inverse transform).  Shell means and FSC sums count every
  voxel of the full transform: the half grid's planes ``0 < x < M/2`` twice (:func:`_x_multiplicity`).
"""

from __future__ import annotations

import numpy as np

from ..fourier import fftfreq_signed, round_half_away
from ..fsc import fsc_rfft
from ..projector import FourierProjector, extended_index, hermitian_planes, padded_to_map, symmetrise_halfgrid

__all__ = [
    "image_rfft", "pixel_list", "map_to_grid", "grid_to_map", "project_pixels", "spread_pixels", "Backprojector",
    "grid_shells", "symmetrise_grid", "halfgrid_fsc", "regularised_grid", "project_images",
]

CHUNK = 1 << 20  # samples per interpolation / spreading chunk
FLUSH = 1 << 22  # samples buffered by a Backprojector before they are spread


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


def map_to_grid(volume: np.ndarray, pad: int = 2) -> FourierProjector:
    """The reference's projector (its grid: ``.fourier``, complex64 ``(M, M, M//2+1)``): transformed in
    float64, no gridding pre-correction (see the module docstring)."""
    return FourierProjector(volume, pad=pad, gridding=False, double=True)


def _projector(grid, pad: int) -> FourierProjector:
    """``grid`` itself, or a projector over a half-grid array (its extended table is built per call)."""
    if isinstance(grid, FourierProjector):
        return grid
    grid = np.asarray(grid)
    return FourierProjector.from_transform(grid, grid.shape[0] // pad, pad)


def grid_to_map(grid: np.ndarray, box: int, gridding: bool = True, corner_mask: bool = True) -> np.ndarray:
    """Real map ``(N, N, N)`` of a half grid (double-precision inverse transform); sinc^2 gridding
    correction and RELION's corner soft mask (radius N/2, width 3) when asked."""
    m = grid.shape[0]
    padded = np.fft.irfftn(grid, s=(m, m, m), axes=(0, 1, 2)) * (box * box)
    return padded_to_map(padded, box, corner_mask, gridding)


def _clamped(centred: np.ndarray, m: int) -> np.ndarray:
    """Logical float64 coordinates of centred ones (``+ M//2``) clamped in float32 to ``[0, M - 1.001]``."""
    c = np.clip(np.asarray(centred, np.float32), 0.0, m - 1.001)
    return c.astype(np.float64) - m // 2


def _slice_coords(rotations: np.ndarray, k2d: np.ndarray, pad: int, m: int) -> np.ndarray:
    """Padded grid coordinates ``(n_rot, n_pix, 3)`` in (x, y, z) of pixels ``k2d`` under ``rotations``."""
    # A^T (kx, ky, 0) = kx * A[0, :] + ky * A[1, :]
    r = (rotations[:, :2, :] * pad).astype(np.float32)
    k = k2d.astype(np.float32)
    return _clamped(k[None, :, 0, None] * r[:, None, 0, :] + k[None, :, 1, None] * r[:, None, 1, :]
                    + np.float32(m // 2), m)


def project_pixels(grid, rotations: np.ndarray, k2d: np.ndarray, pad: int = 2) -> np.ndarray:
    """Fourier pixels ``k2d (n_pix, 2)`` of the projections for ``rotations (n, 3, 3)``: ``(n, n_pix)``.

    ``grid``: a :func:`map_to_grid` projector (keeps its interpolation table between calls) or a
    half-grid array."""
    proj = _projector(grid, pad)
    rotations = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
    m = proj.padded_size
    out = np.empty((len(rotations), len(k2d)), np.complex64)
    step = max(1, CHUNK // max(1, len(k2d)))
    for a in range(0, len(rotations), step):
        coords = _slice_coords(rotations[a:a + step], k2d, pad, m)
        out[a:a + step] = proj.sample(coords.reshape(-1, 3)).reshape(coords.shape[:2])
    return out


def _x_multiplicity(m: int) -> np.ndarray:
    """How often each x plane of a half grid occurs in the full transform: 1 at x = 0 and (even ``M``)
    x = M/2, 2 elsewhere (the plane and its Hermitian mate)."""
    mult = np.full(m // 2 + 1, 2.0)
    mult[0] = 1.0
    if m % 2 == 0:
        mult[-1] = 1.0
    return mult


def _shells(m: int, scale: float) -> np.ndarray:
    k = fftfreq_signed(m) / scale
    kx = fftfreq_signed(m, half=True) / scale
    return round_half_away(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2))


def grid_shells(m: int, pad: int) -> np.ndarray:
    """Shell index (in units of the unpadded box) of every voxel of a half grid ``(M, M, M//2+1)``."""
    return _shells(m, pad)


def symmetrise_grid(grid: np.ndarray, sym_ops: np.ndarray) -> np.ndarray:
    """``sum_R grid(R k)`` over the point group (trilinear; RELION ``applyPointGroupSymmetry``) for
    ``|k| <= M/2 - 1`` (where the data lie), with refine's clamped coordinates."""
    if len(sym_ops) <= 1:
        return grid.copy()
    m = grid.shape[0]
    return symmetrise_halfgrid([grid], sym_ops, m // 2 - 1, lambda q: _clamped(q + m // 2, m))[0]


def slice_reach(k2d: np.ndarray, pad: int, m: int) -> float:
    """Largest ``|coordinate|`` of the slice points of pixels ``k2d`` (at most the clamp ``M/2``)."""
    r = float(np.sqrt((np.asarray(k2d, np.float64) ** 2).sum(1)).max()) if len(k2d) else 0.0
    return min(pad * r + 1e-3, m / 2)


def spread_pixels(m: int, pad: int, rotations: np.ndarray, k2d: np.ndarray, values: np.ndarray,
                  weights: np.ndarray) -> tuple:
    """Back-projection of Fourier pixels ``k2d`` (the transpose of :func:`project_pixels`): ``values
    (n_rot, n_pix)`` complex and ``weights (n_rot, n_pix)`` real spread trilinearly at the slices of
    ``rotations (n_rot, 3, 3)`` on the padded half grid of size ``m``.

    Returns ``(index, real, imag, weight)``: the sums on the margin-extended box ``index`` of the slices'
    reach (:func:`~polishplugin.core.projector.extended_index`; ``index.fold`` puts them on the flat half
    grid, ``index.add_into`` adds them to half-grid accumulators).
    ``polishplugin.core.opencl.estep_cl.OpenCLOps.spread`` is the device twin.
    """
    rotations = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
    ext = extended_index(m, slice_reach(k2d, pad, m))
    values = np.asarray(values).reshape(len(rotations), len(k2d))
    weights = np.asarray(weights, np.float64).reshape(len(rotations), len(k2d))
    sums = [np.zeros(len(ext.lut)) for _ in range(3)]
    step = max(1, CHUNK // max(1, len(k2d)))
    for a in range(0, len(rotations), step):
        coords = _slice_coords(rotations[a:a + step], k2d, pad, m).reshape(-1, 3)
        for acc, part in zip(sums, ext.spread(coords, values[a:a + step].reshape(-1),
                                              weights[a:a + step].reshape(-1))):
            acc += part
    return ext, sums[0], sums[1], sums[2]


class Backprojector:
    """Accumulates weighted Fourier-pixel slices (RELION ``BackProjector``) on the padded half grid
    ``(M, M, M//2+1)`` (:mod:`polishplugin.core.projector` layout and interpolation).

    ``ops``: the E-step backend whose ``spread`` does the spreading (:func:`spread_pixels` when None).
    Sums stay on the extended box of the current pixels until ``data``/``weight`` are read.
    """

    def __init__(self, box: int, pad: int = 2, ops=None):
        self.box, self.pad, self.m = box, pad, pad * box
        shape = (self.m, self.m, self.m // 2 + 1)
        self._data = np.zeros(shape, np.complex128)
        self._weight = np.zeros(shape, np.float64)
        self._spread = spread_pixels if ops is None or not hasattr(ops, "spread") else ops.spread
        self._buf: list = []
        self._n_buf = 0
        self._box_sums: list | None = None  # [index, real, imag, weight] (float64) on the extended box

    @property
    def data(self) -> np.ndarray:
        """``sum CTF X / sigma2`` (complex128 half grid)."""
        self._settle()
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self._settle()
        self._data = np.ascontiguousarray(value, np.complex128)

    @property
    def weight(self) -> np.ndarray:
        """``sum CTF^2 / sigma2`` (float64 half grid)."""
        self._settle()
        return self._weight

    @weight.setter
    def weight(self, value: np.ndarray) -> None:
        self._settle()
        self._weight = np.ascontiguousarray(value, np.float64)

    def insert(self, values: np.ndarray, weights: np.ndarray, rotations: np.ndarray, k2d: np.ndarray) -> None:
        """Add ``values (n_rot, n_pix)`` complex and ``weights (n_rot, n_pix)`` at the slices of ``rotations``.

        Slices are buffered (while the pixels ``k2d`` stay the same) and spread in large blocks.
        """
        rotations = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
        if self._buf and not (self._buf[0][3] is k2d or np.array_equal(self._buf[0][3], k2d)):
            self.flush()
        self._buf.append((rotations, np.asarray(values, np.complex64).reshape(len(rotations), -1),
                          np.asarray(weights, np.float32).reshape(len(rotations), -1), k2d))
        self._n_buf += rotations.shape[0] * len(k2d)
        if self._n_buf >= FLUSH:
            self.flush()

    def flush(self) -> None:
        """Spread the buffered slices (into the extended-box sums)."""
        if not self._buf:
            return
        buf, k2d = self._buf, self._buf[0][3]
        self._buf, self._n_buf = [], 0
        ext, re, im, w = self._spread(self.m, self.pad, np.concatenate([b[0] for b in buf]), k2d,
                                      np.concatenate([b[1] for b in buf]), np.concatenate([b[2] for b in buf]))
        if self._box_sums is not None and self._box_sums[0] is not ext:
            self._fold_box()
        if self._box_sums is None:
            self._box_sums = [ext, np.zeros(len(ext.lut)), np.zeros(len(ext.lut)), np.zeros(len(ext.lut))]
        for acc, part in zip(self._box_sums[1:], (re, im, w)):
            acc += part

    def _fold_box(self) -> None:
        if self._box_sums is not None:
            ext, re, im, w = self._box_sums
            self._box_sums = None
            ext.add_into(self._data, self._weight, re, im, w)

    def _settle(self) -> None:
        self.flush()
        self._fold_box()

    def add(self, other: "Backprojector") -> None:
        self.data += other.data
        self.weight += other.weight

    def finalised(self, sym_ops: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Hermitian-completed (:func:`~polishplugin.core.projector.hermitian_planes`) and symmetrised
        data and weight grids (new arrays)."""
        d, w = self.data.copy(), self.weight.copy()
        for ix, (dp, wp) in hermitian_planes(self.data, self.weight).items():
            d[:, :, ix] = dp
            w[:, :, ix] = wp
        if sym_ops is not None and len(sym_ops) > 1:
            d = symmetrise_grid(d, sym_ops)
            w = symmetrise_grid(w, sym_ops)
        return d, w


def halfgrid_fsc(d1: np.ndarray, w1: np.ndarray, d2: np.ndarray, w2: np.ndarray, pad: int, box: int) -> np.ndarray:
    """FSC between ``d1/w1`` and ``d2/w2`` at the unpadded grid points (RELION ``compareTwoHalves``);
    ``FSC(0) = 1``; ``N//2 + 1`` shells; every point of the full transform counted once."""
    sub = (slice(0, None, pad), slice(0, None, pad), slice(0, pad * (box // 2) + 1, pad))
    f1 = np.where(w1[sub] > 0, d1[sub] / np.maximum(w1[sub], 1e-30), 0)
    f2 = np.where(w2[sub] > 0, d2[sub] / np.maximum(w2[sub], 1e-30), 0)
    shells = _shells(box, 1)
    twice = slice(1, (box + 1) // 2)  # the x planes that stand for their Hermitian mates too
    g1, g2, s12 = (np.concatenate([a, a[..., twice]], axis=-1) for a in (f1, f2, shells))
    out = fsc_rfft(g1, g2, s12, n=box // 2 + 1)
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
    sh = np.where(inside, shells, n).ravel()
    mult = np.broadcast_to(_x_multiplicity(m), shells.shape).ravel()
    counts = np.bincount(sh, mult, n + 1)[:n]
    wmean = np.bincount(sh, (w * _x_multiplicity(m)).ravel(), n + 1)[:n] / np.maximum(counts, 1)
    sh = sh.reshape(shells.shape)
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


def project_images(grid, rotations: np.ndarray, box: int, pad: int = 2,
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
