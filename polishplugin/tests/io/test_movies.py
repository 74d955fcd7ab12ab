"""Per-movie motion STAR, corrected_micrographs.star, movie frames and the initial-shift model."""

import re

import numpy as np
import pytest

from polishplugin.core.motion.initial_tracks import initial_tracks
from polishplugin.io.movies import (N_LOCAL_COEFFS, MovieMetadata, micrograph_key,
                                         read_corrected_micrographs, read_movie_metadata,
                                         write_corrected_micrographs, write_movie_metadata)
from polishplugin.io.star import StarError


def test_tutorial_movie_metadata(tutorial_data):
    meta = read_movie_metadata(tutorial_data / "relion-tutorial/movie_frameImage.star")
    assert (meta.width_px, meta.height_px, meta.n_frames) == (3710, 3838, 24)
    assert meta.movie_name == "Movies/20170629_00030_frameImage.tiff"
    assert meta.global_shifts_px.shape == (24, 2)
    np.testing.assert_allclose(meta.global_shifts_px[1], [0.712807, 0.261125])
    np.testing.assert_allclose(meta.global_shifts_px[23], [9.895187, -8.39650])
    assert meta.local_coeffs.shape == (N_LOCAL_COEFFS,)
    assert meta.local_coeffs[0] == pytest.approx(0.026351)
    assert meta.local_coeffs[2] == pytest.approx(-2.10439e-04)
    assert meta.local_coeffs[35] == pytest.approx(-0.00116)
    assert meta.hot_pixels_px.shape == (219, 2)
    np.testing.assert_allclose(meta.hot_pixels_px[0], [465.0, 120.0])
    assert meta.original_pixel_size_a == pytest.approx(0.885)
    assert meta.dose_per_frame_e_per_a2 == pytest.approx(1.277)
    assert (meta.voltage_kv, meta.start_frame, meta.motion_model_version) == (200.0, 1, 1)


def test_tutorial_initial_shift_known_answer(tutorial_data):
    """The motion model of the tutorial movie, evaluated by the polishing initial tracks (RELION
    ``ThirdOrderPolynomialModel::getShiftAt``): ``initial_tracks = -shift`` when particle px = movie px."""
    meta = read_movie_metadata(tutorial_data / "relion-tutorial/movie_frameImage.star")
    c = meta.local_coeffs
    apix, (w, h) = meta.original_pixel_size_a, (meta.width_px, meta.height_px)

    def initial_shift(frame, u, v):
        coords = np.stack([(np.atleast_1d(u) + 0.5) * w, (np.atleast_1d(v) + 0.5) * h], -1)
        t = initial_tracks(coords, apix, apix, frame - 1, 1, meta.global_shifts_px, apix, meta.start_frame, c,
                           (w, h))
        return -t[:, 0, 0], -t[:, 0, 1]

    # frame 1: z = 0 -> the polynomial vanishes; the global shift of frame 1 is 0
    np.testing.assert_allclose(initial_shift(1, 0.3, -0.2), ([0.0], [0.0]), atol=1e-12)
    # centre (u = v = 0), frame 24: z = 23, only the constant basis term (coefficients 0..2, 18..20)
    z = 23.0
    (sx,), (sy,) = initial_shift(24, 0.0, 0.0)
    assert sx == pytest.approx(9.895187 + c[0] * z + c[1] * z**2 + c[2] * z**3)
    assert sx == pytest.approx(11.534874687, abs=1e-6)  # by hand from the file's numbers
    assert sy == pytest.approx(-8.39650 + c[18] * z + c[19] * z**2 + c[20] * z**3)
    # u only: basis u (coefficients 3..5) and u^2 (6..8)
    u = 0.25
    (sx_u,), _ = initial_shift(24, u, 0.0)
    poly = lambda j: c[3 * j] * z + c[3 * j + 1] * z**2 + c[3 * j + 2] * z**3  # noqa: E731
    assert sx_u - sx == pytest.approx(poly(1) * u + poly(2) * u * u)
    # v and uv terms (basis 3: v, 4: v^2, 5: uv)
    v = -0.4
    (sx_uv,), _ = initial_shift(24, u, v)
    assert sx_uv - sx_u == pytest.approx(poly(3) * v + poly(4) * v * v + poly(5) * u * v)
    # arrays of positions
    xs, ys = initial_shift(24, np.array([0.0, u]), np.array([0.0, 0.0]))
    np.testing.assert_allclose(xs, [sx, sx_u])


