"""scipion-em-relion 5.0.2's refine and post-process outputs as inputs of our protocols (no RELION binaries).

Its ``ProtRelionRefine3D.createOutputStep`` runs on files laid out as ``relion_refine`` leaves them (the last
iteration's data.star written by its own particle writer from our imported particles, the class map, the
unfiltered half maps, the model STAR); its post-processing run's ``postprocess.star`` is the file our polishing
protocols take as reference.  Our post-processing, training and polishing protocols must accept those objects
(``_validate``), build RELION-compatible inputs from them, and a post-processing run must finish."""

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.tests.protocols.base import PolishProjectTestCase  # noqa: E402

pytest.importorskip("relion", reason="scipion-em-relion not installed")

from relion import convert as rconvert  # noqa: E402
from relion.protocols import ProtRelionPostprocess, ProtRelionRefine3D  # noqa: E402

from polishplugin.convert.scipion_objects import movies_to_micrographs, particles_to_table  # noqa: E402
from polishplugin.io import labels as L  # noqa: E402
from polishplugin.io.particles import read_particles, write_particles  # noqa: E402
from polishplugin.io.star import write_star  # noqa: E402
from polishplugin.programs import motion_refine  # noqa: E402
from polishplugin.programs._polish_project import load_project  # noqa: E402
from polishplugin.protocols import ProtPolishParticles, ProtPolishPostprocess, ProtPolishTrain  # noqa: E402
from polishplugin.tests.convert.test_relion_interop import import_tiny_project  # noqa: E402
from polishplugin.testing.tiny_project import ANGPIX, MOVIE_ANGPIX  # noqa: E402

LAST_ITER = 25


