"""Detector files of a movie: the gain reference, the defect file and the hot-pixel list.

Gain (``rlnMicrographGainName``): MRC, TIFF (``.tif``/``.tiff``) or EPU's ``.gain`` (a TIFF).
:func:`read_gain` returns the *multiplicative* gain at the movie's frame size, as RELION applies it
(``MicrographHandler::loadMovie``, ``EERRenderer::loadEERGain``; ALGORITHMS.md 1.5):

* MRC and TIFF movies: the gain is used as it is (frame pixel x gain), a TIFF gain flipped along y on
  read like TIFF movies (RELION's TIFF convention); its shape must be the frame's;
* EER movies: a ``.gain`` file is multiplicative and is *not* flipped; any other gain (MRC, TIFF) holds
  the detector's sensitivity and becomes ``mean / gain``; a gain at the detector size is repeated 2x2
  for rendering at ``rlnEERUpsampling`` 2, one at twice the detector size is summed 2x2 for upsampling 1;
* pixels of zero gain are defects.

Defects (``rlnMicrographDefectFile``): MotionCor2's text file of rectangles (``x y w h`` per line, pixels of
the movie frame, 0-based; parts outside the frame are dropped, a rectangle wholly outside is an error) or an
MRC mask (non-zero = defect) of the frame's shape.  Hot pixels: ``data_hot_pixels`` of the per-movie STAR
(:class:`polishplugin.io.movies.MovieMetadata.hot_pixels_px`).  Defects are returned as sorted flat pixel
indices (``y * width + x``): a K3 frame has 94 M pixels and a few thousand defects.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .mrc import MrcError, read_mrc, write_mrc

__all__ = ["DetectorFileError", "read_gain", "write_gain", "read_defect_file", "write_defect_file",
           "hot_pixel_indices", "defect_indices"]

_TIFF = (".tif", ".tiff")


class DetectorFileError(MrcError):
    """A gain reference, defect file or hot-pixel list that does not fit its movie; names the file."""


def _read_image(path: Path) -> np.ndarray:
    """The first image of an MRC or TIFF file as float32 (TIFF as stored: no flip here)."""
    if not path.exists():
        raise DetectorFileError(f"gain reference {path} does not exist")
    if path.suffix.lower() in _TIFF + (".gain",):
        import tifffile

        try:
            with tifffile.TiffFile(str(path)) as tif:
                data = tif.pages[0].asarray()
        except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds for damaged files
            raise DetectorFileError(f"gain reference {path} cannot be read ({exc}); is it a TIFF file?") from None
        data = np.asarray(data, np.float32)
    else:
        data, _ = read_mrc(path)
    if data.ndim == 3:
        data = data[0]
    if data.ndim != 2:
        raise DetectorFileError(f"gain reference {path} is not a 2D image (shape {data.shape})")
    if not np.all(np.isfinite(data)):
        raise DetectorFileError(f"gain reference {path} contains NaN or Inf values")
    return data


def read_gain(path: str | os.PathLike, frame_shape: tuple[int, int], movie: str | os.PathLike = "",
              eer_upsampling: int | None = None) -> np.ndarray:
    """The multiplicative gain (float32, ``frame_shape``) of a movie whose frames have ``frame_shape``
    (the rendering size for EER: pass ``eer_upsampling``); see the module docstring for the conventions.
    A gain whose shape fits neither the movie nor (EER) its detector is a :class:`DetectorFileError`."""
    path = Path(path)
    data = _read_image(path)
    is_tiff, is_epu = path.suffix.lower() in _TIFF, path.suffix.lower() == ".gain"
    h, w = (int(s) for s in frame_shape)
    if eer_upsampling is None:
        if is_tiff:
            data = data[::-1]  # RELION flips TIFF images along y on read
        if data.shape != (h, w):
            raise DetectorFileError(
                f"gain reference {path} is {data.shape[1]} x {data.shape[0]} px but the frames of movie {movie} "
                f"are {w} x {h} px" + (" (rotated or transposed?)" if data.shape == (w, h) else "")
                + "; the gain must have the movie's size")
        return np.ascontiguousarray(data, np.float32)
    up = int(eer_upsampling)
    det = (h // up, w // up)
    if is_tiff:
        data = data[::-1]
    if data.shape == (h, w):
        gain = data
    elif up == 2 and data.shape == det:
        gain = np.repeat(np.repeat(data, 2, axis=0), 2, axis=1)
    elif up == 1 and data.shape == (2 * h, 2 * w):
        gain = data.reshape(h, 2, w, 2).sum(axis=(1, 3))
    else:
        raise DetectorFileError(
            f"gain reference {path} is {data.shape[1]} x {data.shape[0]} px but EER movie {movie} is rendered at "
            f"{w} x {h} px (rlnEERUpsampling {up}, detector {det[1]} x {det[0]} px); the gain must have the "
            "detector's size or the rendering size")
    gain = np.asarray(gain, np.float32)
    if not is_epu:  # a sensitivity image: RELION uses mean / gain (zero stays zero: a defect)
        nz = gain != 0
        gain = np.where(nz, np.float32(gain.mean()) / np.where(nz, gain, 1), 0).astype(np.float32)
    return np.ascontiguousarray(gain)


def write_gain(path: str | os.PathLike, gain: np.ndarray) -> None:
    """Write a gain reference so that :func:`read_gain` gives ``gain`` back: MRC, or TIFF (stored flipped along
    y, RELION's convention) or ``.gain`` (stored as it is), float32, atomically."""
    path = Path(path)
    gain = np.asarray(gain, np.float32)
    suffix = path.suffix.lower()
    if suffix not in _TIFF + (".gain",):
        write_mrc(path, gain, 1.0)
        return
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tifffile.imwrite(str(tmp), gain[::-1] if suffix in _TIFF else gain, photometric="minisblack")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------ defects
_SERIALEM = re.compile(r"CameraSize|RotationAndFlip|K2Type|Bad")


def _rectangle_indices(x: int, y: int, w: int, h: int, shape: tuple[int, int]) -> np.ndarray:
    ys = np.arange(max(0, y), min(shape[0], y + h))
    xs = np.arange(max(0, x), min(shape[1], x + w))
    return (ys[:, None] * shape[1] + xs[None, :]).ravel()


def read_defect_file(path: str | os.PathLike, frame_shape: tuple[int, int]) -> np.ndarray:
    """Sorted flat indices of the defective pixels of a defect file (text rectangles or MRC mask)."""
    path = Path(path)
    h, w = (int(s) for s in frame_shape)
    if not path.exists():
        raise DetectorFileError(f"defect file {path} does not exist")
    if path.suffix.lower() in (".mrc", ".mrcs", ".tif", ".tiff"):
        mask = _read_image(path) if path.suffix.lower() in _TIFF else read_mrc(path)[0]
        mask = mask.reshape(mask.shape[-2:]) if mask.ndim == 3 and mask.shape[0] == 1 else mask
        if mask.shape != (h, w):
            raise DetectorFileError(f"defect map {path} is {mask.shape[-1]} x {mask.shape[-2]} px but the movie "
                                    f"frames are {w} x {h} px; it must have the movie's size")
        return np.flatnonzero(mask).astype(np.int64)
    text = path.read_text(errors="replace")
    if _SERIALEM.search(text):
        raise DetectorFileError(f"defect file {path} looks like a SerialEM defect list, not MotionCor2's "
                                "rectangles (x y w h per line); convert it to rectangles or to an MRC mask")
    parts = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            x, y, rw, rh = (int(round(float(v))) for v in fields[:4])
            if len(fields) != 4:
                raise ValueError
        except ValueError:
            raise DetectorFileError(f"defect file {path} line {lineno} is not 'x y w h' (four numbers): "
                                    f"{line.strip()!r}") from None
        if rw < 1 or rh < 1:
            raise DetectorFileError(f"defect file {path} line {lineno}: rectangle {x} {y} {rw} {rh} has no area")
        if x >= w or y >= h or x + rw <= 0 or y + rh <= 0:
            raise DetectorFileError(f"defect file {path} line {lineno}: rectangle {x} {y} {rw} {rh} lies outside "
                                    f"the {w} x {h} px movie frame (wrong file, or one for another binning?)")
        parts.append(_rectangle_indices(x, y, rw, rh, (h, w)))
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def write_defect_file(path: str | os.PathLike, rectangles: np.ndarray) -> None:
    """Write MotionCor2's defect text file: one ``x y w h`` rectangle per line, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rect = np.asarray(rectangles, np.int64).reshape(-1, 4)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text("".join(f"{x} {y} {w} {h}\n" for x, y, w, h in rect))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def hot_pixel_indices(hot_px: np.ndarray | None, frame_shape: tuple[int, int], source: str | os.PathLike = "") \
        -> np.ndarray:
    """Flat indices of the hot pixels (x, y) of a per-movie STAR (``source``); outside the frame is an error."""
    if hot_px is None or len(hot_px) == 0:
        return np.zeros(0, np.int64)
    h, w = (int(s) for s in frame_shape)
    xy = np.rint(np.asarray(hot_px, np.float64)).astype(np.int64).reshape(-1, 2)
    bad = (xy[:, 0] < 0) | (xy[:, 0] >= w) | (xy[:, 1] < 0) | (xy[:, 1] >= h)
    if bad.any():
        x, y = xy[np.argmax(bad)]
        raise DetectorFileError(f"movie metadata STAR file {source}: hot pixel ({x}, {y}) lies outside the "
                                f"{w} x {h} px movie frame")
    return np.unique(xy[:, 1] * w + xy[:, 0])


def defect_indices(frame_shape: tuple[int, int], defect_file: str | os.PathLike | None = None,
                   hot_px: np.ndarray | None = None, gain: np.ndarray | None = None,
                   source: str | os.PathLike = "") -> np.ndarray:
    """All defective pixels of a movie: the defect file's, the hot pixels and the zero-gain pixels."""
    parts = [hot_pixel_indices(hot_px, frame_shape, source)]
    if defect_file is not None:
        parts.append(read_defect_file(defect_file, frame_shape))
    if gain is not None:
        parts.append(np.flatnonzero(gain == 0))
    return np.unique(np.concatenate(parts)).astype(np.int64)
