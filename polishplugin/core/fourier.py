"""Fourier conventions shared by every step (RELION ``src/fftw.h``).

One place for the conventions, so that every module agrees:

* Forward real-to-complex transforms are divided by the number of real voxels; inverse transforms
  are unnormalised (``F = rfftn(x) / x.size``; ``x = irfftn(F * x.size)``).  The result of
  :func:`rfft` is therefore RELION's ``FourierTransformer`` output.
* Half-complex layout ("rfft" arrays): the last axis (x) has ``N//2 + 1`` entries, the other axes
  are full length in numpy's order.  Logical frequency of index ``k`` on a full axis is
  ``k if k < N//2 + 1 else k - N``: the Nyquist row/plane is taken **positive** (``+N/2``).
* Shell index of a coefficient: ``ROUND(|k|)``, rounding half away from zero; ``N//2 + 1`` shells.
* Resolution of shell ``i``: ``N * angpix / i`` Å (shell 0 -> 999 by RELION's convention).
* A shift by ``s`` pixels (content moves by ``+s``) multiplies by ``exp(-2 pi i k.s / N)``.
* The image centre is pixel ``N // 2`` for even and odd ``N`` (origin top-left).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "rfft", "irfft", "fftfreq_signed", "frequency_grid", "radius_grid", "shell_index",
    "round_half_away", "n_shells", "shell_resolution_a", "shift_rfft", "centre_shift_phase",
    "radial_sum", "radial_mean", "rfft_weights",
]


def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """RELION's ``ROUND``: round half away from zero, returned as integers."""
    x = np.asarray(x)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def rfft(x: np.ndarray, axes: tuple[int, ...] | None = None) -> np.ndarray:
    """Forward r2c transform divided by the number of transformed voxels (RELION convention).

    ``axes`` defaults to all axes; pass e.g. ``(-2, -1)`` for a stack of images ``(..., ny, nx)``.
    """
    x = np.asarray(x)
    if axes is None:
        axes = tuple(range(x.ndim))
    n_voxels = int(np.prod([x.shape[a] for a in axes]))
    return np.fft.rfftn(x, axes=axes) / n_voxels


def irfft(f: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...] | None = None) -> np.ndarray:
    """Inverse of :func:`rfft`: unnormalised c2r transform to real ``shape`` (sizes of ``axes``)."""
    f = np.asarray(f)
    if axes is None:
        axes = tuple(range(f.ndim))
    n_voxels = int(np.prod(shape))
    return np.fft.irfftn(f * n_voxels, s=shape, axes=axes)


def fftfreq_signed(n: int, half: bool = False) -> np.ndarray:
    """Logical integer frequencies of an axis of length ``n`` with positive Nyquist.

    ``half=True`` gives the ``n//2 + 1`` entries of the rfft (last) axis.
    """
    if half:
        return np.arange(n // 2 + 1)
    k = np.arange(n)
    return np.where(k < n // 2 + 1, k, k - n)


def frequency_grid(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Broadcastable integer frequency arrays of an rfft of real ``shape`` (axis order as numpy).

    Returns one array per axis; the last is the half axis.  For a 3D map ``(nz, ny, nx)`` this is
    ``[kz, ky, kx]`` with shapes ``(nz,1,1)``, ``(1,ny,1)``, ``(1,1,nx//2+1)``.
    """
    ndim = len(shape)
    grids = []
    for axis, n in enumerate(shape):
        k = fftfreq_signed(n, half=(axis == ndim - 1))
        view = [1] * ndim
        view[axis] = k.size
        grids.append(k.reshape(view))
    return grids


def radius_grid(shape: tuple[int, ...]) -> np.ndarray:
    """|k| in pixels of every coefficient of an rfft of real ``shape`` (cube/square assumed)."""
    r2 = sum(k.astype(np.float64) ** 2 for k in frequency_grid(shape))
    return np.sqrt(r2)


def shell_index(shape: tuple[int, ...]) -> np.ndarray:
    """``ROUND(|k|)`` of every rfft coefficient (RELION shell index)."""
    return round_half_away(radius_grid(shape))


def n_shells(box_px: int) -> int:
    """Number of shells of a box: ``N//2 + 1`` (RELION)."""
    return box_px // 2 + 1


def shell_resolution_a(box_px: int, angpix: float, n: int | None = None) -> np.ndarray:
    """Resolution in Å of shells ``0..n-1`` (default ``N//2 + 1`` shells); shell 0 is 999 Å."""
    n = n_shells(box_px) if n is None else n
    idx = np.arange(n, dtype=np.float64)
    with np.errstate(divide="ignore"):
        res = box_px * angpix / idx
    res[0] = 999.0
    return res


def radial_sum(values: np.ndarray, shells: np.ndarray, n: int) -> np.ndarray:
    """Sum of ``values`` per shell index for shells ``0..n-1`` (shells >= n ignored)."""
    sel = shells < n
    if np.iscomplexobj(values):
        re = np.bincount(shells[sel], weights=values.real[sel], minlength=n)[:n]
        im = np.bincount(shells[sel], weights=values.imag[sel], minlength=n)[:n]
        return re + 1j * im
    return np.bincount(shells[sel], weights=np.asarray(values, np.float64)[sel], minlength=n)[:n]


def radial_mean(values: np.ndarray, shells: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``values`` per shell (0 where a shell is empty)."""
    total = radial_sum(values, shells, n)
    count = np.bincount(shells[shells < n], minlength=n)[:n]
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def shift_rfft(f: np.ndarray, shift_px: np.ndarray | tuple[float, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Shift the content of the real image/map behind ``f`` by ``shift_px`` (xy[z] order, pixels).

    ``f`` is an rfft of real ``shape`` (possibly with leading batch axes; ``shift_px`` then has a
    matching leading shape ``(..., ndim)``).  Multiplies by ``exp(-2 pi i k.s/N)`` (RELION
    ``shiftImageInFourierTransform``): content moves by ``+s``.
    """
    return f * centre_shift_phase(shape, shift_px)


def centre_shift_phase(shape: tuple[int, ...], shift_px: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Phase factor ``exp(-2 pi i k.s/N)`` on the rfft grid of ``shape``; ``s`` in xy[z] order.

    ``shift_px`` may carry leading batch axes ``(..., ndim)``; the result is ``(..., *rfft_shape)``.
    """
    ndim = len(shape)
    shift = np.asarray(shift_px, dtype=np.float64)
    batch = shift.shape[:-1]
    grids = frequency_grid(shape)  # numpy axis order: ..., y, x
    phase: np.ndarray | float = 0.0
    for axis in range(ndim):
        # numpy axis `axis` corresponds to coordinate index ndim-1-axis in xy[z] order
        s = shift[..., ndim - 1 - axis].reshape(batch + (1,) * ndim)
        phase = phase + grids[axis] * s / shape[axis]
    return np.exp(-2j * np.pi * phase)


def rfft_weights(shape: tuple[int, ...]) -> np.ndarray:
    """Multiplicity of each stored rfft coefficient in the full transform (1 or 2).

    Coefficients with x = 0 or x = Nyquist (even N) appear once; the others stand for themselves
    and their Hermitian mate.
    """
    nx = shape[-1]
    w = np.full(nx // 2 + 1, 2.0)
    w[0] = 1.0
    if nx % 2 == 0:
        w[-1] = 1.0
    return w
