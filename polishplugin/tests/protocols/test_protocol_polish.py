"""ProtPolishParticles in a Scipion test project, on the simulator's tiny project.

Scipion objects from ProtPolishImport (movies + particles) are polished into a SetOfParticles with every
particle and the per-frame B-factors in the summary; the RELION-file inputs are checked through the
argument list (the program itself is tested in tests/programs/test_motion_refine.py).
"""

import tempfile

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.tests.protocols.base import PolishProjectTestCase, setupTestProject  # noqa: E402

from polishplugin.protocols import ProtPolishImport, ProtPolishParticles  # noqa: E402
from polishplugin.tests.protocols.viewer_lookup import open_every_view  # noqa: E402


class TestPolishParticles(PolishProjectTestCase):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        from polishplugin.programs.simulate import simulate_project

        cls.sim = simulate_project(tempfile.mkdtemp(prefix="polish_sim_"), preset="tiny", seed=1,
                                   n_movies=2, particles_per_movie=10)

    def test_program_args_from_files(self):
        s = self.sim
        prot = self.newProtocol(ProtPolishParticles, micrographsStar=str(s["corrected_micrographs"]),
                                particlesStar=str(s["particles"]), postprocessStar=str(s["postprocess"]),
                                sVel=0.4, sDiv=1155.0, sAcc=2.7, float16=True)
        self.assertEqual(prot.validate(), [])
        args = prot._programArgs()
        self.assertEqual(args[args.index("--i") + 1], str(s["particles"]))
        self.assertEqual(args[args.index("--corr_mic") + 1], str(s["corrected_micrographs"]))
        self.assertEqual(args[args.index("--f") + 1], str(s["postprocess"]))
        self.assertEqual(args[args.index("--s_vel") + 1], "0.4")
        self.assertEqual(args[args.index("--s_div") + 1], "1155")
        self.assertEqual(args[args.index("--bfac_minfreq") + 1], "20")
        self.assertEqual(args[args.index("--bfac_maxfreq") + 1], "-1")
        self.assertIn("--combine_frames", args)
        self.assertIn("--float16", args)

    def test_from_scipion_objects(self):
        s = self.sim
        imp = self.newProtocol(ProtPolishImport, micrographsStar=str(s["corrected_micrographs"]),
                               particlesStar=str(s["particles"]), postprocessStar=str(s["postprocess"]))
        self.launchProtocol(imp)
        prot = self.newProtocol(ProtPolishParticles, objLabel="polish (objects)", inputMovies=imp.outputMovies,
                                inputParticles=imp.outputParticles, postprocessStar=str(s["postprocess"]))
        self.launchProtocol(prot)
        out = prot.outputParticles
        self.assertEqual(out.getSize(), 20)
        self.assertAlmostEqual(out.getSamplingRate(), s["angpix"], places=4)
        self.assertTrue(out.hasCTF() and out.hasAlignmentProj())
        self.assertIn("per-frame B-factors", "\n".join(prot.summary()))
        opened = open_every_view(self.proj, prot)  # B-factors, scales, tracks, logfile.pdf
        self.assertEqual(sorted(opened), ["displayBfactors", "displayLogfile", "displayScales", "displayTracks"])

    def test_validation(self):
        prot = self.newProtocol(ProtPolishParticles, scale=101)
        errors = prot.validate()
        self.assertTrue(any("movies or corrected_micrographs.star" in e for e in errors), errors)
        self.assertTrue(any("post-process STAR file or a volume" in e for e in errors), errors)
        self.assertTrue(any("must be even" in e for e in errors), errors)
