"""ProtPolishImport in a Scipion test project: outputs registered with the right sizes and values."""

import os
import re
import shutil
import tempfile

import numpy as np

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.tests.protocols.base import PolishProjectTestCase, setupTestProject  # noqa: E402

from polishplugin.io.particles import read_particles  # noqa: E402
from polishplugin.convert.scipion_objects import matrix_to_relion  # noqa: E402
from polishplugin.protocols import ProtPolishImport  # noqa: E402
from polishplugin.testing.tiny_project import (ANGPIX, N_FRAMES, make_tiny_project)  # noqa: E402


class TestPolishImport(PolishProjectTestCase):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.tmp = tempfile.mkdtemp(prefix="polish_tiny_")
        cls.files = make_tiny_project(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_import_all(self):
        f = self.files
        prot = self.newProtocol(ProtPolishImport, objLabel="import tiny project",
                                micrographsStar=str(f["micrographs_star"]),
                                particlesStar=str(f["particles_star"]),
                                postprocessStar=str(f["postprocess_star"]),
                                mtfStar=str(f["mtf_star"]))
        self.launchProtocol(prot)

        movies = prot.outputMovies
        self.assertEqual(movies.getSize(), f["n_movies"])
        movie = movies.getFirstItem()
        xs, ys = movie.getAlignment().getShifts()
        np.testing.assert_allclose(xs, f["metas"][0].global_shifts_px[:, 0], atol=1e-5)
        np.testing.assert_allclose(ys, f["metas"][0].global_shifts_px[:, 1], atol=1e-5)
        self.assertEqual(movie.getAlignment().getRange(), (1, N_FRAMES))
        self.assertAlmostEqual(movies.getAcquisition().getDosePerFrame(), 1.5)

        particles = prot.outputParticles
        self.assertEqual(particles.getSize(), f["n_particles"])
        self.assertAlmostEqual(particles.getSamplingRate(), ANGPIX)
        self.assertTrue(particles.hasCTF() and particles.hasAlignmentProj())
        table = read_particles(f["particles_star"])
        first = particles.getFirstItem()
        rot, tilt, psi, sx, sy, _ = matrix_to_relion(first.getTransform().getMatrix())
        row = table.particles.iloc[0]
        np.testing.assert_allclose([sx * ANGPIX, sy * ANGPIX],
                                   [row["rlnOriginXAngst"], row["rlnOriginYAngst"]], atol=1e-4)
        ctf = first.getCTF()  # Scipion standardises to U >= V (angle + 90 when swapped)
        self.assertAlmostEqual(ctf.getDefocusU(), max(row["rlnDefocusU"], row["rlnDefocusV"]), places=3)
        self.assertAlmostEqual(ctf.getDefocusV(), min(row["rlnDefocusU"], row["rlnDefocusV"]), places=3)
        self.assertEqual(first._rlnRandomSubset.get(), int(row["rlnRandomSubset"]))

        volume = prot.outputVolume
        self.assertTrue(volume.hasHalfMaps())
        self.assertEqual(volume.getHalfMaps(asList=True), [str(f["half1"]), str(f["half2"])])
        self.assertAlmostEqual(volume.getSamplingRate(), ANGPIX)
        self.assertEqual(volume.getFileName(), prot._getExtraPath("half_maps_average.mrc"))  # no run_class001
        self.assertEqual(prot.outputMask.getFileName(), str(f["mask"]))

    def test_bad_particles_fail_validation(self):
        bad = self.files["root"] / "bad_particles.star"
        text = re.sub(r"opticsGroup1\s+1 ", "opticsGroup1 7 ", self.files["particles_star"].read_text())
        bad.write_text(text)
        prot = self.newProtocol(ProtPolishImport, particlesStar=str(bad))
        errors = prot.validate()
        self.assertTrue(any(str(bad) in e and "optics group" in e for e in errors), errors)

    def test_import_simulated_dataset(self):
        # runs `polishplugin simulate --preset tiny` through runJob, then imports its project
        prot = self.newProtocol(ProtPolishImport, objLabel="simulated", importFrom=1, simPreset=0, simSeed=3)
        self.assertEqual(prot._simulateArgs(), ["--preset", "tiny", "--seed", "3", "--o",
                                                prot._getExtraPath("simulated")])
        self.launchProtocol(prot)
        self.assertEqual(prot.outputMovies.getSize(), 3)
        self.assertEqual(prot.outputParticles.getSize(), 36)
        self.assertTrue(prot.outputVolume.hasHalfMaps())
        self.assertTrue(prot.outputVolume.getFileName().endswith("Refine3D/job021/run_class001.mrc"))
        self.assertIsNotNone(prot.outputMask)
        self.assertTrue(os.path.exists(prot._getExtraPath("mtf_simulated.star")))

    def test_import_tutorial_particles(self):
        data = os.environ.get("POLISHPLUGIN_TEST_DATA")
        if not data:
            self.skipTest("POLISHPLUGIN_TEST_DATA unset")
        star = os.path.join(data, "relion-tutorial", "particles_tutorial_polish_input.star")
        prot = self.newProtocol(ProtPolishImport, objLabel="tutorial particles", particlesStar=star,
                                checkStacks=False)
        self.launchProtocol(prot)
        particles = prot.outputParticles
        self.assertEqual(particles.getSize(), 4501)
        self.assertAlmostEqual(particles.getSamplingRate(), 1.244531, places=6)
        self.assertAlmostEqual(particles.getAcquisition().getVoltage(), 200.0)
        first = particles.getFirstItem()
        self.assertEqual(first.getCoordinate().getMicName(), "20170629_00021_frameImage.mrc")  # Scipion's
        self.assertEqual(first.getCoordinate()._polishMicrographName.get(),
                         "MotionCorr/job002/Movies/20170629_00021_frameImage.mrc")
        self.assertAlmostEqual(first._rlnCoordinateX.get(), 675.717651, places=5)
        rot, tilt, psi, sx, sy, _ = matrix_to_relion(first.getTransform().getMatrix())
        np.testing.assert_allclose([rot, tilt, psi], [-27.06145, 7.977661, -144.05007], atol=1e-4)
        np.testing.assert_allclose([sx, sy], [0.348960 / 1.244531, 0.348955 / 1.244531], atol=1e-6)
