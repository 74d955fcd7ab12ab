"""ProtPolishTrain in a Scipion test project, on the simulator's tiny project (short search)."""

import os
import tempfile

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.tests.protocols.base import PolishProjectTestCase, setupTestProject  # noqa: E402

from polishplugin.protocols import ProtPolishParticles, ProtPolishTrain  # noqa: E402
from polishplugin.tests.protocols.viewer_lookup import open_every_view  # noqa: E402


class TestPolishTrain(PolishProjectTestCase):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        from polishplugin.programs.simulate import simulate_project

        cls.sim = simulate_project(tempfile.mkdtemp(prefix="train_sim_"), preset="tiny", seed=1)

    def test_train_and_point_polish_at_it(self):
        s = self.sim
        prot = self.newProtocol(ProtPolishTrain, objLabel="train (files)",
                                micrographsStar=str(s["corrected_micrographs"]), particlesStar=str(s["particles"]),
                                postprocessStar=str(s["postprocess"]), minParticles=20,
                                extraParams="--par_iters 3")
        args = prot._programArgs()
        self.assertIn("--params3", args)
        self.assertEqual(args[args.index("--eval_frac") + 1], "0.5")
        self.assertEqual(args[args.index("--min_p") + 1], "20")
        self.launchProtocol(prot)
        out = prot.outputParams
        self.assertTrue(os.path.exists(out.getFileName()))
        values = [float(v) for v in open(out.getFileName()).read().split()]
        self.assertAlmostEqual(out.sVel.get(), values[0])
        self.assertAlmostEqual(out.sDiv.get(), values[1])
        self.assertTrue(os.path.exists(prot.outputTscTrace.getFileName()))
        summary = "\n".join(prot.summary())
        self.assertIn("Optimised parameters: s_vel", summary)
        self.assertIn("evaluations", summary)
        opened = open_every_view(self.proj, prot)  # TSC trace, titled with the chosen sigmas
        self.assertIn(f"s_vel {out.sVel.get():g}", opened["displayTsc"][0].figure.axes[0].get_title())
        polish = self.newProtocol(ProtPolishParticles, paramsSource=0, trainingRun=prot)
        self.assertEqual(os.path.realpath(polish._paramsFile()), os.path.realpath(out.getFileName()))

    def test_validation(self):
        prot = self.newProtocol(ProtPolishTrain, evalFrac=0.95)
        errors = prot.validate()
        self.assertTrue(any("(0.1, 0.9]" in e for e in errors), errors)
        self.assertTrue(any("movies or corrected_micrographs.star" in e for e in errors), errors)
        self.assertTrue(any("post-process STAR file or a volume" in e for e in errors), errors)