def test_tutorial_corrected_micrographs(tutorial_data):
    star = tutorial_data / "relion-tutorial/corrected_micrographs.star"
    table = read_corrected_micrographs(star, project_dir="/project")
    assert len(table) == 24
    assert table.pixel_size_a() == pytest.approx(0.885)
    assert str(table.metadata_path(0)) == "/project/MotionCorr/job002/Movies/20170629_00021_frameImage.star"
    assert table.row_of("MotionCorr/job002/Movies/20170629_00022_frameImage.mrc") == 1
    assert table.row_of("Other/job099/Movies/20170629_00023_frameImage.mrc") == 2  # job prefix ignored
    with pytest.raises(StarError, match="no micrograph"):
        table.row_of("Movies/unknown.mrc")


def test_micrograph_key():
    assert micrograph_key("MotionCorr/job002/Movies/a.mrc") == "Movies/a.mrc"
    assert micrograph_key("Movies/a.mrc") == "Movies/a.mrc"


def test_movie_metadata_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    meta = MovieMetadata(width_px=4096, height_px=4096, n_frames=5,
                         movie_name="Movies/a very long movie name with spaces_000001.tiff",
                         global_shifts_px=rng.normal(size=(5, 2)), gain_name="gain.mrc",
                         binning=2.0, original_pixel_size_a=0.5, dose_per_frame_e_per_a2=0.8,
                         pre_exposure_e_per_a2=1.5, voltage_kv=300.0, start_frame=2,
                         motion_model_version=1, local_coeffs=rng.normal(size=36) * 1e-4,
                         hot_pixels_px=np.array([[1.0, 2.0]]), extra_general={"rlnEERUpsampling": 2})
    out = tmp_path / "movie.star"
    write_movie_metadata(out, meta)
    again = read_movie_metadata(out)
    for name in ("width_px", "height_px", "n_frames", "movie_name", "gain_name", "binning",
                 "original_pixel_size_a", "dose_per_frame_e_per_a2", "pre_exposure_e_per_a2",
                 "voltage_kv", "start_frame", "motion_model_version", "extra_general"):
        expected, got = getattr(meta, name), getattr(again, name)
        if isinstance(expected, float):
            assert got == pytest.approx(expected), name
        else:
            assert got == expected, name
    np.testing.assert_allclose(again.global_shifts_px, meta.global_shifts_px, atol=1e-5)
    np.testing.assert_allclose(again.local_coeffs, meta.local_coeffs, rtol=1e-5)
    np.testing.assert_allclose(again.hot_pixels_px, meta.hot_pixels_px)
    assert again.defect_file is None


def test_corrected_micrographs_round_trip(tiny, tmp_path):
    table = read_corrected_micrographs(tiny["micrographs_star"])
    assert len(table) == 3
    assert table.metadata_path(0) == tiny["root"] / "MotionCorr/job002/Movies/mic_001.star"
    out = tmp_path / "mics.star"
    write_corrected_micrographs(out, table)
    again = read_corrected_micrographs(out, project_dir=tiny["root"])
    assert again.names() == table.names()
    assert read_movie_metadata(again.metadata_path(2)).n_frames == 4


def test_bad_movie_files(tmp_path):
    bad = tmp_path / "nogeneral.star"
    bad.write_text("data_global_shift\nloop_\n_rlnMicrographFrameNumber\n_rlnMicrographShiftX\n"
                   "_rlnMicrographShiftY\n1 0 0\n")
    with pytest.raises(StarError, match=re.escape(str(bad)) + ".*data_general"):
        read_movie_metadata(bad)
    bad.write_text("data_general\n_rlnImageSizeX 10\n_rlnImageSizeY 10\n_rlnImageSizeZ 2\n"
                   "_rlnMicrographMovieName m.tif\n\ndata_local_motion_model\nloop_\n"
                   "_rlnMotionModelCoeffsIdx\n_rlnMotionModelCoeff\n0 1.0\n1 2.0\n")
    with pytest.raises(StarError, match="0..35, found 2 rows"):
        read_movie_metadata(bad)
    bad.write_text("data_general\n_rlnImageSizeX 10\n_rlnImageSizeZ 2\n")
    with pytest.raises(StarError, match=re.escape(str(bad)) + ".*rlnImageSizeY"):
        read_movie_metadata(bad)
    mics = tmp_path / "mics.star"
    mics.write_text("data_optics\nloop_\n_rlnOpticsGroup\n_rlnMicrographPixelSize\n1 1.0\n\n"
                    "data_micrographs\nloop_\n_rlnMicrographName\n_rlnMicrographMetadata\n_rlnOpticsGroup\n"
                    "a.mrc a.star 2\n")
    with pytest.raises(StarError, match=re.escape(str(mics)) + r".*optics group\(s\) \[2\]"):
        read_corrected_micrographs(mics)


