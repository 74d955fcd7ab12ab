"""Property-based fuzzing (hypothesis) of the STAR and MRC readers.

Whatever bytes a file holds, :func:`read_star` returns blocks or raises :class:`StarError`, and
:func:`read_mrc` / :func:`read_mrc_header` / :func:`read_stack_images` return data or raise
:class:`MrcError`; no other exception type may escape (it would reach the user as a traceback).
Bounded: a few hundred examples in all, no deadline, so the file runs in a few seconds.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from polishplugin.io.mrc import MrcError, read_mrc, read_mrc_header, read_stack_images, write_mrc  # noqa: E402
from polishplugin.io.star import StarError, read_star, write_star  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_STAR_WORDS = ["data_", "data_optics", "data_particles", "loop_", "_rlnImageName", "_rlnAngleRot #2",
               "_rlnVoltage", "300.0", "1", "-1.5e3", "nan", "inf", "000001@a.mrcs", "#", "# comment",
               "''", '"a b"', "\t", " ", "kk=", "_", "data_ x", "loop_ _rlnX"]

# A line with an unbalanced quote is a StarError naming the file and line
# (test_star_unbalanced_quote_is_star_error); the random-byte fuzzers keep quotes in their input.


def _no_lone_quotes(data: bytes) -> bytes:
    return data


def _good_star_text() -> str:
    import pandas as pd

    buf = tempfile.mkdtemp()
    path = os.path.join(buf, "good.star")
    write_star(path, {"optics": {"rlnVoltage": 300.0, "rlnOpticsGroup": 1},
                      "particles": pd.DataFrame({"rlnImageName": ["000001@a.mrcs", "000002@a.mrcs"],
                                                 "rlnAngleRot": [1.5, -2.25], "rlnOpticsGroup": [1, 1]})})
    with open(path) as fh:
        return fh.read()


GOOD_STAR = _good_star_text()


def _star_ok(tmp: str, data: bytes) -> None:
    path = os.path.join(tmp, "fuzz.star")
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        blocks = read_star(path)
    except StarError as exc:
        assert path in str(exc)  # the message names the file
        return
    assert len(blocks) >= 1


@FUZZ
@given(st.lists(st.sampled_from(_STAR_WORDS), max_size=30),
       st.lists(st.sampled_from([" ", "\n", "\n\n"]), min_size=30, max_size=30))
def test_star_reader_token_soup(words, seps):
    text = "".join(w + s for w, s in zip(words, seps))
    with tempfile.TemporaryDirectory() as tmp:
        _star_ok(tmp, text.encode())


@FUZZ
@given(st.binary(max_size=400))
def test_star_reader_random_bytes(data):
    with tempfile.TemporaryDirectory() as tmp:
        _star_ok(tmp, _no_lone_quotes(data))


@FUZZ
@given(st.integers(0, len(GOOD_STAR)), st.integers(0, 255), st.booleans())
def test_star_reader_truncated_or_flipped(cut, byte, flip):
    """A valid file cut anywhere, or with one byte replaced: parsed or a StarError naming the file."""
    data = bytearray(GOOD_STAR.encode())
    if flip and cut < len(data):
        data[cut] = byte
    else:
        data = data[:cut]
    with tempfile.TemporaryDirectory() as tmp:
        _star_ok(tmp, _no_lone_quotes(bytes(data)))


def test_star_reader_truncated_row_is_star_error(tmp_path):
    """Known answer: a loop row cut in the middle is reported with the file, line and column counts."""
    path = tmp_path / "cut.star"
    cut = GOOD_STAR.rstrip().rsplit(" ", 2)[0] + "\n"  # drop the last value(s) of the last row
    path.write_text(cut)
    with pytest.raises(StarError, match=r"cut\.star, line \d+: block data_particles has 3 columns"):
        read_star(path)


def test_star_unbalanced_quote_is_star_error(tmp_path):
    path = tmp_path / "quote.star"
    path.write_text('data_particles\nloop_\n_rlnImageName\n_rlnMicrographName\n1@a.mrcs "mic 1.mrc\n')
    with pytest.raises(StarError, match="quote.star"):
        read_star(path)


def _good_mrc_bytes(shape=(4, 6, 5), stack=False) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.mrcs" if stack else "m.mrc")
        write_mrc(path, np.arange(np.prod(shape), dtype=np.float32).reshape(shape), 1.5)
        with open(path, "rb") as fh:
            return fh.read()


GOOD_MRC = _good_mrc_bytes()
GOOD_STACK = _good_mrc_bytes((3, 4, 4), stack=True)


def _known_mrc_bug(exc: BaseException) -> bool:
    """KNOWN BUG (convert/mrc.py, not ours to edit): a header whose sizes give a negative data length
    makes ``mrcfile.mmap`` raise a bare OverflowError that ``_open`` does not turn into an MrcError
    (read_mrc_header, read_stack_images).  Known answer: test_mrc_negative_size_is_mrc_error;
    tolerated here only with that exact message so the fuzzer keeps looking for other escapes."""
    return False  # fixed: _open turns it into an MrcError (kept as a hook for future known bugs)


def _mrc_ok(tmp: str, data: bytes, stack: bool = False) -> None:
    path = os.path.join(tmp, "fuzz.mrcs" if stack else "fuzz.mrc")
    with open(path, "wb") as fh:
        fh.write(data)
    for call in (lambda: read_mrc_header(path), lambda: read_mrc(path),
                 lambda: read_stack_images(path, [1, 2])):
        try:
            call()
        except MrcError as exc:
            assert path in str(exc)
        except OverflowError as exc:
            if not _known_mrc_bug(exc):
                raise


@FUZZ
@given(st.binary(max_size=1200))
def test_mrc_reader_random_bytes(data):
    with tempfile.TemporaryDirectory() as tmp:
        _mrc_ok(tmp, data)


@FUZZ
@given(st.sampled_from([GOOD_MRC, GOOD_STACK]), st.integers(0, 1400), st.integers(0, 255), st.booleans())
def test_mrc_reader_truncated_or_flipped(good, pos, byte, flip):
    """Cut anywhere or one byte replaced (header fields: mode, dims, nsymbt, map, machst...)."""
    data = bytearray(good)
    pos = min(pos, len(data))
    if flip and pos < len(data):
        data[pos] = byte
    else:
        data = data[:pos]
    with tempfile.TemporaryDirectory() as tmp:
        _mrc_ok(tmp, bytes(data), stack=good is GOOD_STACK)


@FUZZ
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 3))
def test_mrc_reader_header_words(lo, hi, word):
    """Header words nx/ny/nz/mode set to arbitrary little-endian values (huge, zero, negative)."""
    data = bytearray(GOOD_MRC)
    data[4 * word: 4 * word + 4] = bytes([lo, hi, hi, hi])
    with tempfile.TemporaryDirectory() as tmp:
        _mrc_ok(tmp, bytes(data))


def test_mrc_negative_size_is_mrc_error(tmp_path):
    data = bytearray(GOOD_MRC)
    data[0:4] = bytes([0, 0, 0, 128])  # nx = -2**31
    path = tmp_path / "neg.mrc"
    path.write_bytes(bytes(data))
    with pytest.raises(MrcError, match="neg.mrc"):
        read_mrc_header(path)


def test_mrc_truncated_known_answer(tmp_path):
    path = tmp_path / "cut.mrc"
    path.write_bytes(GOOD_MRC[:-7])
    with pytest.raises(MrcError, match="cut.mrc cannot be read"):
        read_mrc(path)


def test_mrc_nan_known_answer(tmp_path):
    path = tmp_path / "nan.mrc"
    write_mrc(path, np.array([[[0.0, np.nan]]], np.float32), 1.0)
    with pytest.raises(MrcError, match="nan.mrc contains NaN or Inf"):
        read_mrc(path)


# ------------------------------------------------------------------ typed STAR readers built on read_star
def _mutate(text: str, words: list[str], cut: int, where: int, word: int) -> bytes:
    """Replace the token at ``where`` by ``words[word]`` and cut the text at ``cut``."""
    toks = text.split(" ")
    toks[where % len(toks)] = words[word % len(words)]
    return _no_lone_quotes(" ".join(toks)[:cut].encode())


_ODD = ["", "nan", "inf", "-1", "0", "abc", "1e400", "\n", "data_x", "loop_", "_rlnVoltage", "2", "7"]


def _typed_ok(tmp: str, data: bytes, reader) -> None:
    path = os.path.join(tmp, "typed.star")
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        reader(path)
    except StarError as exc:
        assert path in str(exc)


def _movie_star_text() -> str:
    return ("data_general\n_rlnImageSizeX 100\n_rlnImageSizeY 80\n_rlnImageSizeZ 4\n"
            "_rlnMicrographMovieName Movies/m.mrcs\n_rlnMicrographBinning 1.0\n"
            "_rlnMicrographOriginalPixelSize 1.0\n_rlnMicrographDoseRate 1.0\n_rlnMicrographPreExposure 0.0\n"
            "_rlnVoltage 300\n_rlnMicrographStartFrame 1\n_rlnMotionModelVersion 0\n\n"
            "data_global_shift\nloop_\n_rlnMicrographFrameNumber #1\n_rlnMicrographShiftX #2\n"
            "_rlnMicrographShiftY #3\n1 0.0 0.0\n2 0.5 -0.5\n3 1.0 -1.0\n4 1.5 -1.5\n")


def _particles_star_text() -> str:
    return ("# version 30001\n\ndata_optics\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
            "_rlnMicrographOriginalPixelSize #3\n_rlnVoltage #4\n_rlnSphericalAberration #5\n"
            "_rlnAmplitudeContrast #6\n_rlnImagePixelSize #7\n_rlnImageSize #8\n_rlnImageDimensionality #9\n"
            "opticsGroup1 1 1.0 300 2.7 0.1 1.0 32 2\n\ndata_particles\nloop_\n_rlnImageName #1\n"
            "_rlnMicrographName #2\n_rlnOpticsGroup #3\n_rlnDefocusU #4\n_rlnDefocusV #5\n_rlnDefocusAngle #6\n"
            "_rlnAngleRot #7\n_rlnAngleTilt #8\n_rlnAnglePsi #9\n_rlnOriginXAngst #10\n_rlnOriginYAngst #11\n"
            "1@s.mrcs m.mrc 1 10000 9000 30 1 2 3 0.5 -0.5\n2@s.mrcs m.mrc 1 11000 9500 31 4 5 6 0 0\n")


def _mtf_star_text() -> str:
    return "data_mtf\nloop_\n_rlnResolutionInversePixel #1\n_rlnMtfValue #2\n0.0 1.0\n0.1 0.8\n0.3 0.5\n0.5 0.3\n"


@pytest.mark.parametrize("kind", [
    "particles",
    "mtf",
    "movie",
])
def test_typed_star_readers_fuzz(kind):
    """read_particles / read_mtf / read_movie_metadata on mutated valid files: data or a StarError."""
    from polishplugin.io.movies import read_movie_metadata
    from polishplugin.io.mtf import read_mtf
    from polishplugin.io.particles import read_particles

    reader, text = {"particles": (read_particles, _particles_star_text()), "mtf": (read_mtf, _mtf_star_text()),
                    "movie": (read_movie_metadata, _movie_star_text())}[kind]
    with tempfile.TemporaryDirectory() as tmp:  # the unmutated file reads
        path = os.path.join(tmp, "good.star")
        with open(path, "w") as fh:
            fh.write(text)
        reader(path)

    @FUZZ
    @given(st.integers(0, len(text)), st.integers(0, 10_000), st.integers(0, 100))
    def check(cut, where, word):
        with tempfile.TemporaryDirectory() as tmp:
            _typed_ok(tmp, _mutate(text, _ODD, cut, where, word), reader)

    check()
