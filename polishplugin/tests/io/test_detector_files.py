"""Detector files: EER (our encoder, imagecodecs' decoder), MRC modes 0/1/2/6/12/101, 8-bit LZW TIFF,
gain references (MRC, TIFF, EPU .gain; RELION's orientation and EER conventions), defect files and hot
pixels; the defect replacement of core.polish.detector."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from polishplugin.core.polish.detector import DetectorCorrection, fill_defects, plan_defects
from polishplugin.io.detector import (DetectorFileError, defect_indices, hot_pixel_indices, read_defect_file,
                                      read_gain, write_defect_file, write_gain)
from polishplugin.io.movies import MovieError, MovieWriter, iter_movie_frames, iter_raw_frames, open_movie


def _imagecodecs():
    return pytest.importorskip("imagecodecs", reason="imagecodecs (EER decoder, LZW) is not installed; "
                                                     "scripts/install.sh installs it")


def _random_events(rng, shape, n_raw, per_frame):
    h, w = shape
    frames, sums1, sums2 = [], np.zeros(shape, int), np.zeros((2 * h, 2 * w), int)
    for _ in range(n_raw):
        pos = np.sort(rng.choice(h * w, per_frame, replace=False))
        sym = rng.integers(0, 16, per_frame)
        frames.append((pos, sym))
    return frames, sums1, sums2


def _render(frames, shape, up, group, fraction):
    h, w = shape
    out = np.zeros((h * up, w * up), int)
    for pos, sym in frames[fraction * group:(fraction + 1) * group]:
        y, x = pos // w, pos % w
        if up == 2:
            y, x = 2 * y + ((sym >> 2) & 3) // 2, 2 * x + (sym & 3) // 2
        np.add.at(out, (y, x), 1)
    return out


# ------------------------------------------------------------------------------------------ EER
@pytest.mark.parametrize("up,group", [(1, 1), (1, 3), (2, 2)])
def test_eer_round_trip(tmp_path, up, group):
    _imagecodecs()
    from polishplugin.io.eer import write_eer

    rng = np.random.default_rng(up * 10 + group)
    shape = (30, 44)
    frames, _, _ = _random_events(rng, shape, 7, 200)
    # edge cases of the code stream: skips of exactly 127 and 254, the first and the last pixel
    frames.append((np.array([0, 128, 383, shape[0] * shape[1] - 1]), np.array([0, 5, 10, 15])))
    assert write_eer(tmp_path / "m.eer", frames, shape) == 8
    movie = open_movie(tmp_path / "m.eer", up, group)
    assert (movie.n_frames, movie.height, movie.width) == (8 // group, shape[0] * up, shape[1] * up)
    for i in range(movie.n_frames):
        np.testing.assert_array_equal(movie.frame(i), _render(frames, shape, up, group, i))
    movie.close()
    got = [f for _, f in iter_raw_frames(tmp_path / "m.eer", 0, 8 // group, up, group)]
    assert sum(g.sum() for g in got) == sum(len(p) for p, _ in frames[:(8 // group) * group])
    import tifffile  # a TIFF that tifffile opens, one page per raw frame, EER compression

    with tifffile.TiffFile(str(tmp_path / "m.eer")) as tif:
        assert len(tif.pages) == 8 and int(tif.pages[0].compression) == 65001


def test_eer_errors(tmp_path):
    _imagecodecs()
    import tifffile

    from polishplugin.io.eer import write_eer

    rng = np.random.default_rng(3)
    frames, _, _ = _random_events(rng, (20, 20), 4, 50)
    write_eer(tmp_path / "m.eer", frames, (20, 20))
    with pytest.raises(MovieError, match="fewer than one fraction of rlnEERGrouping 5"):
        open_movie(tmp_path / "m.eer", 1, 5)
    with pytest.raises(MovieError, match="rlnEERUpsampling must be 1 or 2"):
        open_movie(tmp_path / "m.eer", 3, 1)
    # damaged events: the last raw frame's stream cut short
    raw = (tmp_path / "m.eer").read_bytes()
    bad = bytearray(raw)
    tif = tifffile.TiffFile(str(tmp_path / "m.eer"))
    off, count = int(tif.pages[1].dataoffsets[0]), int(tif.pages[1].databytecounts[0])
    tif.close()
    bad[off:off + count] = b"\xff" * count  # skips of 127 only: runs past the frame
    (tmp_path / "bad.eer").write_bytes(bytes(bad))
    movie = open_movie(tmp_path / "bad.eer", 1, 1)
    with pytest.raises(MovieError, match=r"bad.eer raw frame 2 cannot be decoded"):
        movie.frame(1)
    movie.close()
    (tmp_path / "plain.eer").write_bytes(b"")
    tifffile.imwrite(str(tmp_path / "plain.eer"), np.zeros((8, 8), np.uint8))
    with pytest.raises(MovieError, match="is not an EER file"):
        open_movie(tmp_path / "plain.eer")
    (tmp_path / "cut.eer").write_bytes(raw[:6])
    with pytest.raises(MovieError, match="cut.eer cannot be read"):
        open_movie(tmp_path / "cut.eer")


# ------------------------------------------------------------------------------------------ MRC / TIFF
@pytest.mark.parametrize("dtype,mode", [(np.int8, 0), (np.int16, 1), (np.float32, 2), (np.uint16, 6),
                                        (np.float16, 12)])
def test_mrc_modes_read_frame_by_frame(tmp_path, dtype, mode):
    data = np.random.default_rng(mode).integers(0, 100, (3, 6, 8)).astype(dtype)
    with mrcfile.new(str(tmp_path / "m.mrcs")) as m:
        m.set_data(data)
        assert m.header.mode == mode
    got = [f for _, f in iter_raw_frames(tmp_path / "m.mrcs", 0, 3)]
    np.testing.assert_array_equal(np.stack(got), data.astype(np.float32))


def test_mrc_4bit_round_trip(tmp_path):
    data = np.random.default_rng(1).integers(0, 16, (4, 6, 10))
    with MovieWriter(tmp_path / "m.mrc", "mrc4", 4, (6, 10), 0.5) as w:
        for f in range(4):
            w[f] = data[f]
    movie = open_movie(tmp_path / "m.mrc")
    assert (movie.n_frames, movie.height, movie.width) == (4, 6, 10)
    np.testing.assert_array_equal(np.stack([movie.frame(i) for i in range(4)]), data)
    movie.close()
    (tmp_path / "cut.mrc").write_bytes((tmp_path / "m.mrc").read_bytes()[:1024 + 50])
    with pytest.raises(MovieError, match="4-bit MRC file is truncated"):
        open_movie(tmp_path / "cut.mrc")


def test_tiff_lzw_round_trip(tmp_path):
    _imagecodecs()
    import tifffile

    data = np.random.default_rng(2).integers(0, 200, (3, 12, 9))
    with MovieWriter(tmp_path / "m.tif", "tiff", 3, (12, 9), 1.0) as w:
        for f in range(3):
            w[f] = data[f]
    with tifffile.TiffFile(str(tmp_path / "m.tif")) as tif:  # stored 8-bit LZW, flipped along y
        assert tif.pages[0].dtype == np.uint8 and int(tif.pages[0].compression) == 5
        np.testing.assert_array_equal(tif.pages[0].asarray(), data[0][::-1])
    got = [f for _, f in iter_raw_frames(tmp_path / "m.tif", 0, 3)]
    np.testing.assert_array_equal(np.stack(got), data)


# ------------------------------------------------------------------------------------------ gain
@pytest.mark.parametrize("name", ["gain.mrc", "gain.tif", "gain.gain"])
def test_gain_round_trip_and_orientation(tmp_path, name):
    gain = np.random.default_rng(4).uniform(0.5, 1.5, (6, 8)).astype(np.float32)
    write_gain(tmp_path / name, gain)
    np.testing.assert_allclose(read_gain(tmp_path / name, (6, 8)), gain)
    if name == "gain.tif":  # stored as RELION expects it: flipped along y
        import tifffile

        np.testing.assert_allclose(tifffile.imread(str(tmp_path / name)), gain[::-1])


def test_gain_applied_and_shape_errors(tmp_path):
    data = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    with MovieWriter(tmp_path / "m.mrcs", "mrc", 2, (4, 6), 1.0) as w:
        for f in range(2):
            w[f] = data[f]
    gain = np.full((4, 6), 2.0, np.float32)
    write_gain(tmp_path / "gain.mrc", gain)
    got = [f for _, f in iter_movie_frames(tmp_path / "m.mrcs", 0, 2, tmp_path / "gain.mrc")]
    np.testing.assert_allclose(np.stack(got), -2 * data)
    write_gain(tmp_path / "wrong.mrc", np.ones((6, 4), np.float32))
    with pytest.raises(DetectorFileError, match=r"gain reference .*wrong.mrc is 4 x 6 px but the frames of "
                                                r"movie .*m.mrcs are 6 x 4 px \(rotated or transposed\?\)"):
        list(iter_movie_frames(tmp_path / "m.mrcs", 0, 2, tmp_path / "wrong.mrc"))
    with pytest.raises(DetectorFileError, match="gain reference .*absent.mrc does not exist"):
        read_gain(tmp_path / "absent.mrc", (4, 6))


def test_eer_gain_sizes_and_reciprocal(tmp_path):
    sens = np.random.default_rng(5).uniform(0.5, 1.5, (4, 6)).astype(np.float32)
    sens[1, 2] = 0
    write_gain(tmp_path / "sens.mrc", sens)
    g1 = read_gain(tmp_path / "sens.mrc", (4, 6), "m.eer", eer_upsampling=1)  # sensitivity -> mean / s
    nz = sens != 0
    np.testing.assert_allclose(g1[nz], sens.mean() / sens[nz], rtol=1e-6)
    assert g1[1, 2] == 0
    g2 = read_gain(tmp_path / "sens.mrc", (8, 12), "m.eer", eer_upsampling=2)  # detector size -> repeated
    np.testing.assert_allclose(g2, np.repeat(np.repeat(g1, 2, 0), 2, 1), rtol=1e-6)
    write_gain(tmp_path / "mult.gain", sens + 1)  # EPU .gain: multiplicative, used as it is
    np.testing.assert_allclose(read_gain(tmp_path / "mult.gain", (4, 6), "m.eer", eer_upsampling=1), sens + 1)
    big = np.ones((8, 12), np.float32)  # twice the detector, rendered at 1x: summed 2x2
    write_gain(tmp_path / "big.gain", big)
    np.testing.assert_allclose(read_gain(tmp_path / "big.gain", (4, 6), "m.eer", eer_upsampling=1), 4.0)
    write_gain(tmp_path / "odd.mrc", np.ones((5, 5), np.float32))
    with pytest.raises(DetectorFileError, match=r"odd.mrc is 5 x 5 px but EER movie m.eer is rendered at 12 x 8 px "
                                                r"\(rlnEERUpsampling 2, detector 6 x 4 px\); the gain must have the "
                                                "detector's size or the rendering size"):
        read_gain(tmp_path / "odd.mrc", (8, 12), "m.eer", eer_upsampling=2)


# ------------------------------------------------------------------------------------------ defects
def test_defect_file_round_trip_and_mask(tmp_path):
    rect = np.array([[1, 2, 3, 1], [8, 0, 4, 2]])  # the second one leaves the 10 px wide frame: clipped
    write_defect_file(tmp_path / "defects.txt", rect)
    assert (tmp_path / "defects.txt").read_text() == "1 2 3 1\n8 0 4 2\n"
    idx = read_defect_file(tmp_path / "defects.txt", (5, 10))
    mask = np.zeros((5, 10), bool)
    mask[2, 1:4] = True
    mask[0:2, 8:10] = True
    np.testing.assert_array_equal(idx, np.flatnonzero(mask))
    from polishplugin.io.mrc import write_mrc

    write_mrc(tmp_path / "defects.mrc", mask.astype(np.float32), 1.0)
    np.testing.assert_array_equal(read_defect_file(tmp_path / "defects.mrc", (5, 10)), np.flatnonzero(mask))
    hot = hot_pixel_indices(np.array([[4.0, 3.0], [0.0, 0.0]]), (5, 10))
    np.testing.assert_array_equal(hot, [0, 34])
    gain = np.ones((5, 10), np.float32)
    gain[4, 9] = 0
    all_idx = defect_indices((5, 10), tmp_path / "defects.txt", np.array([[4.0, 3.0]]), gain)
    np.testing.assert_array_equal(all_idx, np.union1d(np.flatnonzero(mask), [34, 49]))


@pytest.mark.parametrize("text,match", [
    ("20 1 2 2\n", r"line 1: rectangle 20 1 2 2 lies outside the 10 x 5 px movie frame"),
    ("1 1 2\n", r"line 1 is not 'x y w h'"),
    ("1 1 0 3\n", r"rectangle 1 1 0 3 has no area"),
    ("CameraSize 10 5\nBadColumns 3\n", "looks like a SerialEM defect list"),
])
def test_defect_file_errors(tmp_path, text, match):
    (tmp_path / "d.txt").write_text(text)
    with pytest.raises(DetectorFileError, match=r"defect file .*d.txt .*" + match if "line" in match else match):
        read_defect_file(tmp_path / "d.txt", (5, 10))


def test_defect_map_and_hot_pixel_errors(tmp_path):
    from polishplugin.io.mrc import write_mrc

    write_mrc(tmp_path / "d.mrc", np.zeros((4, 4), np.float32), 1.0)
    with pytest.raises(DetectorFileError, match=r"defect map .*d.mrc is 4 x 4 px but the movie frames are 10 x 5"):
        read_defect_file(tmp_path / "d.mrc", (5, 10))
    with pytest.raises(DetectorFileError, match=r"movie.star: hot pixel \(12, 1\) lies outside the 10 x 5 px"):
        hot_pixel_indices(np.array([[12.0, 1.0]]), (5, 10), "movie.star")


# ------------------------------------------------------------------------------------------ replacement
def test_fill_defects_uses_good_neighbours():
    rng = np.random.default_rng(0)
    frame = rng.normal(0, 1, (30, 40)).astype(np.float32)
    defects = np.array([0, 5 * 40 + 7, 5 * 40 + 8, 20 * 40 + 39])
    frame.reshape(-1)[defects] = 1e6
    plan = plan_defects(defects, frame.shape, reach=2)
    original = frame.copy()
    fill_defects(frame, plan, rng)
    for d in defects:  # each value comes from a non-defective pixel within +-2 px
        y, x = divmod(int(d), 40)
        window = original[max(0, y - 2):y + 3, max(0, x - 2):x + 3]
        assert frame[y, x] in window[window < 1e5]
    keep = np.ones(frame.size, bool)
    keep[defects] = False
    np.testing.assert_array_equal(frame.reshape(-1)[keep], original.reshape(-1)[keep])


def test_fill_defects_gaussian_where_few_neighbours_and_correction():
    frame = np.full((8, 8), 3.0, np.float32)
    mask = np.zeros((8, 8), bool)
    mask[:, 1:] = True  # only column 0 is good: at most 5 usable neighbours -> Gaussian of the good pixels
    plan = plan_defects(np.flatnonzero(mask), frame.shape)
    frame[mask] = 99.0
    fill_defects(frame, plan, np.random.default_rng(1))
    np.testing.assert_allclose(frame, 3.0)  # mean 3, std 0
    raw = np.full((4, 4), 5.0, np.float32)
    raw[1, 1] = 1000.0
    corr = DetectorCorrection(gain=np.full((4, 4), 2.0, np.float32), defects=plan_defects([5], (4, 4)), hot=500)
    out = corr.apply(raw, 0)
    np.testing.assert_allclose(out, -10.0)
    np.testing.assert_allclose(DetectorCorrection(hot=500).apply(raw, 0)[1, 1], -500.0)
