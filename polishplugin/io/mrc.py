"""MRC maps and stacks: read with clear errors, write atomically with the pixel size in the header.

Mode 2 (float32) by default, mode 12 (IEEE float16, RELION's ``--float16``) on request.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np

__all__ = ["MrcError", "read_mrc", "read_mrc_header", "write_mrc", "read_stack_images", "MrcStackWriter"]


class MrcError(ValueError):
    """An MRC file that cannot be read; the message names the file."""


def _open(path: Path, mmap: bool = False):
    if not path.exists():
        raise MrcError(f"MRC file {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if mmap:
                return mrcfile.mmap(str(path), mode="r", permissive=False)
            return mrcfile.open(str(path), mode="r", permissive=False)
    except (ValueError, OSError, EOFError, OverflowError, MemoryError) as exc:
        raise MrcError(f"MRC file {path} cannot be read ({exc}); is it truncated or not an MRC file?") from None


def read_mrc_header(path: str | os.PathLike) -> tuple[tuple[int, ...], float]:
    """Shape (numpy order) and pixel size (Å, x) of an MRC file without reading its data."""
    path = Path(path)
    with _open(path, mmap=True) as m:
        return tuple(int(s) for s in m.data.shape), float(m.voxel_size.x)


def read_mrc(path: str | os.PathLike, check_finite: bool = True) -> tuple[np.ndarray, float]:
    """Whole MRC as float32 (numpy order z, y, x) and its pixel size in Å (x of the header).

    ``check_finite`` rejects maps with NaN or Inf values, naming the file.
    """
    path = Path(path)
    with _open(path) as m:
        data = np.asarray(m.data, dtype=np.float32).copy()
        angpix = float(m.voxel_size.x)
    if check_finite and not np.all(np.isfinite(data)):
        raise MrcError(f"MRC file {path} contains NaN or Inf values")
    return data, angpix


def read_stack_images(path: str | os.PathLike, indices_1based: list[int] | np.ndarray) -> np.ndarray:
    """Images ``indices_1based`` of a stack (``N@stack.mrcs``), float32 ``(n, ny, nx)``."""
    path = Path(path)
    with _open(path, mmap=True) as m:
        data = m.data
        if data.ndim == 2:
            data = data[None]
        idx = np.asarray(indices_1based, dtype=np.int64) - 1
        if idx.size and (idx.min() < 0 or idx.max() >= data.shape[0]):
            raise MrcError(f"MRC stack {path} has {data.shape[0]} images; image {int(idx.max()) + 1} was asked for")
        return np.asarray(data[idx], dtype=np.float32)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_mrc(path: str | os.PathLike, data: np.ndarray, angpix: float, float16: bool = False) -> None:
    """Write ``data`` (2D, 3D map, or stack for ``.mrcs``) atomically with ``angpix`` in the header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    arr = np.asarray(data, dtype=np.float16 if float16 else np.float32)
    try:
        with mrcfile.new(str(tmp), overwrite=True) as m:
            m.set_data(arr)
            if path.suffix == ".mrcs" and arr.ndim == 3:
                m.set_image_stack()
            m.voxel_size = angpix
            m.update_header_stats()
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None


class MrcStackWriter:
    """Write a stack image by image (memory stays one image) and rename it into place on close."""

    def __init__(self, path: str | os.PathLike, n_images: int, box_px: int | tuple[int, int], angpix: float,
                 float16: bool = False) -> None:
        """``box_px``: the image size, or ``(height, width)`` for rectangular images (movie frames)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _tmp_name(self.path)
        dtype = np.float16 if float16 else np.float32
        height, width = box_px if isinstance(box_px, tuple) else (box_px, box_px)
        self._mrc = mrcfile.new_mmap(str(self._tmp), shape=(n_images, height, width),
                                     mrc_mode=12 if float16 else 2, overwrite=True)
        self._mrc.set_image_stack()
        self._mrc.voxel_size = angpix
        self._dtype = dtype

    def __setitem__(self, index: int, image: np.ndarray) -> None:
        self._mrc.data[index] = np.asarray(image, dtype=self._dtype)

    def close(self) -> None:
        try:
            self._mrc.update_header_stats()
            self._mrc.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self._tmp.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def __enter__(self) -> "MrcStackWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._mrc.close()
            self._tmp.unlink(missing_ok=True)
