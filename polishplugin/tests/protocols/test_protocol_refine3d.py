"""ProtPolishRefine3D in a Scipion test project: outputs (Volume with half maps, particles, FSC) with
the right sampling rate, size and relations; ``_programArgs`` tokens from the seed's field values."""

import os
import tempfile
from pathlib import Path

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.tests.protocols.base import PolishProjectTestCase, setupTestProject  # noqa: E402

from polishplugin.protocols import ProtPolishImport, ProtPolishRefine3D  # noqa: E402
from polishplugin.tests.protocols.viewer_lookup import open_every_view  # noqa: E402
from polishplugin.tests.programs.test_refine3d import write_synthetic_project  # noqa: E402

BOX = 16
ANGPIX = 6.0


class TestPolishRefine3D(PolishProjectTestCase):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.synth = write_synthetic_project(Path(tempfile.mkdtemp(prefix="polish_r3d_")), box=BOX, n=8, sym="D2",
                                           snr=2.0, angpix=ANGPIX)
        folder = str(cls.synth["dir"])
        cls.imp = cls.newProtocol(ProtPolishImport, objLabel="import particles and map", projectDir=folder,
                                  particlesStar=str(cls.synth["star"]), requireMovies=False, checkStacks=True,
                                  halfMap1=str(cls.synth["ref"]), halfMap2=str(cls.synth["ref"]),
                                  maskFile=str(cls.synth["mask"]), samplingRate=ANGPIX)
        cls.launchProtocol(cls.imp)

    def test_program_args_follow_the_seed_fields(self):
        prot = self.newProtocol(ProtPolishRefine3D, inputParticles=self.imp.outputParticles,
                                referenceVolume=self.imp.outputVolume, referenceMask=self.imp.outputMask)
        args = prot._programArgs()
        value = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}
        self.assertEqual(value["--ini_high"], "50")
        self.assertEqual(value["--sym"], "D2")
        self.assertEqual(value["--particle_diameter"], "200")
        self.assertEqual(value["--healpix_order"], "2")  # "7.5 degrees"
        self.assertEqual(value["--auto_local_healpix_order"], "4")  # "1.8 degrees"
        self.assertEqual(value["--offset_range"], "5")
        self.assertEqual(value["--offset_step"], "2")  # 1 px x 2 (oversampling 1)
        for flag in ("--ctf", "--ctf_corrected_ref", "--zero_mask", "--flatten_solvent", "--solvent_correct_fsc"):
            self.assertIn(flag, args)
        for flag in ("--firstiter_cc", "--ctf_phase_flipped", "--ctf_intact_first_peak"):
            self.assertNotIn(flag, args)
        for flag in ("--norm", "--scale"):  # always, as RELION's GUI
            self.assertIn(flag, args)
        self.assertNotIn("--device", args)  # empty field: the program's default device
        prot.clDevice.set("cpu")
        self.assertEqual(prot._programArgs()[-2:], ["--device", "cpu"])

    def test_refine_outputs(self):
        prot = self.newProtocol(ProtPolishRefine3D, inputParticles=self.imp.outputParticles,
                                referenceVolume=self.imp.outputVolume, referenceMask=self.imp.outputMask,
                                maskDiameterA=0.8 * BOX * ANGPIX, angularSamplingDeg=1, initialLowPassFilterA=30.0,
                                offsetSearchRangePix=2.0, maxIterations=2, numberOfMpi=1)
        self.launchProtocol(prot)
        vol = prot.outputVolume
        self.assertAlmostEqual(vol.getSamplingRate(), ANGPIX)
        self.assertEqual(vol.getDim(), (BOX, BOX, BOX))
        self.assertTrue(vol.hasHalfMaps())
        for half in vol.getHalfMaps().split(","):
            self.assertTrue(os.path.exists(half))
        self.assertEqual(prot.outputParticles.getSize(), 8)
        self.assertEqual(prot.outputFSCs.getSize(), 1)
        opened = open_every_view(self.proj, prot)  # FSC and progress per iteration, angular distribution, slices
        self.assertEqual(len(opened), 4)
