"""Scipion objects <-> STAR: known-answer pose conversions and round trips (needs pyworkflow/pwem)."""

import json
import numpy as np
import pandas as pd
import pytest

from polishplugin.testing.scipion import require_scipion

require_scipion()

from pwem.convert.transformations import euler_matrix  # noqa: E402
from pwem.objects import SetOfMovies, SetOfParticles  # noqa: E402

from polishplugin.io import labels as L  # noqa: E402
from polishplugin.io.movies import (read_corrected_micrographs, read_movie_metadata,  # noqa: E402
                                         write_movie_metadata)
from polishplugin.io.particles import read_particles, write_particles  # noqa: E402
from polishplugin.convert.scipion_objects import (make_fsc, make_mask, make_volume,  # noqa: E402
                                                  matrix_to_relion, micrographs_to_movies,
                                                  movies_to_micrographs, particles_to_table,
                                                  relion_to_matrix, scipion_file_path,
                                                  table_to_particles)
from polishplugin.core.geometry import euler_to_matrix  # noqa: E402


def test_pose_known_answers():
    # rot = 90: RELION A = [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]; Scipion matrix = [[A^T, A^T s], [0, 1]]
    m = relion_to_matrix(90.0, 0.0, 0.0, 2.0, 0.0)
    np.testing.assert_allclose(m, [[0, -1, 0, 0], [1, 0, 0, 2], [0, 0, 1, 0], [0, 0, 0, 1]], atol=1e-12)
    # tilt = 90: A = [[0, 0, -1], [0, 1, 0], [1, 0, 0]]; shift (1, 3) px -> A^T s = (0, 3, -1)
    m = relion_to_matrix(0.0, 90.0, 0.0, 1.0, 3.0)
    np.testing.assert_allclose(m[:3, :3], [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(m[:3, 3], [0, 3, -1], atol=1e-12)
    rot, tilt, psi, sx, sy, sz = matrix_to_relion(m)
    assert (tilt, sx, sy, sz) == pytest.approx((90.0, 1.0, 3.0, 0.0), abs=1e-9)
    assert np.cos(np.radians(rot + psi)) == pytest.approx(1.0)


def test_pose_matches_pwem_convention():
    # The RELION plugin's convention: matrix = inv(euler_matrix(-rot, -tilt, -psi, 'szyz') with -shift)
    rng = np.random.default_rng(11)
    for _ in range(20):
        rot, psi = rng.uniform(-180, 180, 2)
        tilt = rng.uniform(1, 179)
        shift = rng.uniform(-5, 5, 2)
        pwem_forward = euler_matrix(*np.radians([-rot, -tilt, -psi]), axes="szyz")
        pwem_forward[:3, 3] = -np.array([shift[0], shift[1], 0.0])
        np.testing.assert_allclose(relion_to_matrix(rot, tilt, psi, *shift), np.linalg.inv(pwem_forward),
                                   atol=1e-10)
        np.testing.assert_allclose(pwem_forward[:3, :3], euler_to_matrix(rot, tilt, psi), atol=1e-10)
        back = matrix_to_relion(relion_to_matrix(rot, tilt, psi, *shift))
        np.testing.assert_allclose(back, [rot, tilt, psi, shift[0], shift[1], 0.0], atol=1e-8)


def _same_ctf(a, b):
    """Equal CTFs up to Scipion's U >= V standardisation (swap + 90 degrees)."""
    ua, va, aa = a
    ub, vb, ab = b
    if np.isclose(ua, ub, atol=1e-3) and np.isclose(va, vb, atol=1e-3):
        return np.isclose(np.cos(np.radians(2 * (aa - ab))), 1.0, atol=1e-8)
    return (np.isclose(ua, vb, atol=1e-3) and np.isclose(va, ub, atol=1e-3)
            and np.isclose(np.cos(np.radians(2 * (aa - ab))), -1.0, atol=1e-8))


def test_particles_round_trip(tiny, tmp_path):
    table = read_particles(tiny["particles_star"])
    parts = SetOfParticles(filename=str(tmp_path / "particles.sqlite"))
    table_to_particles(table, parts)
    parts.write()
    assert parts.getSize() == 6 and parts.hasCTF() and parts.hasAlignmentProj()
    assert parts.getSamplingRate() == pytest.approx(2.0)
    first = parts.getFirstItem()
    assert first.getFileName() == str(tiny["root"] / "Extract/job010/Movies/mic_001.mrcs")
    assert first.getIndex() == 1
    # Scipion's micName (base name, as scipion-em-relion writes micrographs); the RELION name beside it
    assert first.getCoordinate().getMicName() == "mic_001.mrc"
    assert first.getCoordinate()._polishMicrographName.get() == "MotionCorr/job002/Movies/mic_001.mrc"

    back = particles_to_table(parts)
    assert back.optics[L.IMAGE_SIZE].iloc[0] == 16
    a, b = table.particles, back.particles
    assert set(a.columns) <= set(b.columns)
    for label in (L.COORDINATE_X, L.COORDINATE_Y, L.ORIGIN_X_ANGST, L.ORIGIN_Y_ANGST, L.NORM_CORRECTION):
        np.testing.assert_allclose(b[label], a[label], atol=1e-6, err_msg=label)
    for label in (L.RANDOM_SUBSET, L.GROUP_NUMBER, L.OPTICS_GROUP, L.MICROGRAPH_NAME):
        assert list(b[label]) == list(a[label]), label
    for i in range(len(a)):
        ra = euler_to_matrix(*a.loc[i, [L.ANGLE_ROT, L.ANGLE_TILT, L.ANGLE_PSI]])
        rb = euler_to_matrix(*b.loc[i, [L.ANGLE_ROT, L.ANGLE_TILT, L.ANGLE_PSI]])
        np.testing.assert_allclose(rb, ra, atol=1e-8)
        assert _same_ctf(a.loc[i, [L.DEFOCUS_U, L.DEFOCUS_V, L.DEFOCUS_ANGLE]],
                         b.loc[i, [L.DEFOCUS_U, L.DEFOCUS_V, L.DEFOCUS_ANGLE]])
    # the STAR written from Scipion reads back with its stacks
    out = tmp_path / "from_scipion.star"
    write_particles(out, back)
    again = read_particles(out, check_stacks=True)
    np.testing.assert_allclose(again.origins_px(), table.origins_px(), atol=1e-6)


def test_scipion_to_star_to_scipion(tiny, tmp_path):
    """SetOfParticles -> particle STAR file -> SetOfParticles: every field equal."""
    first = SetOfParticles(filename=str(tmp_path / "a.sqlite"))
    table_to_particles(read_particles(tiny["particles_star"]), first)
    star = tmp_path / "a.star"
    write_particles(star, particles_to_table(first))
    second = SetOfParticles(filename=str(tmp_path / "b.sqlite"))
    table_to_particles(read_particles(star), second, image_root=".")
    assert second.getSize() == first.getSize()
    assert second.getSamplingRate() == first.getSamplingRate()
    assert second.getAcquisition().getVoltage() == first.getAcquisition().getVoltage()
    for a, b in zip(first.iterItems(orderBy="id"), second.iterItems(orderBy="id")):
        assert (b.getIndex(), b.getFileName()) == (a.getIndex(), a.getFileName())
        np.testing.assert_allclose(b.getTransform().getMatrix(), a.getTransform().getMatrix(), atol=1e-6)
        ca, cb = a.getCTF(), b.getCTF()
        assert (cb.getDefocusU(), cb.getDefocusV(), cb.getDefocusAngle()) == pytest.approx(
            (ca.getDefocusU(), ca.getDefocusV(), ca.getDefocusAngle()), abs=1e-4)
        assert b.getCoordinate().getPosition() == a.getCoordinate().getPosition()
        assert b.getCoordinate().getMicName() == a.getCoordinate().getMicName()
        assert b._rlnRandomSubset.get() == a._rlnRandomSubset.get()
        assert b._rlnGroupNumber.get() == a._rlnGroupNumber.get()


def test_tutorial_particles_to_scipion(tutorial_data, tmp_path):
    table = read_particles(tutorial_data / "relion-tutorial/particles_tutorial_polish_input.star")
    small = table.subset(range(50))
    parts = SetOfParticles(filename=str(tmp_path / "p.sqlite"))
    table_to_particles(small, parts, image_root=tmp_path)
    parts.write()
    parts.close()
    parts = SetOfParticles(filename=str(tmp_path / "p.sqlite"))  # re-read from disk
    parts.loadAllProperties()
    back = particles_to_table(parts, image_size_px=256)
    assert back.optics[L.MTF_FILE_NAME].iloc[0] == "mtf_k2_200kV.star"  # optics table kept with the set
    assert back.optics[L.MICROGRAPH_ORIGINAL_PIXEL_SIZE].iloc[0] == pytest.approx(0.885)
    np.testing.assert_allclose(back.particles[L.ORIGIN_X_ANGST], small.particles[L.ORIGIN_X_ANGST], atol=1e-6)
    np.testing.assert_allclose(back.particles[L.COORDINATE_Y], small.particles[L.COORDINATE_Y], atol=1e-6)
    assert back.optics[L.IMAGE_PIXEL_SIZE].iloc[0] == pytest.approx(1.244531)
    assert list(back.particles[L.CLASS_NUMBER]) == list(small.particles[L.CLASS_NUMBER])


def test_two_optics_groups_kept(tiny, tmp_path):
    table = read_particles(tiny["particles_star"])
    second = table.optics.copy()
    second[L.OPTICS_GROUP] = 2
    second[L.OPTICS_GROUP_NAME] = "opticsGroup2"
    second[L.VOLTAGE] = 200.0
    table.optics = pd.concat([table.optics, second], ignore_index=True)
    table.particles.loc[[1, 4], L.OPTICS_GROUP] = 2
    parts = SetOfParticles(filename=str(tmp_path / "groups.sqlite"))
    table_to_particles(table, parts)
    voltages = [p.getAcquisition().getVoltage() for p in parts.iterItems(orderBy="id")]
    assert voltages == [300, 200, 300, 300, 200, 300]
    back = particles_to_table(parts)
    assert list(back.particles[L.OPTICS_GROUP]) == [1, 2, 1, 1, 2, 1]
    assert list(back.optics[L.VOLTAGE]) == [300.0, 200.0]
    table.optics.loc[1, L.IMAGE_PIXEL_SIZE] = 3.0
    with pytest.raises(ValueError, match="different pixel sizes"):
        table_to_particles(table, SetOfParticles(filename=str(tmp_path / "bad.sqlite")))


def test_movies_round_trip(tiny, tmp_path):
    table = read_corrected_micrographs(tiny["micrographs_star"])
    movies = SetOfMovies(filename=str(tmp_path / "movies.sqlite"))
    metas = micrographs_to_movies(table, movies)
    movies.write()
    assert movies.getSize() == 3
    assert movies.getAcquisition().getDosePerFrame() == pytest.approx(1.5)
    movie = movies.getFirstItem()
    assert movie.getFileName() == str(tiny["root"] / "Movies/mic_001.mrcs")
    assert movie.getDim() == (32, 32, 4)
    out = movies_to_micrographs(movies, tmp_path / "star")
    again = read_corrected_micrographs(out.path)
    assert again.names() == table.names()
    for i, meta in enumerate(metas):
        new = read_movie_metadata(again.metadata_path(i))
        np.testing.assert_allclose(new.global_shifts_px, meta.global_shifts_px, atol=1e-5)
        np.testing.assert_allclose(new.local_coeffs, meta.local_coeffs, atol=1e-6)
        np.testing.assert_allclose(new.hot_pixels_px, meta.hot_pixels_px)
        assert (new.width_px, new.height_px, new.n_frames) == (32, 32, 4)
        assert new.dose_per_frame_e_per_a2 == pytest.approx(1.5)
        assert new.movie_name == str(tiny["root"] / "Movies" / f"mic_{i + 1:03d}.mrcs")


def test_scipion_format_suffix_is_dropped(tiny, tmp_path):
    assert scipion_file_path("a/b.mrcs:mrcs") == "a/b.mrcs"
    assert scipion_file_path("a/b.mrc:mrc") == "a/b.mrc"
    assert scipion_file_path("a/b.mrc") == "a/b.mrc"
    parts = SetOfParticles(filename=str(tmp_path / "suffix.sqlite"))
    table_to_particles(read_particles(tiny["particles_star"]), parts)
    for particle in parts.iterItems():
        particle.setFileName(particle.getFileName() + ":mrcs")
        parts.update(particle)
    names = particles_to_table(parts, image_size_px=16).particles[L.IMAGE_NAME]
    assert all(n.endswith(".mrcs") for n in names)


def test_movies_mixed_local_models_persist(tiny, tmp_path):
    table = read_corrected_micrographs(tiny["micrographs_star"])
    first = read_movie_metadata(table.metadata_path(0))
    first.local_coeffs = None
    write_movie_metadata(table.metadata_path(0), first)
    movies = SetOfMovies(filename=str(tmp_path / "mixed.sqlite"))
    micrographs_to_movies(table, movies)
    movies.write()
    movies.close()
    reopened = SetOfMovies(filename=str(tmp_path / "mixed.sqlite"))
    coeffs = [len(json.loads(m._rlnMotionModelCoeff.get())) for m in reopened.iterItems(orderBy="id")]
    assert coeffs == [0, 36, 36]


def test_volume_mask_fsc(tiny):
    volume = make_volume(str(tiny["half1"]), 2.0, str(tiny["half1"]), str(tiny["half2"]))
    assert volume.hasHalfMaps()
    assert volume.getHalfMaps(asList=True) == [str(tiny["half1"]), str(tiny["half2"])]
    assert volume.getDim() == (16, 16, 16)
    mask = make_mask(str(tiny["mask"]), 2.0)
    assert mask.getSamplingRate() == 2.0
    fsc = make_fsc([0.0, 0.1, 0.2, 0.3], [1.0, 0.8, 0.1, 0.0])
    x, y = fsc.getData()
    assert list(y) == [1.0, 0.8, 0.1, 0.0]
    assert list(x) == [0.0, 0.1, 0.2, 0.3]
    # 0.143 crossed between 0.1 (0.8) and 0.2 (0.1): x = 0.1 + 0.1 * 0.657 / 0.7
    assert float(fsc.calculateResolution(threshold=0.143)) == pytest.approx(1 / (0.1 + 0.0657 / 0.7), abs=1e-3)


def test_mtf_name_resolved_against_the_project(tiny, tmp_path):
    """A RELION-relative rlnMtfFileName still points at the file once the set is used elsewhere."""
    table = read_particles(tiny["particles_star"])
    mtf = tiny["root"] / "mtf_test.star"
    mtf.write_text("data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n0.0 1.0\n0.5 0.5\n")
    table.optics[L.MTF_FILE_NAME] = "mtf_test.star"
    parts = SetOfParticles(filename=str(tmp_path / "mtf.sqlite"))
    table_to_particles(table, parts)
    back = particles_to_table(parts)
    assert back.optics[L.MTF_FILE_NAME].iloc[0] == str(mtf)
