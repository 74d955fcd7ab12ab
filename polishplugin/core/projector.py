"""The package's one padded Fourier grid: projection and back-projection of 3D maps (RELION
``Projector``/``BackProjector`` semantics).

Used by polishing (reference projections, :mod:`polishplugin.core.polish.projection`), by the simulator
(projections and true-pose reconstructions) and by auto-refine, whose pixel-list front end is
:mod:`polishplugin.core.refine.fourier3d` (same grid, same interpolation, same gridding correction).

Conventions (all shared with :mod:`polishplugin.core.fourier`):

* Maps are ``(N, N, N)`` arrays indexed ``[z, y, x]``; images ``(N, N)`` indexed ``[y, x]``.  The centre
  of a map/image is voxel/pixel ``N // 2`` on every axis (even and odd ``N``).
* Rotation matrices ``A`` (``(n, 3, 3)``, from :func:`polishplugin.core.geometry.euler_to_matrix`) act
  on ``(x, y, z)`` column vectors.  The projection of a map ``V`` for ``A`` is the line integral
  (sum of voxels) along ``z`` of the map rotated by ``A``: ``P(x, y) = sum_z V(A^T (x, y, z))``.  In
  Fourier space the image pixel ``k = (kx, ky)`` samples the 3D transform at ``A^T (kx, ky, 0)``
  (RELION ``Projector::project`` uses ``A.inv()``).
* The grid (:func:`padded_transform`): the map, zero padded to ``M = pad * N`` with its centre voxel
  moved to the origin, as numpy's rfftn half transform ``(M, M, M//2+1)`` (frequency ``K`` at index
  ``K mod M`` on z and y, ``0..M//2`` on x) divided by ``N**2``.  A sample at ``pad * A^T k`` is then
  the rfft (divided by ``N**2``) of the projection with its centre at pixel 0; back-projected image
  values (same units) divided by the accumulated weights give the grid back.
* Interpolation (one for sampling and spreading, :class:`_ExtendedIndex`): trilinear on the half
  transform; a point with negative x reads (spreads) the Hermitian mate at ``-K``, conjugated; y and z
  wrap around (the DFT is periodic); x corners beyond ``M//2`` are dropped.  The planes x = 0 and
  x = M/2 hold both ``K`` and its mate: :func:`hermitian_planes` sums them.
* Images are returned/accepted as :func:`polishplugin.core.fourier.rfft` arrays ``(n, N, N//2+1)``
  (forward divided by ``N**2``) of real images whose centre is pixel ``N // 2``.
* Gridding: trilinear interpolation in Fourier space multiplies real space by ``sinc^2(r / M)``
  (``r`` in voxels from the centre, ``sinc(x) = sin(pi x)/(pi x)``); the projector divides the map by
  it before transforming (``gridding=True``), the reconstruction divides the result by it after
  transforming back (:func:`padded_to_map`).

Each heavy loop has a numpy implementation here; :mod:`polishplugin.core.opencl.projector_cl` holds
the OpenCL twins, selected per call with ``backend="numpy"|"opencl"|"auto"`` (resolved by
:func:`polishplugin.core.opencl.runtime.choose_backend`; the default is ``"numpy"``, programs pass their
``--device`` choice).  ``bench/README.md`` records which is faster on which machine.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from polishplugin.core import fourier, geometry

__all__ = [
    "FourierProjector", "FourierBackprojector", "reconstruct_from_images", "gridding_correction",
    "soft_mask_outside_map", "padded_transform", "padded_to_map", "sample_trilinear_halfgrid", "extended_index",
    "spread_trilinear_halfgrid", "hermitian_planes", "symmetrise_halfgrid", "project_real_space",
]

#: images processed per vectorised batch (bounds temporary memory to ~ batch * N * N * 200 bytes)
BATCH_IMAGES = 64


def _sinc(x: np.ndarray) -> np.ndarray:
    return np.sinc(x)  # numpy sinc is sin(pi x)/(pi x)


def gridding_correction(box: int, padded_size: int) -> np.ndarray:
    """``sinc^2(r / padded_size)`` on an ``(N, N, N)`` grid, ``r`` = distance (voxels) from voxel ``N//2``."""
    c = box // 2
    ax = np.arange(box, dtype=np.float64) - c
    r = np.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
    return _sinc(r / padded_size) ** 2


