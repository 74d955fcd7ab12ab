"""EER movies (Thermo Fisher Falcon 4/4i): one TIFF page per raw frame of run-length-coded electron events.

Reader: :class:`EerMovie` decodes each page with ``imagecodecs.eer_decode`` (a maintained decoder) and
renders it as RELION's ``EERRenderer`` does: at the detector size (``rlnEERUpsampling`` 1) or twice it
(2: the most significant sub-pixel bit of each event picks the half pixel), summing
``rlnEERGrouping`` raw frames into one fraction; ``n_raw // grouping`` fractions (RELION drops the rest).
EER frames are not flipped (unlike TIFF movies).  Only one fraction is in memory at a time (uint16).

Writer: :func:`write_eer`, our own encoder (the simulator writes EER with it), compression 65001
(7-bit skip + 2+2 sub-pixel bits per event, RELION's "EER 7 bit"), read back through the decoder.

Code stream (EER documentation, section 4; the layout ``imagecodecs`` and RELION decode): bits are
read least-significant first; each code is a ``skip`` of ``R`` bits (pixels without an event); a skip
of ``2**R - 1`` means "skip that many and read another skip", any other skip is followed by an event
at the next pixel with ``H`` horizontal and ``V`` vertical sub-pixel bits, each stored XOR 2.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = ["EerError", "EerMovie", "EER_COMPRESSIONS", "write_eer", "encode_eer_frame", "eer_available"]

#: TIFF compression codes of EER: 65000 = 8-bit skips, 65001 = 7-bit skips (both 2+2 sub-pixel bits),
#: 65002 = bit depths in tags 65007 (skip), 65008 (horizontal), 65009 (vertical sub-pixel bits)
EER_COMPRESSIONS: dict[int, tuple[int, int, int] | None] = {65000: (8, 2, 2), 65001: (7, 2, 2), 65002: None}
_TAG_SKIP_BITS, _TAG_HORZ_BITS, _TAG_VERT_BITS = 65007, 65008, 65009
_TAG_ACQUISITION_METADATA = 65001


class EerError(ValueError):
    """An EER movie that cannot be decoded, or EER settings that cannot be used; names the file."""


def eer_available() -> bool:
    """True when ``imagecodecs`` (the EER decoder) can be imported."""
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(getattr(imagecodecs, "EER", None) and imagecodecs.EER.available)


class EerMovie:
    """An EER file rendered as fractions: ``n_frames``, ``height``, ``width`` (the rendering size),
    ``detector_shape``, ``frame(i)`` (uint16 counts of fraction ``i``) and ``close()``."""

    def __init__(self, path: str | os.PathLike, upsampling: int = 1, grouping: int = 1):
        self.path = Path(path)
        if upsampling not in (1, 2):
            raise EerError(f"EER movie {self.path}: rlnEERUpsampling must be 1 or 2, got {upsampling}")
        if grouping < 1:
            raise EerError(f"EER movie {self.path}: rlnEERGrouping must be >= 1, got {grouping}")
        try:
            import imagecodecs
        except ImportError as exc:
            raise EerError(f"EER movie {self.path} needs the imagecodecs package to be decoded ({exc}); "
                           "install it with scripts/install.sh") from None
        import tifffile

        self._decode = imagecodecs.eer_decode
        self.upsampling, self.grouping = int(upsampling), int(grouping)
        try:
            self._tif = tifffile.TiffFile(str(self.path))
            page = self._tif.pages[0]
            self.detector_shape = tuple(int(s) for s in page.shape[-2:])
            self.n_raw = len(self._tif.pages)
            code = int(page.compression)
        except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds for damaged files
            raise EerError(f"EER movie {self.path} cannot be read ({exc}); is it truncated or not an EER file?") \
                from None
        if code not in EER_COMPRESSIONS:
            self._tif.close()
            raise EerError(f"EER movie {self.path} is not an EER file (TIFF compression {code}; EER uses "
                           f"{', '.join(map(str, EER_COMPRESSIONS))})")
        bits = EER_COMPRESSIONS[code]
        if bits is None:
            tags = getattr(page, "tags")  # noqa: B009 - the first page is a TiffPage (a TiffFrame has no tags)
            skip, horz, vert = (int(tags.valueof(t, d)) for t, d in ((_TAG_SKIP_BITS, 7), (_TAG_HORZ_BITS, 2),
                                                                       (_TAG_VERT_BITS, 2)))
            bits = (skip, horz, vert)
        self._bits: tuple[int, int, int] = bits
        self.n_frames = self.n_raw // self.grouping
        if self.n_frames < 1:
            self._tif.close()
            raise EerError(f"EER movie {self.path} has {self.n_raw} raw frames, fewer than one fraction of "
                           f"rlnEERGrouping {self.grouping}")
        self.height = self.detector_shape[0] * self.upsampling
        self.width = self.detector_shape[1] * self.upsampling

    def _strips(self, raw: int) -> list[tuple[bytes, int]]:
        page = self._tif.pages[raw]
        rows = int(getattr(page, "rowsperstrip", 0) or self.detector_shape[0])
        fh = self._tif.filehandle
        out = []
        for off, count in zip(page.dataoffsets, page.databytecounts):
            fh.seek(int(off))
            out.append((fh.read(int(count)), rows))
        return out

    def frame(self, i: int) -> np.ndarray:
        """Fraction ``i`` (0-based): the sum of raw frames ``i*grouping .. (i+1)*grouping-1``, rendered."""
        if not 0 <= i < self.n_frames:
            raise EerError(f"EER movie {self.path} has {self.n_frames} fractions; fraction {i + 1} was asked for")
        up = self.upsampling
        out = np.zeros((self.height, self.width), np.uint16)
        for raw in range(i * self.grouping, (i + 1) * self.grouping):
            try:
                y = 0
                for data, rows in self._strips(raw):
                    rows = min(rows, self.detector_shape[0] - y)
                    band = out[y * up:(y + rows) * up]
                    self._decode(data, (band.shape[0], band.shape[1]), *self._bits, superres=up - 1, out=band)
                    y += rows
            except Exception as exc:  # noqa: BLE001 - imagecodecs/tifffile errors of damaged data
                raise EerError(f"EER movie {self.path} raw frame {raw + 1} cannot be decoded ({exc}); is the file "
                               "truncated or damaged?") from None
        return out

    def close(self) -> None:
        self._tif.close()


# ------------------------------------------------------------------------------------------ writer
def encode_eer_frame(positions: np.ndarray, symbols: np.ndarray, n_pixels: int, skip_bits: int = 7) -> bytes:
    """One raw frame as an EER code stream (2+2 sub-pixel bits).

    ``positions``: flat detector-pixel indices of the events, strictly increasing (one event per pixel and
    raw frame, as a counting detector records them); ``symbols``: each event's sub-pixel position,
    ``horizontal | vertical << 2`` (0..3 each, in rendering order: the decoder's x = 4 * px + horizontal).
    """
    pos = np.asarray(positions, np.int64).ravel()
    sym = np.asarray(symbols, np.int64).ravel() & 15
    if pos.size and (pos[0] < 0 or pos[-1] >= n_pixels or np.any(np.diff(pos) < 1)):
        raise ValueError("EER events must be at distinct, increasing pixel indices inside the frame")
    big = (1 << skip_bits) - 1
    skips = np.diff(pos, prepend=-1) - 1                     # pixels without an event before each event
    tail = n_pixels - (int(pos[-1]) + 1 if pos.size else 0)  # pixels after the last event
    n_big = np.append(skips // big, tail // big)
    last = np.append((skips % big) | ((sym ^ 0b1010) << skip_bits), tail % big)
    last_bits = np.append(np.full(pos.size, skip_bits + 4), skip_bits)
    # every event (and the tail) is n_big "skip 2^R-1" codes followed by its own code
    per = n_big + 1
    values = np.full(int(per.sum()), big, np.int64)
    nbits = np.full(values.size, skip_bits, np.int64)
    ends = np.cumsum(per) - 1
    values[ends] = last
    nbits[ends] = last_bits
    bit_index = np.arange(int(nbits.max()))
    bits = ((values[:, None] >> bit_index[None, :]) & 1).astype(np.uint8)
    stream = bits[bit_index[None, :] < nbits[:, None]]        # row-major: each code's bits in order
    data = np.packbits(stream, bitorder="little").tobytes()
    data += b"\0" * (4 - len(data) % 2)                       # room after the last code; even length
    return data


def _ifd(entries: list[tuple[int, int, int, bytes]], data_offset: int) -> tuple[bytes, bytes]:
    """A classic little-endian IFD (entries: tag, type, count, value bytes) and the out-of-line values
    that follow it (placed at ``data_offset + len(ifd)``)."""
    entries = sorted(entries)
    ifd_len = 2 + 12 * len(entries) + 4
    extra = b""
    body = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if len(value) <= 4:
            body += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")
        else:
            body += struct.pack("<HHII", tag, typ, count, data_offset + ifd_len + len(extra))
            extra += value + b"\0" * (len(value) % 2)
    return body + struct.pack("<I", 0), extra  # next-IFD offset: 0 until a next page links itself


def write_eer(path: str | os.PathLike, raw_frames: Iterable[tuple[np.ndarray, np.ndarray]],
              detector_shape: tuple[int, int], metadata_xml: str = "") -> int:
    """Write an EER movie (compression 65001, one strip per raw frame), atomically; returns the number of raw
    frames.  ``raw_frames`` yields ``(positions, symbols)`` per raw frame (see :func:`encode_eer_frame`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    h, w = int(detector_shape[0]), int(detector_shape[1])
    short = lambda v: struct.pack("<H", v)  # noqa: E731
    long_ = lambda v: struct.pack("<I", v)  # noqa: E731
    xml = (metadata_xml or "<metadata><item key=\"sensorPixelSize.width\">0</item></metadata>").encode()
    n = 0
    try:
        with open(tmp, "wb") as fh:
            fh.write(b"II*\0" + long_(0))
            link = 4  # where the offset of the next IFD goes
            for positions, symbols in raw_frames:
                strip = encode_eer_frame(positions, symbols, h * w)
                strip_at = fh.tell()
                fh.write(strip + b"\0" * (len(strip) % 2))
                ifd_at = fh.tell()
                entries = [(256, 4, 1, long_(w)), (257, 4, 1, long_(h)), (258, 3, 1, short(1)),
                           (259, 3, 1, short(65001)), (262, 3, 1, short(1)), (273, 4, 1, long_(strip_at)),
                           (277, 3, 1, short(1)), (278, 4, 1, long_(h)), (279, 4, 1, long_(len(strip)))]
                if n == 0:
                    entries.append((_TAG_ACQUISITION_METADATA, 7, len(xml), xml))
                body, extra = _ifd(entries, ifd_at)
                fh.write(body + extra)
                end = fh.tell()
                fh.seek(link)
                fh.write(long_(ifd_at))
                link = ifd_at + len(body) - 4
                fh.seek(end)
                n += 1
        if n == 0:
            raise ValueError(f"EER movie {path}: no raw frames to write")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