def test_micrograph_key_deep_and_absolute_names():
    # RELION decomposePipelineFileName: everything up to the first jobNNN folder below the top one
    assert micrograph_key("/data/run/MotionCorr/job002/Movies/a.mrc") == "Movies/a.mrc"
    assert micrograph_key("/data/Movies/a.mrc") == "data/Movies/a.mrc"
    assert micrograph_key("job002/a.mrc") == "job002/a.mrc"  # the top folder is never a job folder


def test_movie_and_gain_paths_and_missing_pixel_size(tiny, tmp_path):
    from polishplugin.io.movies import MovieMetadata

    table = read_corrected_micrographs(tiny["micrographs_star"])
    meta = read_movie_metadata(table.metadata_path(0))
    assert meta.movie_path() == tiny["root"] / "Movies/mic_001.mrcs" and meta.movie_path().exists()
    assert meta.gain_path() is None and meta.original_pixel_size_a == pytest.approx(1.0)
    star = tmp_path / "m.star"
    star.write_text("data_general\n_rlnImageSizeX 10\n_rlnImageSizeY 10\n_rlnImageSizeZ 2\n"
                    "_rlnMicrographMovieName m.tif\n_rlnMicrographGainName gain.mrc\n")
    (tmp_path / "gain.mrc").write_bytes(b"")
    again = read_movie_metadata(star)
    assert again.original_pixel_size_a is None  # not in the file: the caller decides (polishing: --mps)
    assert again.gain_path() == tmp_path / "gain.mrc"
    assert MovieMetadata(1, 1, 1, "m.mrc", np.zeros((1, 2)), gain_name="None").gain_path() is None


def test_iter_movie_frames_mrc_gain_and_errors(tmp_path):
    from polishplugin.io.movies import MovieError, iter_movie_frames, movie_frame_count
    from polishplugin.io.mrc import write_mrc

    rng = np.random.default_rng(5)
    frames = rng.normal(size=(5, 12, 16)).astype(np.float32)
    gain = rng.uniform(0.5, 2, size=(12, 16)).astype(np.float32)
    write_mrc(tmp_path / "m.mrcs", frames, 1.0)
    write_mrc(tmp_path / "gain.mrc", gain, 1.0)
    assert movie_frame_count(tmp_path / "m.mrcs") == 5
    got = list(iter_movie_frames(tmp_path / "m.mrcs", 1, 3, tmp_path / "gain.mrc"))
    assert [f for f, _ in got] == [0, 1, 2]
    for f, frame in got:
        np.testing.assert_allclose(frame, -frames[1 + f] * gain, rtol=1e-6)  # contrast inverted, gain applied
    with pytest.raises(MovieError, match="has 5 frames; frames 4 to 6 were asked for"):
        list(iter_movie_frames(tmp_path / "m.mrcs", 3, 3))
    frames[2, 3, 4] = np.inf
    write_mrc(tmp_path / "m.mrcs", frames, 1.0)
    with pytest.raises(MovieError, match="m.mrcs frame 3 contains NaN or Inf"):
        list(iter_movie_frames(tmp_path / "m.mrcs", 0, 5))
    with pytest.raises(MovieError, match="absent.mrc does not exist"):
        movie_frame_count(tmp_path / "absent.mrc")


def test_iter_movie_frames_tiff_flipped(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from polishplugin.io.movies import MovieError, iter_movie_frames

    frames = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    with tifffile.TiffWriter(tmp_path / "m.tiff") as tw:  # one page per frame, as detectors write them
        for frame in frames:
            tw.write(frame, photometric="minisblack")
    got = [frame for _, frame in iter_movie_frames(tmp_path / "m.tiff", 0, 3)]
    np.testing.assert_array_equal(got[1], -frames[1, ::-1].astype(np.float32))  # RELION flips TIFF along y
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with pytest.raises(MovieError, match="bad.tif cannot be read"):
        list(iter_movie_frames(tmp_path / "bad.tif", 0, 1))
