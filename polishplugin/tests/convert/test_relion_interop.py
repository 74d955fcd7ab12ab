"""Our Scipion objects through scipion-em-relion 5.0.2's conversion code, read back by our readers and by the
polishing program's project loading: same micrographs, motion models (global shifts, local coefficients,
hot pixels) and optics (pixel sizes, MTF).  No RELION binaries: only the conversion step of its Bayesian
polishing protocol (``convertInputStep``) and its particle writer run."""

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.tests.protocols.base import PolishProjectTestCase, setupTestProject  # noqa: E402

relion = pytest.importorskip("relion", reason="scipion-em-relion not installed")

from relion import convert as rconvert  # noqa: E402
from relion.protocols import ProtRelionBayesianPolishing  # noqa: E402

from polishplugin.io import labels as L  # noqa: E402
from polishplugin.io.movies import read_corrected_micrographs, read_movie_metadata  # noqa: E402
from polishplugin.io.particles import read_particles, write_particles  # noqa: E402
from polishplugin.programs import motion_refine  # noqa: E402
from polishplugin.programs._polish_project import load_project  # noqa: E402
from polishplugin.protocols import ProtPolishImport  # noqa: E402
from polishplugin.testing.tiny_project import ANGPIX, MOVIE_ANGPIX, make_tiny_project  # noqa: E402

REFINE_COLUMNS = ["rlnNormCorrection", "rlnMaxValueProbDistribution", "rlnLogLikeliContribution",
                  "rlnNrOfSignificantSamples"]


def import_tiny_project(cls) -> None:
    """A Scipion test project for ``cls`` with the tiny project (its particles' optics naming the MTF, as
    RELION's do) imported by ProtPolishImport: ``cls.tmp``, ``cls.files``, ``cls.imp``."""
    setupTestProject(cls)
    cls.tmp = tempfile.mkdtemp(prefix="polish_relion_interop_")
    cls.files = f = make_tiny_project(cls.tmp)
    table = read_particles(f["particles_star"])
    table.optics[L.MTF_FILE_NAME] = str(f["mtf_star"].relative_to(f["root"]))
    write_particles(f["particles_star"], table)
    cls.imp = cls.newProtocol(ProtPolishImport, objLabel="import tiny project",
                              micrographsStar=str(f["micrographs_star"]), particlesStar=str(f["particles_star"]),
                              postprocessStar=str(f["postprocess_star"]), mtfStar=str(f["mtf_star"]))
    cls.launchProtocol(cls.imp)


