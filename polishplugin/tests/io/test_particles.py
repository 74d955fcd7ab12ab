"""Particle STAR files: the real tutorial file, round trips, RELION 3.0 files and bad input."""

import re

import numpy as np
import pandas as pd
import pytest

from polishplugin.io import labels as L
from polishplugin.io.particles import ParticleTable, read_particles, write_particles
from polishplugin.io.star import StarError


def test_tutorial_particles(tutorial_data):
    table = read_particles(tutorial_data / "relion-tutorial/particles_tutorial_polish_input.star")
    assert len(table) == 4501
    assert len(table.group_by_micrograph()) == 24
    assert set(table.box_sizes_px()) == {256}
    np.testing.assert_allclose(table.pixel_sizes_a(), 1.244531)
    first = table.particles.iloc[0]
    assert first[L.IMAGE_NAME] == "000001@Extract/job018/Movies/20170629_00021_frameImage.mrcs"
    assert first[L.COORDINATE_X] == pytest.approx(675.717651)
    # origin: 0.348960 Å / 1.244531 Å/px
    np.testing.assert_allclose(table.origins_px()[0], [0.348960 / 1.244531, 0.348955 / 1.244531])
    np.testing.assert_allclose(table.angles_deg()[0], [-27.06145, 7.977661, -144.05007])
    ctf = table.ctf_params()[0]
    assert (ctf.defocus_u_a, ctf.defocus_v_a, ctf.defocus_angle_deg) == pytest.approx(
        (10863.857422, 10575.721680, 77.967194))
    assert (ctf.voltage_kv, ctf.cs_mm, ctf.amplitude_contrast) == pytest.approx((200.0, 1.4, 0.1))
    name, rows = table.group_by_micrograph()[0]
    assert name == "MotionCorr/job002/Movies/20170629_00021_frameImage.mrc"
    assert rows[0] == 0 and np.all(np.diff(rows) > 0)
    assert sum(len(r) for _, r in table.group_by_micrograph()) == 4501
    assert table.optics[L.MTF_FILE_NAME].iloc[0] == "mtf_k2_200kV.star"


def test_round_trip(tiny, tmp_path):
    table = read_particles(tiny["particles_star"], check_stacks=True)
    out = tmp_path / "again.star"
    write_particles(out, table)
    again = read_particles(out)
    pd.testing.assert_frame_equal(again.optics, table.optics, atol=1e-6)
    pd.testing.assert_frame_equal(again.particles, table.particles, atol=1e-6)
    assert list(again.half_sets()) == [1, 2, 1, 2, 1, 2]


def test_unpadded_image_names_read(tiny, tmp_path):
    table = read_particles(tiny["particles_star"])
    table.particles[L.IMAGE_NAME] = [re.sub(r"^0+", "", n) for n in table.particles[L.IMAGE_NAME]]
    write_particles(tmp_path / "unpadded.star", table)
    again = read_particles(tmp_path / "unpadded.star", check_stacks=True, project_dir=tiny["root"])
    assert again.image_locations()[1] == (2, "Extract/job010/Movies/mic_001.mrcs")


def test_relion30_file_gets_synthetic_optics(tmp_path):
    star = tmp_path / "relion30.star"
    star.write_text(
        "data_\n\nloop_\n_rlnImageName #1\n_rlnMicrographName #2\n_rlnDefocusU #3\n_rlnVoltage #4\n"
        "_rlnSphericalAberration #5\n_rlnAmplitudeContrast #6\n_rlnDetectorPixelSize #7\n"
        "_rlnMagnification #8\n_rlnOriginX #9\n_rlnOriginY #10\n"
        "1@a.mrcs m1.mrc 10000 300 2.7 0.1 5.0 50000 2.0 -1.0\n"
        "2@a.mrcs m1.mrc 11000 300 2.7 0.1 5.0 50000 0.5 0.0\n"
        "1@b.mrcs m2.mrc 12000 200 2.0 0.07 5.0 50000 0.0 1.0\n")
    table = read_particles(star)
    assert table.source_version == 30000
    assert len(table.optics) == 2
    np.testing.assert_allclose(table.pixel_sizes_a(), 1.0)  # 5 µm / 50000 × 1e4
    np.testing.assert_allclose(table.particles[L.ORIGIN_X_ANGST], [2.0, 0.5, 0.0])
    np.testing.assert_allclose(table.origins_px()[:, 1], [-1.0, 0.0, 1.0])
    assert L.ORIGIN_X not in table.particles.columns
    assert [c.voltage_kv for c in table.ctf_params()] == [300, 300, 200]
    assert table.ctf_params()[2].amplitude_contrast == pytest.approx(0.07)
    write_particles(tmp_path / "as31.star", table)
    assert len(read_particles(tmp_path / "as31.star")) == 3


def test_truncated_file_names_file(tiny, tmp_path):
    text = tiny["particles_star"].read_text().rstrip("\n ")
    bad = tmp_path / "truncated.star"
    bad.write_text(text[:-25] + "\n")
    with pytest.raises(StarError, match=re.escape(str(bad)) + ".*truncated"):
        read_particles(bad)


def test_missing_columns_are_named(tmp_path):
    bad = tmp_path / "nocols.star"
    bad.write_text("data_optics\nloop_\n_rlnOpticsGroup\n_rlnVoltage\n1 300\n\n"
                   "data_particles\nloop_\n_rlnImageName\n_rlnOpticsGroup\n1@a.mrcs 1\n")
    with pytest.raises(StarError, match=re.escape(str(bad)) + r".*rlnImagePixelSize.*rlnSphericalAberration"):
        read_particles(bad)
    bad.write_text("data_particles\nloop_\n_rlnMicrographName\nm.mrc\n")
    with pytest.raises(StarError, match=re.escape(str(bad)) + ".*rlnImageName"):
        read_particles(bad)


def test_unknown_optics_group(tiny, tmp_path):
    table = read_particles(tiny["particles_star"])
    table.particles.loc[3, L.OPTICS_GROUP] = 5
    bad = tmp_path / "group5.star"
    write_particles(bad, table)
    with pytest.raises(StarError, match=re.escape(str(bad)) + r".*optics group\(s\) \[5\]"):
        read_particles(bad)


def test_missing_stack_file(tiny):
    stack = tiny["root"] / "Extract/job010/Movies/mic_002.mrcs"
    stack.unlink()
    read_particles(tiny["particles_star"])  # not checked unless asked
    with pytest.raises(StarError, match=re.escape(str(tiny["particles_star"])) + ".*mic_002.mrcs does not exist"):
        read_particles(tiny["particles_star"], check_stacks=True)


def test_image_index_beyond_stack(tiny, tmp_path):
    table = read_particles(tiny["particles_star"])
    table.particles.loc[0, L.IMAGE_NAME] = "000009@Extract/job010/Movies/mic_001.mrcs"
    bad = tiny["root"] / "Refine3D/job020/beyond.star"
    write_particles(bad, table)
    with pytest.raises(StarError, match="beyond the 2 images"):
        read_particles(bad, check_stacks=True)


def test_subset_and_half_sets_error(tiny):
    table = read_particles(tiny["particles_star"])
    sub = table.subset([1, 3])
    assert isinstance(sub, ParticleTable) and len(sub) == 2
    no_half = ParticleTable(table.optics, table.particles.drop(columns=[L.RANDOM_SUBSET]), table.path)
    with pytest.raises(StarError, match="rlnRandomSubset"):
        no_half.half_sets()
