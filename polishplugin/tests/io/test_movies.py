"""Per-movie motion STAR, corrected_micrographs.star and the initial-shift model."""

import re

import numpy as np
import pytest

from polishplugin.io.movies import (N_LOCAL_COEFFS, NOT_OBSERVED, MovieMetadata, initial_shift, micrograph_key,
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
    meta = read_movie_metadata(tutorial_data / "relion-tutorial/movie_frameImage.star")
    c = meta.local_coeffs
    # frame 1: z = 0 -> the polynomial vanishes; the global shift of frame 1 is 0
    np.testing.assert_allclose(initial_shift(meta, 1, 0.3, -0.2), (0.0, 0.0))
    # centre (u = v = 0), frame 24: z = 23, only the constant basis term (coefficients 0..2, 18..20)
    z = 23.0
    sx, sy = initial_shift(meta, 24, 0.0, 0.0)
    assert sx == pytest.approx(9.895187 + c[0] * z + c[1] * z**2 + c[2] * z**3)
    assert sx == pytest.approx(11.534874687, abs=1e-6)  # by hand from the file's numbers
    assert sy == pytest.approx(-8.39650 + c[18] * z + c[19] * z**2 + c[20] * z**3)
    # u only: basis u (coefficients 3..5) and u^2 (6..8)
    u = 0.25
    sx_u, _ = initial_shift(meta, 24, u, 0.0)
    poly = lambda j: c[3 * j] * z + c[3 * j + 1] * z**2 + c[3 * j + 2] * z**3  # noqa: E731
    assert sx_u - sx == pytest.approx(poly(1) * u + poly(2) * u * u)
    # v and uv terms (basis 3: v, 4: v^2, 5: uv)
    v = -0.4
    sx_uv, _ = initial_shift(meta, 24, u, v)
    assert sx_uv - sx_u == pytest.approx(poly(3) * v + poly(4) * v * v + poly(5) * u * v)
    # arrays of positions
    xs, ys = initial_shift(meta, 24, np.array([0.0, u]), np.array([0.0, 0.0]))
    np.testing.assert_allclose(xs, [sx, sx_u])
    with pytest.raises(ValueError, match="frame 25"):
        initial_shift(meta, 25, 0, 0)
    meta.global_shifts_px[4] = NOT_OBSERVED
    with pytest.raises(ValueError, match="frame 5 .*not aligned"):
        initial_shift(meta, 5, 0, 0)


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