class TestRelionConversionRoundTrip(PolishProjectTestCase):
    @classmethod
    def setUpClass(cls):
        import_tiny_project(cls)
        # scipion-em-relion's Bayesian polishing input conversion, without running relion_motion_refine
        prot = cls.newProtocol(ProtRelionBayesianPolishing, objLabel="relion polishing (conversion only)")
        prot.inputMovies.set(cls.imp.outputMovies)
        prot.inputParticles.set(cls.imp.outputParticles)
        cls.proj.saveProtocol(prot)
        prot._createFilenameTemplates()
        prot.makePathsAndClean()
        prot.convertInputStep(1, 2, 3)
        cls.relion_prot = prot
        cls.mics_star = Path(prot._getFileName("input_mics"))
        cls.parts_star = Path(prot._getFileName("input_particles"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_micrographs_and_motion_models(self):
        original = read_corrected_micrographs(self.files["micrographs_star"])
        written = read_corrected_micrographs(self.mics_star)
        self.assertEqual(len(written), len(original))
        for i in range(len(original)):
            meta0 = read_movie_metadata(original.metadata_path(i))
            meta = read_movie_metadata(written.metadata_path(i))
            self.assertEqual(Path(meta.movie_name).name, Path(meta0.movie_name).name)
            self.assertTrue(meta.movie_path().exists())
            self.assertEqual(meta.n_frames, meta0.n_frames)
            self.assertAlmostEqual(meta.original_pixel_size_a, meta0.original_pixel_size_a, places=5)
            # its polishing protocol writes rlnMicrographBinning = particle / movie sampling: Scipion's particle
            # coordinates are in particle pixels (its extraction scales them), as ours are
            self.assertAlmostEqual(meta.binning, ANGPIX / MOVIE_ANGPIX, places=5)
            # scipion-em-relion writes the shifts relative to the first frame
            np.testing.assert_allclose(meta.global_shifts_px,
                                       meta0.global_shifts_px - meta0.global_shifts_px[0], atol=1e-4)
            self.assertIsNotNone(meta.local_coeffs)
            # its STAR tables print 6 significant digits
            np.testing.assert_allclose(meta.local_coeffs, meta0.local_coeffs, rtol=5e-6, atol=5e-7)
            self.assertIsNotNone(meta0.hot_pixels_px)
            np.testing.assert_allclose(meta.hot_pixels_px, meta0.hot_pixels_px)
            self.assertIsNone(meta.gain_path())
        self.assertAlmostEqual(written.pixel_size_a(0), original.pixel_size_a(0), places=5)

    def test_particles_optics(self):
        original = read_particles(self.files["particles_star"])
        written = read_particles(self.parts_star)
        self.assertEqual(len(written.particles), len(original.particles))
        o0, o1 = original.optics.iloc[0], written.optics.iloc[0]
        for label in (L.MICROGRAPH_ORIGINAL_PIXEL_SIZE, L.IMAGE_PIXEL_SIZE, L.VOLTAGE, L.SPHERICAL_ABERRATION,
                      L.AMPLITUDE_CONTRAST):
            self.assertAlmostEqual(float(o1[label]), float(o0[label]), places=5, msg=label)
        self.assertEqual(int(o1[L.IMAGE_SIZE]), int(o0[L.IMAGE_SIZE]))
        self.assertIn(L.MTF_FILE_NAME, written.optics.columns)
        self.assertTrue(Path(str(o1[L.MTF_FILE_NAME])).exists())
        self.assertEqual(Path(str(o1[L.MTF_FILE_NAME])).read_text(),
                         original.resolve(str(o0[L.MTF_FILE_NAME])).read_text())
        def defoci(table):  # Scipion keeps U >= V (angle + 90 when swapped)
            uv = table.particles[[L.DEFOCUS_U, L.DEFOCUS_V]].to_numpy(dtype=float)
            return np.sort(uv, axis=1)
        np.testing.assert_allclose(defoci(written), defoci(original), atol=1e-2)

    def test_coordinates_in_particle_pixels(self):
        original = read_particles(self.files["particles_star"]).particles
        for particle, (_, row) in zip(self.imp.outputParticles.iterItems(orderBy="id"), original.iterrows()):
            self.assertEqual(particle.getCoordinate().getPosition(),
                             (round(row[L.COORDINATE_X] * MOVIE_ANGPIX / ANGPIX),
                              round(row[L.COORDINATE_Y] * MOVIE_ANGPIX / ANGPIX)))

    def test_refine_columns_travel_with_extra_labels(self):
        out = Path(self.tmp) / "refine_particles.star"
        rconvert.writeSetOfParticles(self.imp.outputParticles, str(out), extraLabels=list(REFINE_COLUMNS))
        original = read_particles(self.files["particles_star"])
        written = read_particles(out)
        for label in REFINE_COLUMNS:
            if label in original.particles.columns:
                np.testing.assert_allclose(written.particles[label].to_numpy(dtype=float),
                                           original.particles[label].to_numpy(dtype=float), rtol=1e-5)

    def test_polishing_project_loads(self):
        parser = argparse.ArgumentParser()
        motion_refine.add_args(parser)
        out = Path(self.tmp) / "polish_out"
        args = parser.parse_args(["--i", str(self.parts_star), "--corr_mic", str(self.mics_star),
                                  "--f", str(self.files["postprocess_star"]), "--o", str(out)])
        project = load_project(args)
        original_particles = read_particles(self.files["particles_star"]).particles
        original = read_corrected_micrographs(self.files["micrographs_star"])
        self.assertEqual(len(project.mic_names), len(original))
        self.assertEqual(sorted(Path(n).name for n in project.mic_names),
                         sorted(Path(n).name for n in original.names()))
        for meta in project.movies:
            self.assertIsNotNone(meta.local_coeffs)
        # the same particle positions (Å) within one particle pixel (Scipion's coordinates are integers)
        written = read_particles(self.parts_star).particles
        cps = float(project.movies[0].original_pixel_size_a) * float(project.movies[0].binning)
        self.assertAlmostEqual(cps, ANGPIX, places=5)
        for label in (L.COORDINATE_X, L.COORDINATE_Y):
            np.testing.assert_allclose(written[label].to_numpy(dtype=float) * cps,
                                       original_particles[label].to_numpy(dtype=float) * MOVIE_ANGPIX,
                                       atol=ANGPIX / 2 + 1e-6)

    def test_particles_read_by_relion_with_our_movies(self):
        # particles as its reader registers them (Scipion's micName: base name, no RELION name beside it)
        # polished with our imported movies: the names written on both sides still match
        from pwem.constants import ALIGN_PROJ
        from pwem.objects import SetOfParticles

        from polishplugin.convert.scipion_objects import movies_to_micrographs, particles_to_table

        parts = SetOfParticles(filename=str(Path(self.tmp) / "relion_read.sqlite"))
        rconvert.readSetOfParticles(str(self.files["particles_star"]), parts, alignType=ALIGN_PROJ)
        parts.write()
        self.assertEqual(parts.getFirstItem().getCoordinate().getMicName(), "mic_001.mrc")
        out = Path(self.tmp) / "relion_read"
        mics = movies_to_micrographs(self.imp.outputMovies, out / "motion")
        table = particles_to_table(parts, movie_set=self.imp.outputMovies)  # as ProtPolishParticles does
        for name, _ in table.group_by_micrograph():
            mics.row_of(name)


def test_older_attribute_names_still_read(tmp_path):
    """Sets stored before (local model as the CSV list ``_rlnMotionModelCoeffs``, optics as the JSON
    ``_polishOpticsTable``, full micName) give the same STAR files as the current attributes."""
    import pyworkflow.object as pwobj
    from pwem.objects import Acquisition, SetOfMovies, SetOfParticles

    from polishplugin.convert.scipion_objects import (micrographs_to_movies, movies_to_micrographs,
                                                      particles_to_table, table_to_particles)

    f = make_tiny_project(tmp_path / "tiny")
    mics = read_corrected_micrographs(f["micrographs_star"])
    movies = SetOfMovies(filename=str(tmp_path / "movies.sqlite"))
    metas = micrographs_to_movies(mics, movies)
    parts = SetOfParticles(filename=str(tmp_path / "particles.sqlite"))
    table_to_particles(read_particles(f["particles_star"]), parts)
    new_mics = movies_to_micrographs(movies, tmp_path / "new")
    new_parts = particles_to_table(parts)

    old_movies = SetOfMovies(filename=str(tmp_path / "old_movies.sqlite"))
    old_movies.copyInfo(movies)
    for movie, meta in zip(movies.iterItems(orderBy="id"), metas):
        old = movie.clone()
        old.setMicName(old._polishMicrographName.get())
        for name in ("_polishMicrographName", "_rlnMotionModelCoeff", "_rlnHotPixels"):
            delattr(old, name)
        old._rlnMotionModelCoeffs = pwobj.CsvList(pType=float)
        old._rlnMotionModelCoeffs.set([float(c) for c in meta.local_coeffs])
        old._rlnMicrographMetadata.set("")  # no per-movie STAR to fall back on
        old_movies.append(old)
    old_mics = movies_to_micrographs(old_movies, tmp_path / "old")
    assert old_mics.names() == new_mics.names()
    for i in range(len(new_mics)):
        a, b = read_movie_metadata(old_mics.metadata_path(i)), read_movie_metadata(new_mics.metadata_path(i))
        np.testing.assert_array_equal(a.local_coeffs, b.local_coeffs)
        np.testing.assert_array_equal(a.global_shifts_px, b.global_shifts_px)

    old_parts = SetOfParticles(filename=str(tmp_path / "old_particles.sqlite"))
    old_parts.copyInfo(parts)
    old_parts.setAcquisition(Acquisition())
    old_parts.getAcquisition().copy(parts.getAcquisition())
    old_parts.getAcquisition().opticsGroupInfo.set("")
    old_parts._polishOpticsTable = pwobj.String(read_particles(f["particles_star"]).optics.to_json(orient="split"))
    for particle in parts.iterItems(orderBy="id"):
        old = particle.clone()
        coord = old.getCoordinate()
        coord.setMicName(coord._polishMicrographName.get())
        delattr(coord, "_polishMicrographName")
        old_parts.append(old)
    old_table = particles_to_table(old_parts)
    assert list(old_table.particles[L.MICROGRAPH_NAME]) == list(new_parts.particles[L.MICROGRAPH_NAME])
    for label in (L.MICROGRAPH_ORIGINAL_PIXEL_SIZE, L.IMAGE_PIXEL_SIZE, L.VOLTAGE):
        assert float(old_table.optics[label].iloc[0]) == float(new_parts.optics[label].iloc[0])