def soft_mask_outside_map(volume: np.ndarray, radius: float | None = None, width: float = 3.0) -> np.ndarray:
    """Replace voxels outside a sphere by their (raised-cosine weighted) mean (RELION ``softMaskOutsideMap``).

    Voxels with ``r <= radius`` keep their value, ``r >= radius + width`` become the background mean,
    in between they are blended with a raised cosine.  ``radius`` defaults to ``N / 2``.
    """
    v = np.asarray(volume, dtype=np.float64)
    n = v.shape[0]
    if radius is None:
        radius = n / 2.0
    c = n // 2
    axes = [np.arange(s, dtype=np.float64) - c for s in v.shape]
    r2 = np.zeros(v.shape)
    for i, a in enumerate(axes):
        shape = [1] * v.ndim
        shape[i] = -1
        r2 = r2 + a.reshape(shape) ** 2
    r = np.sqrt(r2)
    w = np.clip((r - radius) / width, 0.0, 1.0)
    w = 0.5 * (1.0 - np.cos(np.pi * w))  # 0 inside, 1 outside radius + width
    sw = w.sum()
    if sw <= 0:
        return v.copy()
    bg = float((w * v).sum() / sw)
    return v * (1.0 - w) + bg * w


def _check_volume(volume: np.ndarray) -> np.ndarray:
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"volume must be a cubic (N, N, N) array, got shape {vol.shape}")
    if not np.all(np.isfinite(vol)):
        raise ValueError("volume contains NaN or Inf")
    return vol