class TestRelionOutputsAsInputs(PolishProjectTestCase):
    @classmethod
    def setUpClass(cls):
        import_tiny_project(cls)
        f = cls.files
        refine = cls.newProtocol(ProtRelionRefine3D, objLabel="relion 3D auto-refine (outputs only)")
        refine.inputParticles.set(cls.imp.outputParticles)
        cls.proj.saveProtocol(refine)
        refine.makePathsAndClean()
        refine._initialize()
        # what relion_refine leaves in extra/: the last iteration's particles, class map, half maps, model
        rconvert.writeSetOfParticles(cls.imp.outputParticles, refine._getFileName("data", iter=LAST_ITER))
        shutil.copy(f["half1"], refine._getExtraPath("relion_class001.mrc"))
        shutil.copy(f["half1"], refine._getFileName("final_half1_volume", ref3d=1))
        shutil.copy(f["half2"], refine._getFileName("final_half2_volume", ref3d=1))
        shells = np.arange(9)
        write_star(refine._getExtraPath("relion_model.star"), {"model_class_1": pd.DataFrame({
            L.RESOLUTION: shells / (16 * ANGPIX), "rlnGoldStandardFsc": np.linspace(1.0, 0.0, 9)})})
        refine.createOutputStep()
        refine.setStatus("finished")
        cls.proj._storeProtocol(refine)
        cls.refine = refine
        # its post-processing run: the files our polishing protocols read (postprocess.star and the maps)
        post = cls.newProtocol(ProtRelionPostprocess, objLabel="relion post-processing (files only)")
        cls.proj.saveProtocol(post)
        post.makePathsAndClean()
        cls.post_star = post._getExtraPath("postprocess.star")
        shutil.copy(f["postprocess_star"], cls.post_star)
        cls.tiny_root = Path(f["root"])

    def test_refine_outputs(self):
        vol, parts = self.refine.outputVolume, self.refine.outputParticles
        self.assertTrue(vol.hasHalfMaps())
        self.assertEqual(parts.getSize(), self.files["n_particles"])
        self.assertTrue(parts.hasAlignmentProj())

    def _polishing(self, cls, **kwargs):
        return self.newProtocol(cls, inputMovies=self.imp.outputMovies, inputParticles=self.refine.outputParticles,
                                inputVolume=self.refine.outputVolume, **kwargs)

    def test_polishing_protocols_accept_refine_outputs(self):
        for cls, extra in ((ProtPolishTrain, {"minParticles": 10}), (ProtPolishParticles, {"paramsSource": 1})):
            prot = self._polishing(cls, **extra)
            self.assertEqual(prot.validate(), [], cls.__name__)
            args = prot._programArgs()
            for option, key in (("--m1", "final_half1_volume"), ("--m2", "final_half2_volume")):
                self.assertEqual(Path(args[args.index(option) + 1]).resolve(),
                                 Path(self.refine._getFileName(key, ref3d=1)).resolve())
            prot = self._polishing(cls, postprocessStar=self.post_star, **extra)
            self.assertEqual(prot.validate(), [], cls.__name__)
            self.assertIn("--f", prot._programArgs())

    def test_polishing_inputs_from_refine_outputs_load(self):
        # what ProtPolishParticles.convertInputStep writes from them, loaded by the polishing program
        out = Path(self.proj.getTmpPath("relion_refine_inputs")).resolve()
        mics = movies_to_micrographs(self.imp.outputMovies, out / "motion")
        table = particles_to_table(self.refine.outputParticles, movie_set=self.imp.outputMovies)
        write_particles(out / "input_particles.star", table)
        original = read_particles(self.files["particles_star"])
        self.assertEqual(sorted(set(table.particles[L.MICROGRAPH_NAME])),
                         sorted(set(original.particles[L.MICROGRAPH_NAME])))
        for label in ("rlnNormCorrection", "rlnMaxValueProbDistribution", L.RANDOM_SUBSET):
            if label in original.particles.columns:
                np.testing.assert_allclose(table.particles[label].to_numpy(dtype=float),
                                           original.particles[label].to_numpy(dtype=float), rtol=1e-5)
        o0, o1 = original.optics.iloc[0], table.optics.iloc[0]
        self.assertAlmostEqual(float(o1[L.MICROGRAPH_ORIGINAL_PIXEL_SIZE]), MOVIE_ANGPIX)
        self.assertAlmostEqual(float(o1[L.IMAGE_PIXEL_SIZE]), float(o0[L.IMAGE_PIXEL_SIZE]))
        self.assertTrue(Path(str(o1[L.MTF_FILE_NAME])).exists())
        parser = argparse.ArgumentParser()
        motion_refine.add_args(parser)
        h1, h2 = self.refine.outputVolume.getHalfMaps(asList=True)
        cwd = Path.cwd()
        try:  # protocols run in the Scipion project folder (particle stacks are named relative to it)
            os.chdir(self.proj.getPath())
            args = parser.parse_args(["--i", str(out / "input_particles.star"), "--corr_mic", str(mics.path),
                                      "--m1", str(Path(h1).resolve()), "--m2", str(Path(h2).resolve()),
                                      "--o", str(out / "Polish")])
            project = load_project(args)
        finally:
            os.chdir(cwd)
        self.assertEqual(len(project.mic_names), self.files["n_movies"])
        self.assertTrue(all(m.local_coeffs is not None for m in project.movies))

    def test_postprocess_runs_on_refine_volume(self):
        prot = self.newProtocol(ProtPolishPostprocess, objLabel="post-processing of a relion refine",
                                inputVolume=self.refine.outputVolume, mtfFile=str(self.files["mtf_star"]),
                                mtfPixelSize=MOVIE_ANGPIX, autoBfactor=False, adhocBfactor=-50.0)  # noise maps
        self.assertEqual(prot.validate(), [])
        args = prot._programArgs()
        half1, half2 = (str(Path(p).resolve()) for p in (args[args.index("--i") + 1], args[args.index("--i2") + 1]))
        self.assertEqual(Path(half1).name, "relion_half1_class001_unfil.mrc")
        self.assertEqual(Path(half2).name, "relion_half2_class001_unfil.mrc")
        self.assertEqual(float(args[args.index("--angpix") + 1]), ANGPIX)
        self.launchProtocol(prot)
        self.assertTrue(prot.outputVolume.hasHalfMaps())
        self.assertGreater(prot.outputFSCs.getSize(), 0)
