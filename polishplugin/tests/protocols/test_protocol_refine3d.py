"""ProtPolishRefine3D in a Scipion test project: outputs (Volume with half maps, particles, FSC) with
the right sampling rate, size and relations; ``_programArgs`` tokens from the seed's field values."""

import os
import tempfile
from pathlib import Path

from polishplugin.testing.scipion import require_scipion

require_scipion()

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from polishplugin.protocols import ProtPolishImport, ProtPolishRefine3D  # noqa: E402
from polishplugin.tests.programs.test_refine3d import write_synthetic_project  # noqa: E402

BOX = 16
ANGPIX = 6.0


class TestPolishRefine3D(BaseTest):
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

    # ---------------------------------------------------- local angular search (scipion-em-relion's names)
    def _local_prot(self, **kwargs):
        return self.newProtocol(ProtPolishRefine3D, inputParticles=self.imp.outputParticles,
                                referenceVolume=self.imp.outputVolume, referenceMask=self.imp.outputMask, **kwargs)

    def test_local_search_gives_sigma_ang_and_the_local_order(self):
        """"Perform local angular search?" with "Local angular search range" 4.5 deg -> --sigma_ang 1.5; the
        first iteration samples at "Local searches from auto-sampling" (0.9 degrees = order 5), which
        RELION makes local from the start.  Off (the default): no --sigma_ang, the initial sampling."""
        self.assertNotIn("--sigma_ang", self._local_prot()._programArgs())
        prot = self._local_prot(localAngularSearch=True, localAngularSearchRange=4.5, localSearchAutoSamplingDeg=5,
                                angularSamplingDeg=2)
        args = prot._programArgs()
        value = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}
        self.assertEqual(value["--sigma_ang"], "1.5")
        self.assertEqual(value["--healpix_order"], "5")
        self.assertEqual(value["--auto_local_healpix_order"], "5")
        self.assertEqual(prot._validate(), [])  # the imported particles carry their orientations
        prot.localAngularSearchRange.set(0.0)
        self.assertTrue(any("range must be positive" in e for e in prot._validate()))
