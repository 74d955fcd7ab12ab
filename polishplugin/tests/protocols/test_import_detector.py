"""ProtPolishImport's Detector tab (issue 20): the simulator's detector options and the gain / defect / EER /
binning settings handed to the movies, and the validation of EER movies without their rendering settings."""

import pytest

from polishplugin.testing.scipion import require_scipion

require_scipion()

from polishplugin.io import labels as L  # noqa: E402
from polishplugin.io.movies import read_movie_metadata, write_movie_metadata  # noqa: E402
from polishplugin.protocols import ProtPolishImport  # noqa: E402


def test_simulate_args_carry_the_detector_options():
    prot = ProtPolishImport()
    prot.importFrom.set(ProtPolishImport.IMPORT_SIMULATED)
    assert prot._simulateArgs()[-2:] == ["--o", prot._extra("simulated")]  # plain MRC: no detector flags
    prot.simMovieFormat.set(3)
    prot.simEerUpsampling.set(2)
    prot.simHotPixels.set(20)
    prot.simOpticsGroups.set(2)
    args = prot._simulateArgs()
    assert args[6:] == ["--movie_format", "eer", "--eer_upsampling", "2", "--hot_pixels", "20", "--optics_groups", "2"]
    prot.simMovieFormat.set(1)
    prot.simSuperResolution.set(True)
    prot.simGain.set(True)
    prot.simOpticsGroups.set(1)
    assert prot._simulateArgs()[6:] == ["--movie_format", "mrc4", "--gain", "--hot_pixels", "20", "--super_resolution"]
    assert prot.detectorSettings() == {}  # a simulated project's STAR files say it all
    prot.simOpticsGroups.set(2)
    assert any("single optics group" in e for e in prot._validate())


def test_detector_tab_settings_and_eer_validation(tmp_path_factory, tmp_path):
    from polishplugin.tests.fixtures_simulate import copy_project, simulated_project

    sim = copy_project(simulated_project(tmp_path_factory, "tiny", 2, n_movies=1, particles_per_movie=4, frames=3,
                                         movie_format="eer", eer_grouping=20), tmp_path / "p")
    prot = ProtPolishImport()
    prot.micrographsStar.set(str(sim["corrected_micrographs"]))
    prot.projectDir.set(str(sim["project_dir"]))
    assert prot._validate() == []
    meta = read_movie_metadata(sim["movie_stars"][0])
    del meta.extra_general[L.MICROGRAPH_EER_GROUPING]
    write_movie_metadata(sim["movie_stars"][0], meta)
    errors = prot._validate()
    assert len(errors) == 1 and "is an EER movie but its per-movie STAR file" in errors[0]
    prot.eerUpsampling.set(1)
    prot.eerGrouping.set(20)
    assert prot._validate() == []
    prot.gainFile.set(str(tmp_path / "absent_gain.mrc"))
    assert prot.detectorSettings() == {"gain": str(tmp_path / "absent_gain.mrc"), "defect_file": None,
                                       "binning": 0.0, "eer_upsampling": 1, "eer_grouping": 20}
    assert any("gain reference" in e and "does not exist" in e for e in prot._validate())


@pytest.mark.parametrize("value", [-1])
def test_negative_eer_grouping_is_refused(tmp_path_factory, value):
    from polishplugin.tests.fixtures_simulate import simulated_project

    sim = simulated_project(tmp_path_factory, "tiny", 2, n_movies=1, particles_per_movie=4, frames=3,
                            movie_format="eer", eer_grouping=20)
    prot = ProtPolishImport()
    prot.micrographsStar.set(str(sim["corrected_micrographs"]))
    prot.eerGrouping.set(value)
    assert any("EER grouping must be >= 1" in e for e in prot._validate())
