"""The Scipion-movie route carries the detector settings (issue 20): gain, defect file, binning and EER
rendering go from the per-movie STAR files (or ProtPolishImport's Detector tab) onto the SetOfMovies and back
into the STAR files the programs read; polishing through that route equals polishing the original files."""

from pathlib import Path

import numpy as np
import pytest

from polishplugin.testing.scipion import require_scipion

require_scipion()

from pwem.objects import SetOfMovies  # noqa: E402

from polishplugin.convert.scipion_objects import (detector_settings, micrographs_to_movies,  # noqa: E402
                                                  movies_to_micrographs)
from polishplugin.io import labels as L  # noqa: E402
from polishplugin.io.movies import read_corrected_micrographs, read_movie_metadata  # noqa: E402
from polishplugin.io.polish import read_tracks  # noqa: E402

SMALL = dict(contrast=0.5, n_movies=2, particles_per_movie=30)


@pytest.fixture(scope="module")
def detector_sim(tmp_path_factory):
    from polishplugin.tests.fixtures_simulate import simulated_project

    return simulated_project(tmp_path_factory, "tiny", 1, **SMALL, gain=True, hot_pixels=20, super_resolution=True,
                             movie_format="mrc4")


def _tracks(sim, corr_mic, out):
    """Polish (the program test's helper) with ``corr_mic``; all tracks (Å), micrograph by micrograph."""
    from polishplugin.tests.programs.test_detector_polishing import _polish

    _polish({**sim, "corrected_micrographs": corr_mic}, Path(out))
    return np.concatenate([read_tracks(p, 1.0) for p in sorted(Path(out).glob("Movies/*_tracks.star"))])


def test_detector_settings_round_trip_and_polishing(detector_sim, tmp_path):
    sim = detector_sim
    table = read_corrected_micrographs(sim["corrected_micrographs"], sim["project_dir"])
    movies = SetOfMovies(filename=str(tmp_path / "movies.sqlite"))
    metas = micrographs_to_movies(table, movies)
    movies.write()
    gain = str((Path(sim["project_dir"]) / "Movies" / "gain.mrc").resolve())
    assert movies.getGain() == gain
    movie = movies.getFirstItem()
    assert movie._rlnMicrographGainName.get() == gain and movie._rlnMicrographBinning.get() == 2.0
    assert movie._rlnMicrographDefectFile.get().endswith("sim_00001_frameImage_defects.txt")
    back = movies_to_micrographs(movies, tmp_path / "star")
    assert float(back.optics[L.MICROGRAPH_PIXEL_SIZE].iloc[0]) == pytest.approx(2.5)  # movie px 1.25 x binning 2
    for i, meta in enumerate(metas):
        new = read_movie_metadata(back.metadata_path(i))
        assert new.gain_path() == Path(gain) and new.binning == 2.0
        assert new.defect_path() == meta.defect_path().resolve()
        np.testing.assert_allclose(new.hot_pixels_px, meta.hot_pixels_px)
    direct = _tracks(sim, sim["corrected_micrographs"], tmp_path / "direct")
    routed = _tracks(sim, back.path, tmp_path / "routed")
    np.testing.assert_allclose(routed, direct, atol=1e-6)


def test_detector_tab_overrides_the_star_files(detector_sim, tmp_path):
    sim = detector_sim
    table = read_corrected_micrographs(sim["corrected_micrographs"], sim["project_dir"])
    movies = SetOfMovies(filename=str(tmp_path / "movies.sqlite"))
    form = {"gain": str(tmp_path / "other_gain.mrc"), "defect_file": None, "binning": 0.0, "eer_upsampling": 2,
            "eer_grouping": 40}
    micrographs_to_movies(table, movies, detector=form)
    movies.write()
    out = movies_to_micrographs(movies, tmp_path / "star")
    meta = read_movie_metadata(out.metadata_path(0))
    assert meta.gain_name == str(tmp_path / "other_gain.mrc")
    assert meta.binning == 2.0 and meta.defect_file.endswith("_defects.txt")  # 0 / None: the STAR's values kept
    assert meta.eer_settings() == (2, 40)
    # a protocol's form at polishing time wins over what the movies carry
    again = movies_to_micrographs(movies, tmp_path / "star2", detector={"eer_grouping": 20})
    assert read_movie_metadata(again.metadata_path(1)).eer_settings() == (2, 20)
    with pytest.raises(KeyError, match="unknown detector setting 'dark'"):
        detector_settings(None, {"dark": "x"})


def test_eer_movies_keep_their_rendering_size(tmp_path_factory, tmp_path):
    from polishplugin.tests.fixtures_simulate import simulated_project

    sim = simulated_project(tmp_path_factory, "tiny", 2, n_movies=1, particles_per_movie=4, frames=3,
                            movie_format="eer", eer_upsampling=2, eer_grouping=30)
    table = read_corrected_micrographs(sim["corrected_micrographs"], sim["project_dir"])
    movies = SetOfMovies(filename=str(tmp_path / "eer.sqlite"))
    micrographs_to_movies(table, movies)
    movies.write()
    assert movies.getFirstItem()._rlnEERGrouping.get() == 30
    meta = read_movie_metadata(movies_to_micrographs(movies, tmp_path / "star").metadata_path(0))
    assert (meta.width_px, meta.height_px, meta.n_frames) == (400, 400, 3)  # the rendering, not the 200 px detector
    assert meta.eer_settings() == (2, 30)