def padded_transform(volume: np.ndarray, pad: int = 2, gridding: bool = True, double: bool = False) -> np.ndarray:
    """The grid of ``volume`` (see the module doc): complex64 ``(M, M, M//2+1)``, ``M = pad * N``.

    ``gridding``: divide the map by ``sinc^2(r/M)`` first.  ``double``: transform in float64 (else
    float32, half the memory of the padded map).
    """
    vol = _check_volume(volume)
    n = vol.shape[0]
    m = int(pad) * n
    if gridding:
        vol = vol / gridding_correction(n, m)
    padded = np.zeros((m, m, m), dtype=np.float64 if double else np.float32)
    ii = np.mod(np.arange(n) - n // 2, m)
    padded[np.ix_(ii, ii, ii)] = vol
    del vol
    if double:
        return (np.fft.rfftn(padded) / (n * n)).astype(np.complex64)
    f = scipy.fft.rfftn(padded, norm="forward", workers=-1)
    del padded
    f *= np.float32(m ** 3 / n ** 2)  # pad^3 N: exact, a power of 2 for power-of-2 boxes
    return f


def padded_to_map(padded: np.ndarray, box: int, soft_mask: bool = True, gridding: bool = True) -> np.ndarray:
    """The ``(N, N, N)`` float32 map of a padded real-space map with its centre at the origin (the
    inverse transform of a grid times ``N**2``): crop, RELION's corner soft mask (radius N/2, width 3)
    and the gridding correction ``/ sinc^2(r/M)`` when asked."""
    m = padded.shape[0]
    ii = np.mod(np.arange(box) - box // 2, m)
    vol = padded[np.ix_(ii, ii, ii)]
    if soft_mask:
        vol = soft_mask_outside_map(vol, box / 2.0, 3.0)
    if gridding:
        vol = vol / gridding_correction(box, m)
    return vol.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Trilinear sampling / spreading on the half transform (numpy references of the OpenCL kernels)
# --------------------------------------------------------------------------------------------------

class _ExtendedIndex:
    """Margin-extended (z, y, x) box around the padded half-grid, for modulo-free trilinear corners.

    Logical coordinates ``-R .. R+1`` on z/y (``R = ceil(reach) + 1``) and ``0 .. R+1`` on x map through
    ``lut`` to flat indices of the periodic half-grid ``(m, m, m//2+1)``; x beyond ``m//2`` maps to a
    dummy slot ``m*m*(m//2+1)`` (value 0, discarded when spreading).  Points with ``|coordinate| <=
    reach`` are accepted; a point with negative x is folded onto its Hermitian mate (all its corners).
    """

    def __init__(self, m: int, reach: float):
        hx = m // 2 + 1
        r = int(np.ceil(reach)) + 1
        self.lo = -r
        self.ny = 2 * r + 2
        self.nx = r + 2
        f = np.mod(np.arange(self.ny) + self.lo, m)
        fx = np.arange(self.nx)
        self.dummy = m * m * hx
        lut = (f[:, None, None] * m + f[None, :, None]) * hx + fx[None, None, :]
        lut = np.where(fx[None, None, :] < hx, lut, self.dummy)
        self.lut = lut.reshape(-1).astype(np.int32 if self.dummy < 2 ** 31 - 1 else np.int64)
        sy, sz = self.nx, self.ny * self.nx
        self.offsets = [dz * sz + dy * sy + dx for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]
        self._valid: np.ndarray | None = None  # box cells off the dummy slot, when none share a voxel (add_into)

    def corners(self, coords: np.ndarray):
        """``(base (k,), weights list of 8 (k,), neg (k,))`` for points ``coords`` ``(k, 3)`` (x, y, z)."""
        x, y, z = coords[:, 0], coords[:, 1], coords[:, 2]
        neg = x < 0
        sign = np.where(neg, -1.0, 1.0)
        x, y, z = x * sign, y * sign, z * sign
        x0, y0, z0 = np.floor(x), np.floor(y), np.floor(z)
        fx, fy, fz = x - x0, y - y0, z - z0
        base = ((z0.astype(np.int64) - self.lo) * self.ny + (y0.astype(np.int64) - self.lo)) * self.nx \
            + x0.astype(np.int64)
        if base.size and (base.min() < 0 or base.max() + self.offsets[-1] >= len(self.lut)):
            raise ValueError(f"coordinates beyond the reach {-self.lo - 1} of the grid index")
        gx, gy, gz = 1.0 - fx, 1.0 - fy, 1.0 - fz
        wzy = [gz * gy, gz * fy, fz * gy, fz * fy]
        weights = []
        for w in wzy:
            weights.append(w * gx)
            weights.append(w * fx)
        return base, weights, neg

    def table(self, grid: np.ndarray) -> np.ndarray:
        """Values of the half-grid ``grid`` on the extended box (0 in the dummy slot), flat."""
        return np.append(grid.reshape(-1), np.zeros(1, grid.dtype))[self.lut]

    def sample(self, table: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """Trilinear values at ``coords`` ``(k, 3)`` of the grid behind ``table`` (:meth:`table`)."""
        base, weights, neg = self.corners(coords)
        vals = weights[0] * table[base]
        for w, off in zip(weights[1:], self.offsets[1:]):
            vals += w * table[base + off]
        return np.where(neg, np.conj(vals), vals) if np.iscomplexobj(vals) else vals

    def spread(self, coords: np.ndarray, values: np.ndarray, value_weights: np.ndarray):
        """Trilinear spreading of ``values`` (complex) and ``value_weights`` (real) at ``coords`` ``(k, 3)``:
        ``(real, imag, weight)`` sums on the extended box (flat, ``len(lut)``; :meth:`fold` or
        :meth:`add_into` put them on the half grid)."""
        base, weights, neg = self.corners(coords)
        vals = np.where(neg, np.conj(values), values)
        n_ext = len(self.lut)
        sums = []
        # per corner one bincount over the points' base cells on the extended box, shifted by the corner's
        # offset there (no 8x concatenated index and value arrays)
        for q in (vals.real, vals.imag, np.asarray(value_weights)):
            ext = np.zeros(n_ext)
            for w, off in zip(weights, self.offsets):
                ext[off:] += np.bincount(base, weights=w * q, minlength=n_ext)[:n_ext - off]
            sums.append(ext)
        return sums[0], sums[1], sums[2]

    def fold(self, ext: np.ndarray) -> np.ndarray:
        """Extended-box sums folded onto the flat half grid, the dummy slot last (length ``dummy + 1``)."""
        return np.bincount(self.lut, weights=ext, minlength=self.dummy + 1)

    def bincounts(self, coords: np.ndarray, values: np.ndarray, value_weights: np.ndarray):
        """:meth:`spread` folded onto the half grid: ``(real, imag, weight)`` per flat half-grid index, the
        dummy slot last (length ``dummy + 1``)."""
        re, im, w = self.spread(coords, values, value_weights)
        return self.fold(re), self.fold(im), self.fold(w)

    def add_into(self, data: np.ndarray, weight: np.ndarray, re: np.ndarray, im: np.ndarray,
                 w: np.ndarray) -> None:
        """Add extended-box sums to the half-grid accumulators ``data`` (complex) and ``weight`` in place.

        Where no two cells of the box land on one grid voxel (a reach below ``M/2 - 1``), one indexed add
        over the box; else through :meth:`fold`."""
        if self._valid is None:
            valid = np.flatnonzero(self.lut != self.dummy)
            self._valid = valid if len(np.unique(self.lut[valid])) == len(valid) else np.zeros(0, np.int64)
        flat_d, flat_w = data.reshape(-1), weight.reshape(-1)
        if len(self._valid) and np.shares_memory(flat_d, data) and np.shares_memory(flat_w, weight):
            idx = self.lut[self._valid]
            flat_d[idx] += re[self._valid] + 1j * im[self._valid]
            flat_w[idx] += w[self._valid]
            return
        data += (self.fold(re)[:-1] + 1j * self.fold(im)[:-1]).reshape(data.shape)
        weight += self.fold(w)[:-1].reshape(weight.shape)


def _reach(coords: np.ndarray) -> float:
    return float(np.abs(coords).max()) if coords.size else 0.0


@functools.lru_cache(maxsize=4)
def _index_for(m: int, reach: int) -> _ExtendedIndex:
    return _ExtendedIndex(m, reach)


def extended_index(m: int, reach: float) -> _ExtendedIndex:
    """The :class:`_ExtendedIndex` of padded size ``m`` for coordinates up to ``reach``, kept for reuse (the
    index depends on ``ceil(reach)`` only; spreading the points of one current size builds it once, and a
    smaller reach than ``m / 2`` keeps the scattered sums in a smaller, cache-friendlier box)."""
    return _index_for(int(m), int(np.ceil(reach)))


def sample_trilinear_halfgrid(grid: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Trilinear value of the half-transform ``grid`` ``(m, m, m//2+1)`` at ``coords`` ``(..., 3)`` (x,y,z).

    Frequencies are in padded-grid units; negative x reads the Hermitian mate.  Points whose corners
    fall beyond the stored x range get weight 0 for those corners.  (Repeated sampling of one grid:
    :meth:`FourierProjector.sample` keeps the extended table.)
    """
    coords = np.asarray(coords, dtype=np.float64)
    ext = extended_index(grid.shape[0], _reach(coords))
    return ext.sample(ext.table(grid), coords.reshape(-1, 3)).reshape(coords.shape[:-1])


def spread_trilinear_halfgrid(data: np.ndarray, weight: np.ndarray, coords: np.ndarray,
                              values: np.ndarray, value_weights: np.ndarray, reach: float | None = None) -> None:
    """Add ``values`` (complex) and ``value_weights`` (real) at ``coords`` into ``data``/``weight`` in place.

    ``data`` complex ``(m, m, m//2+1)``, ``weight`` real of the same shape; ``coords`` ``(..., 3)`` in
    padded units (x, y, z); negative x spreads the conjugate at ``-coords``.  ``reach``: largest
    ``|coordinate|`` (default: from ``coords``).
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    ext = extended_index(data.shape[0], _reach(coords) if reach is None else reach)
    re, im, w = ext.bincounts(coords, np.asarray(values).reshape(-1),
                              np.asarray(value_weights, dtype=np.float64).reshape(-1))
    data += (re[:-1] + 1j * im[:-1]).reshape(data.shape)
    weight += w[:-1].reshape(weight.shape)


def hermitian_planes(data: np.ndarray, weight: np.ndarray) -> dict:
    """``{ix: (D + conj D(-K), W + W(-K))}`` on the planes ``x = 0`` and (even ``M``) ``x = M/2`` of
    half-grid accumulators: the planes that hold both a point and its Hermitian mate."""
    m = data.shape[0]
    neg = np.mod(-np.arange(m), m)
    out = {}
    for ix in ([0, m // 2] if m % 2 == 0 else [0]):
        d = data[:, :, ix]
        w = weight[:, :, ix]
        out[ix] = (d + np.conj(d[np.ix_(neg, neg)]), w + w[np.ix_(neg, neg)])
    return out


def symmetrise_halfgrid(grids: list, operators: np.ndarray, radius: float, coords_fn=None) -> list:
    """``grid(K) + sum_R grid(R K)`` over ``operators[1:]`` (the first is the identity) for the voxels with
    ``|K| <= radius`` (trilinear, RELION ``symmetrise``), for each of ``grids`` (half grids, Hermitian
    planes completed); voxels outside keep their value.  ``coords_fn`` maps the rotated coordinates
    ``(k, 3)`` to the points sampled (default: themselves).  Returns new complex128/float64 arrays.
    """
    m = grids[0].shape[0]
    kz = fourier.fftfreq_signed(m).astype(np.float64)
    kx = fourier.fftfreq_signed(m, half=True).astype(np.float64)
    Z, Y, X = np.meshgrid(kz, kz, kx, indexing="ij")
    inside = (X ** 2 + Y ** 2 + Z ** 2) <= radius ** 2
    p = np.stack([X, Y, Z], axis=-1)[inside]
    del X, Y, Z
    ext = _ExtendedIndex(m, radius)
    tables = [ext.table(g) for g in grids]
    adds: list[np.ndarray] = [np.zeros(len(p), dtype=np.complex128 if np.iscomplexobj(g) else np.float64)
                              for g in grids]
    chunk = 1 << 18  # bounds the 8-corner temporaries to ~40 MB
    for r in operators[1:]:
        rt = np.asarray(r, dtype=np.float64).T
        for s in range(0, len(p), chunk):
            q = p[s:s + chunk] @ rt  # R K
            if coords_fn is not None:
                q = coords_fn(q)
            for add, table in zip(adds, tables):
                add[s:s + chunk] += ext.sample(table, q)
    out = []
    for g, add in zip(grids, adds):
        new = np.array(g, dtype=add.dtype)
        new[inside] += add
        out.append(new)
    return out


def _slice_coords(rotations: np.ndarray, box: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded 3D coordinates ``(n, N, N//2+1, 3)`` of every rfft pixel, and the 2D radius ``(N, N//2+1)``."""
    ky = fourier.fftfreq_signed(box).astype(np.float64)
    kx = fourier.fftfreq_signed(box, half=True).astype(np.float64)
    KY, KX = np.meshgrid(ky, kx, indexing="ij")
    # A^T (kx, ky, 0): component j = A[0, j] kx + A[1, j] ky
    rot = np.asarray(rotations, dtype=np.float64)
    coords = (rot[:, None, None, 0, :] * KX[None, :, :, None] + rot[:, None, None, 1, :] * KY[None, :, :, None])
    return coords * pad, np.sqrt(KX ** 2 + KY ** 2)


def _image_centre_phase(box: int) -> np.ndarray:
    """Phase that moves content from the origin to pixel ``N//2`` on the rfft grid ``(N, N//2+1)``."""
    c = box // 2
    return fourier.centre_shift_phase((box, box), (c, c))


def _use_opencl(backend: str, device) -> bool:
    """``backend`` ``"numpy"``/``"opencl"``/``"auto"`` (with ``device``) resolved by ``runtime.choose_backend``."""
    if backend not in ("numpy", "opencl", "auto"):
        raise ValueError(f"unknown backend {backend!r} (expected 'numpy', 'opencl' or 'auto')")
    if backend == "numpy":
        return False
    from polishplugin.core.opencl.runtime import choose_backend
    return choose_backend(backend if device is None else device)[0] == "opencl"


def _check_rotations(rotations: np.ndarray) -> np.ndarray:
    rot = np.asarray(rotations, dtype=np.float64)
    if rot.ndim == 2:
        rot = rot[None]
    if rot.ndim != 3 or rot.shape[1:] != (3, 3):
        raise ValueError(f"rotations must have shape (n, 3, 3), got {rot.shape}")
    return rot


class FourierProjector:
    """Projects a map by central slices of its grid (:func:`padded_transform`).

    Parameters
    ----------
    volume : (N, N, N) float array (any real dtype); centre voxel ``N//2``.
    pad : padding factor (RELION ``--pad``, default 2).
    r_max_px : Fourier radius (in image pixels, i.e. 1/(N*angpix) units) beyond which projections are
        zero; default ``N/2`` (Nyquist).  Compared as ``|k| <= r_max_px``.
    gridding : divide the map by ``sinc^2(r/(N*pad))`` before transforming (trilinear pre-correction,
        RELION default); ``False`` gives exact identity-rotation projections of the raw map.
    double : transform in float64 (the grid is complex64 either way).

    :meth:`from_transform` wraps an existing grid (e.g. a reconstruction's ``data / weight``).
    """

    def __init__(self, volume: np.ndarray, pad: int = 2, r_max_px: float | None = None,
                 gridding: bool = True, double: bool = False):
        grid = padded_transform(volume, pad, gridding, double)
        self._setup(grid, grid.shape[0] // int(pad), pad, r_max_px)

    @classmethod
    def from_transform(cls, fourier_grid: np.ndarray, box: int, pad: int = 2,
                       r_max_px: float | None = None) -> "FourierProjector":
        """A projector over the grid ``fourier_grid`` ``(M, M, M//2+1)`` (``M = pad * box``) as it is."""
        m = int(pad) * int(box)
        if fourier_grid.shape != (m, m, m // 2 + 1):
            raise ValueError(f"grid shape {fourier_grid.shape} is not the half transform of box {box} "
                             f"padded {pad}x {(m, m, m // 2 + 1)}")
        proj = cls.__new__(cls)
        proj._setup(fourier_grid, int(box), pad, r_max_px)
        return proj

    def _setup(self, fourier_grid: np.ndarray, box: int, pad: int, r_max_px: float | None) -> None:
        self.box = n = box
        self.pad = int(pad)
        self.padded_size = self.pad * n
        self.r_max_px = float(n / 2.0 if r_max_px is None else r_max_px)
        #: the grid: padded half-transform (m, m, m//2+1) complex64 divided by N^2, centre at the origin
        self.fourier = fourier_grid
        self._phase = _image_centre_phase(n)
        ky = fourier.fftfreq_signed(n)
        kx = fourier.fftfreq_signed(n, half=True)
        self._keep = (ky[:, None] ** 2 + kx[None, :] ** 2) <= self.r_max_px ** 2
        self._ext: tuple[_ExtendedIndex, np.ndarray] | None = None

    def sample(self, coords: np.ndarray) -> np.ndarray:
        """Trilinear values (complex128) of the grid at padded coordinates ``coords`` ``(k, 3)`` (x, y, z),
        ``|coordinate| <= r_max_px * pad``."""
        ext, table = self._extended()
        return ext.sample(table, coords)

    def project(self, rotations: np.ndarray, backend: str = "numpy", device=None) -> np.ndarray:
        """rfft ``(n, N, N//2+1)`` complex64 of the projections for ``rotations`` ``(n, 3, 3)``.

        ``backend="opencl"`` runs the kernel on ``device`` (see :mod:`polishplugin.core.opencl.runtime`).
        """
        rot = _check_rotations(rotations)
        if _use_opencl(backend, device):
            from polishplugin.core.opencl import projector_cl
            return projector_cl.project(self, rot, device=device)
        n = self.box
        out = np.zeros((len(rot), n, n // 2 + 1), dtype=np.complex64)
        keep = self._keep
        factor = self._phase[keep]
        for start in range(0, len(rot), BATCH_IMAGES):
            r = rot[start:start + BATCH_IMAGES]
            coords, _ = _slice_coords(r, n, self.pad)
            vals = self.sample(coords[:, keep].reshape(-1, 3)).reshape(len(r), -1)
            out[start:start + len(r), keep] = vals * factor
        return out

    def _extended(self):
        """Cached (:class:`_ExtendedIndex`, table of the grid on it)."""
        if self._ext is None:
            ext = _ExtendedIndex(self.padded_size, self.r_max_px * self.pad)
            self._ext = (ext, ext.table(self.fourier))
        return self._ext

    def project_real(self, rotations: np.ndarray, backend: str = "numpy", device=None) -> np.ndarray:
        """Real-space projections ``(n, N, N)`` float32 (inverse of :meth:`project`)."""
        f = self.project(rotations, backend=backend, device=device)
        n = self.box
        return fourier.irfft(f, (n, n), axes=(-2, -1)).astype(np.float32)


class FourierBackprojector:
    """Accumulates 2D Fourier slices into a padded 3D half-transform and reconstructs a map.

    As RELION's ``BackProjector``: the caller passes ``data = CTF * image / sigma2`` and
    ``weight = CTF^2 / sigma2`` (both on the image rfft grid); :meth:`reconstruct` divides them
    (plus a regulariser).  Attributes ``data`` (complex128) and ``weight`` (float64), shape
    ``(M, M, M//2+1)`` with ``M = pad * box``, are the accumulators (the grid layout of the module doc);
    :meth:`add` merges another accumulator (e.g. from another MPI rank).
    """

    def __init__(self, box: int, pad: int = 2, r_max_px: float | None = None):
        self.box = n = int(box)
        self.pad = int(pad)
        self.padded_size = m = self.pad * n
        self.r_max_px = float(n / 2.0 if r_max_px is None else r_max_px)
        self._data = np.zeros((m, m, m // 2 + 1), dtype=np.complex128)
        self._weight = np.zeros((m, m, m // 2 + 1), dtype=np.float64)
        self._cl_acc = None  # device accumulators of the OpenCL backend, added on _sync()
        self._ext: _ExtendedIndex | None = None
        self._phase_inv = np.conj(_image_centre_phase(n))
        self._hermitian = False

    def _sync(self) -> None:
        if self._cl_acc is not None:
            from polishplugin.core.opencl import projector_cl
            projector_cl.flush(self)

    @property
    def data(self) -> np.ndarray:
        """Accumulated ``sum CTF*X/sigma2`` (complex128 ``(M, M, M//2+1)``)."""
        self._sync()
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self._sync()
        self._data = value

    @property
    def weight(self) -> np.ndarray:
        """Accumulated ``sum CTF^2/sigma2`` (float64 ``(M, M, M//2+1)``)."""
        self._sync()
        return self._weight

    @weight.setter
    def weight(self, value: np.ndarray) -> None:
        self._sync()
        self._weight = value

    def insert(self, images_rfft: np.ndarray, rotations: np.ndarray, weights: np.ndarray | None = None,
               backend: str = "numpy", device=None) -> None:
        """Spread ``images_rfft`` ``(n, N, N//2+1)`` (centre ``N//2``) at ``rotations`` ``(n, 3, 3)``.

        ``weights`` ``(n, N, N//2+1)`` (or broadcastable, e.g. ``(N, N//2+1)``) real, default 1.
        """
        rot = _check_rotations(rotations)
        imgs = np.asarray(images_rfft)
        if imgs.ndim == 2:
            imgs = imgs[None]
        n = self.box
        if imgs.shape[1:] != (n, n // 2 + 1) or len(imgs) != len(rot):
            raise ValueError(f"images_rfft shape {imgs.shape} does not match {len(rot)} rotations "
                             f"and box {n}")
        if weights is None:
            w_all = np.ones((1, n, n // 2 + 1))
        else:
            w_all = np.broadcast_to(np.asarray(weights, dtype=np.float64), imgs.shape)
        if _use_opencl(backend, device):
            from polishplugin.core.opencl import projector_cl
            projector_cl.insert(self, imgs, rot, np.ascontiguousarray(np.broadcast_to(w_all, imgs.shape)),
                                device=device)
            self._hermitian = False
            return
        ky = fourier.fftfreq_signed(n)
        kx = fourier.fftfreq_signed(n, half=True)
        keep = (ky[:, None] ** 2 + kx[None, :] ** 2) <= self.r_max_px ** 2
        if self._ext is None:
            self._ext = _ExtendedIndex(self.padded_size, self.r_max_px * self.pad)
        ext = self._ext
        size = ext.dummy + 1
        d_re = np.zeros(size)
        d_im = np.zeros(size)
        w_acc = np.zeros(size)
        # bincount costs O(grid size) per call: batch enough images to make that negligible
        # (but keep the ~320 bytes per corner entry of temporaries under ~250 MB)
        entries = 8 * max(int(keep.sum()), 1)
        batch = int(np.clip(size // entries, BATCH_IMAGES, max(BATCH_IMAGES, (250 << 20) // (320 * entries))))
        for start in range(0, len(rot), batch):
            r = rot[start:start + batch]
            coords, _ = _slice_coords(r, n, self.pad)
            vals = (imgs[start:start + len(r)] * self._phase_inv)[:, keep].reshape(-1)
            w = np.broadcast_to(w_all if len(w_all) == 1 else w_all[start:start + len(r)],
                                (len(r),) + keep.shape)[:, keep].reshape(-1)
            re, im, wt = ext.bincounts(coords[:, keep].reshape(-1, 3), vals, w)
            d_re += re
            d_im += im
            w_acc += wt
        self._data += (d_re[:-1] + 1j * d_im[:-1]).reshape(self._data.shape)
        self._weight += w_acc[:-1].reshape(self._weight.shape)
        self._hermitian = False

    def add(self, other: "FourierBackprojector") -> None:
        """Add another accumulator of the same box/pad (MPI merge)."""
        if other.data.shape != self.data.shape:
            raise ValueError("cannot add back-projectors of different sizes")
        if self._hermitian != other._hermitian:
            raise ValueError("cannot add a symmetrised back-projector to an unsymmetrised one")
        self.data += other.data
        self.weight += other.weight

    def copy(self) -> "FourierBackprojector":
        new = FourierBackprojector(self.box, self.pad, self.r_max_px)
        new.data = self.data.copy()
        new.weight = self.weight.copy()
        new._hermitian = self._hermitian
        return new

    def enforce_hermitian(self) -> None:
        """Make the x = 0 (and x = M/2) planes Hermitian (:func:`hermitian_planes`).

        Idempotent (a flag records it); :meth:`insert` clears the flag.
        """
        if self._hermitian:
            return
        self._hermitian = True
        for ix, (d, w) in hermitian_planes(self.data, self.weight).items():
            self.data[:, :, ix] = d
            self.weight[:, :, ix] = w

    def symmetrize(self, symmetry_name: str) -> None:
        """Sum data and weight over the point-group operators (trilinear), as RELION's ``symmetrise``.

        Call after all insertions (and after :meth:`add`); the result is invariant under the group.
        """
        ops = geometry.symmetry_matrices(symmetry_name)
        if len(ops) == 1:
            return
        self.enforce_hermitian()
        self.data, self.weight = symmetrise_halfgrid([self.data, self.weight], ops,
                                                     self.r_max_px * self.pad + 2)
        self._hermitian = True

    def reconstruct(self, wiener_constant: float = 0.0, gridding: bool = True,
                    soft_mask_corners: bool = True) -> np.ndarray:
        """Reconstruct the ``(N, N, N)`` float32 map: ``F = data / W``.

        ``W = weight + wiener_constant``, then ``W = max(W, radial_mean(W)/1000)`` (RELION; radial mean
        over the padded shells ``ROUND(|K|/pad)`` inside ``r_max``) and ``F = 0`` where ``W == 0`` or
        outside ``r_max``.  Inverse FFT and :func:`padded_to_map` (corner soft mask, RELION QUIRK always
        applied; gridding correction).  Does not modify the accumulators.
        """
        n, m, pad = self.box, self.padded_size, self.pad
        data, weight = self.data, self.weight
        kz = fourier.fftfreq_signed(m).astype(np.float32)
        kx = fourier.fftfreq_signed(m, half=True).astype(np.float32)
        r = np.sqrt(kz[:, None, None] ** 2 + kz[None, :, None] ** 2 + kx[None, None, :] ** 2)
        shell = fourier.round_half_away(r / np.float32(pad)).astype(np.int32)
        inside = r <= self.r_max_px * pad
        del r
        w = weight.copy()
        planes = {} if self._hermitian else hermitian_planes(data, weight)  # without copying the grid
        for ix, (_, wp) in planes.items():
            w[:, :, ix] = wp
        w += wiener_constant
        n_sh = int(shell.max()) + 1
        sh_in = np.where(inside, shell, n_sh)
        rad = fourier.radial_mean(np.where(inside, w, 0.0), sh_in, n_sh)
        del sh_in
        np.maximum(w, rad[np.minimum(shell, n_sh - 1)] / 1000.0, out=w)
        del shell
        ok = inside & (w > 0)
        del inside
        safe_w = np.where(ok, w, 1.0)
        f = np.zeros(data.shape, dtype=np.complex64)
        np.divide(data, safe_w, out=f, where=ok, casting="unsafe")
        for ix, (plane, _) in planes.items():
            f[:, :, ix] = np.where(ok[:, :, ix], plane / safe_w[:, :, ix], 0.0)
        del safe_w, ok, w
        # the padded map is irfft(F) * N^2 (the grid is the transform divided by N^2)
        f *= np.float32(n ** 2)
        padded = scipy.fft.irfftn(f, s=(m, m, m), workers=-1)
        del f
        return padded_to_map(padded, n, soft_mask_corners, gridding)


def project_real_space(volume: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Slow reference: sum along z of the map rotated by ``A`` (trilinear in real space), ``(n, N, N)``.

    ``P(x, y) = sum_z V(A^T (x, y, z))`` with coordinates relative to voxel ``N//2``.
    """
    from scipy import ndimage
    vol = np.asarray(volume, dtype=np.float64)
    n = vol.shape[0]
    c = n // 2
    ax = np.arange(n, dtype=np.float64) - c
    Z, Y, X = np.meshgrid(ax, ax, ax, indexing="ij")
    p = np.stack([X.ravel(), Y.ravel(), Z.ravel()])
    out = []
    for a in _check_rotations(rotations):
        q = a.T @ p  # source coordinates (x, y, z)
        vals = ndimage.map_coordinates(vol, [q[2] + c, q[1] + c, q[0] + c], order=1, mode="constant")
        out.append(vals.reshape(n, n, n).sum(axis=0))
    return np.array(out)


def reconstruct_from_images(images: np.ndarray, rotations: np.ndarray, ctfs: np.ndarray | None = None,
                            symmetry: str = "C1", shifts_px: np.ndarray | None = None, pad: int = 2,
                            wiener_constant: float = 0.0, backend: str = "numpy") -> np.ndarray:
    """Reconstruct a map ``(N, N, N)`` float32 from real images ``(n, N, N)`` with known poses.

    ``ctfs`` ``(n, N, N//2+1)`` multiply the images' transforms (data = CTF*X, weight = CTF^2);
    ``shifts_px`` ``(n, 2)`` (x, y) are RELION origins: the offset that brings the particle to the
    centre, i.e. the image is shifted by ``+shift`` before insertion.  ``wiener_constant`` is added
    to the weights (0 = plain ratio with RELION's ``radavg/1000`` floor).
    """
    imgs = np.asarray(images, dtype=np.float64)
    n = imgs.shape[-1]
    bp = FourierBackprojector(n, pad=pad)
    rot = _check_rotations(rotations)
    for start in range(0, len(imgs), BATCH_IMAGES):
        sl = slice(start, start + BATCH_IMAGES)
        f = fourier.rfft(imgs[sl], axes=(-2, -1))
        if shifts_px is not None:
            f = fourier.shift_rfft(f, np.asarray(shifts_px, dtype=np.float64)[sl], (n, n))
        if ctfs is not None:
            c = np.asarray(ctfs[sl], dtype=np.float64)
            bp.insert(f * c, rot[sl], c * c, backend=backend)
        else:
            bp.insert(f, rot[sl], None, backend=backend)
    bp.symmetrize(symmetry)
    return bp.reconstruct(wiener_constant=wiener_constant)
