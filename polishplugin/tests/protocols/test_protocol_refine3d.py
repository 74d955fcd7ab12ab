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

    def test_relax_symmetry_field(self):
        """"Relax symmetry" D2 -> --relax_sym D2 (empty or C1: none); an unknown group is a form error."""
        self.assertNotIn("--relax_sym", self._local_prot(relaxSym="C1")._programArgs())
        prot = self._local_prot(relaxSym="D2", symmetryGroup="C2", localAngularSearch=True)
        args = prot._programArgs()
        self.assertEqual(args[args.index("--relax_sym") + 1], "D2")
        self.assertEqual(prot._validate(), [])
        prot.relaxSym.set("Q3")
        self.assertTrue(any(e.startswith("Relax symmetry Q3") for e in prot._validate()))

    # ------------------------------------- second mask, finer sampling faster, pre-read and scratch (RELION's names)
    def test_second_mask_finer_sampling_preread_and_scratch_fields(self):
        """"Second solvent mask" -> --flatten_solvent --solvent_mask2 (also without a reference mask: the sphere
        then the second mask); "Use finer angular sampling faster?" -> --auto_ignore_angles --auto_resol_angles;
        "Pre-read all particles into RAM?" -> --preread_images (then no scratch); "Copy particles to scratch
        directory" -> --scratch_dir DIR as one token; all off by default.  A second mask of another box or
        pixel size is a form error; the scratch options may change when a stopped run is continued."""
        from polishplugin.protocols.protocol_mask_create import _mrc_path
        from polishplugin.protocols.protocol_refine3d import _split_free

        plain = self._local_prot()._programArgs()
        for flag in ("--solvent_mask2", "--auto_ignore_angles", "--auto_resol_angles", "--preread_images",
                     "--scratch_dir"):
            self.assertNotIn(flag, plain)
        scratch = "/scratch/my dir; rm -rf x"  # one token for runJob, never through a shell
        prot = self.newProtocol(ProtPolishRefine3D, inputParticles=self.imp.outputParticles,
                                referenceVolume=self.imp.outputVolume, solventMask2=self.imp.outputMask,
                                useFinerAngularSampling=True, scratchDir=scratch)
        args = prot._programArgs()
        self.assertEqual(args[args.index("--solvent_mask2") + 1], _mrc_path(self.imp.outputMask))
        self.assertNotIn("--solvent_mask", args)
        for flag in ("--flatten_solvent", "--auto_ignore_angles", "--auto_resol_angles"):
            self.assertIn(flag, args)
        self.assertEqual(args[args.index("--scratch_dir") + 1], scratch)
        self.assertEqual(prot._validate(), [])
        prot.allParticlesRam.set(True)
        args = prot._programArgs()
        self.assertIn("--preread_images", args)
        self.assertNotIn("--scratch_dir", args)
        fixed, free = _split_free(["--j", "2", "--preread_images", "--scratch_dir", "/s", "--sym", "C1"])
        self.assertEqual((fixed, free), (["--sym", "C1"], ["--j", "2", "--preread_images", "--scratch_dir", "/s"]))

        import numpy as np
        from pwem.objects import VolumeMask
        from polishplugin.io.mrc import write_mrc

        folder = Path(tempfile.mkdtemp(prefix="polish_mask2_"))
        for name, box, apix, expected in (("box.mrc", BOX + 4, ANGPIX, f"is {BOX + 4} px wide, the particles {BOX} px"),
                                          ("apix.mrc", BOX, 2 * ANGPIX, f"has pixel size {2 * ANGPIX:g} Å")):
            write_mrc(folder / name, np.ones((box,) * 3, np.float32), apix)
            mask = VolumeMask(location=str(folder / name))
            mask.setSamplingRate(apix)
            prot.solventMask2.set(mask)
            errors = prot._validate()
            self.assertTrue(any(e.startswith(f"The second solvent mask {folder / name}") and expected in e
                                for e in errors), errors)

    # ------------------------------------------------------------- Scipion's "Continue" after a stop
    def test_continue_after_stop_reaches_the_uninterrupted_result(self):
        """A refine stopped after its first complete iteration and run again in Scipion's "Continue" mode
        goes on from run_it001_optimiser.star (or a later one) and ends with the maps and poses of the same
        refine run without interruption."""
        import time

        import numpy as np
        from pyworkflow.protocol.constants import MODE_RESUME

        from polishplugin.io import labels as L
        from polishplugin.io.mrc import read_mrc
        from polishplugin.io.star import read_star

        synth = write_synthetic_project(Path(tempfile.mkdtemp(prefix="polish_r3d_cont_")), box=32, n=40, sym="D2",
                                        snr=1.0, angpix=3.0)
        imp = self.newProtocol(ProtPolishImport, objLabel="import 40 particles", projectDir=str(synth["dir"]),
                               particlesStar=str(synth["star"]), requireMovies=False, checkStacks=True,
                               halfMap1=str(synth["ref"]), halfMap2=str(synth["ref"]), maskFile=str(synth["mask"]),
                               samplingRate=3.0)
        self.launchProtocol(imp)
        form = dict(inputParticles=imp.outputParticles, referenceVolume=imp.outputVolume,
                    referenceMask=imp.outputMask, maskDiameterA=76.8, initialLowPassFilterA=30.0,
                    offsetSearchRangePix=3.0, maxIterations=6, numberOfMpi=1)
        full = self.newProtocol(ProtPolishRefine3D, objLabel="uninterrupted", **form)
        self.launchProtocol(full)
        stopped = self.newProtocol(ProtPolishRefine3D, objLabel="stopped, then continued", **form)
        self.proj.launchProtocol(stopped, wait=False)
        deadline = time.time() + 300
        while not os.path.exists(stopped._getExtraPath("run_it001_optimiser.star")):
            self.assertLess(time.time(), deadline, "the refine wrote no iteration")
            time.sleep(0.05)
        self.proj.stopProtocol(stopped)
        self.assertFalse(os.path.exists(stopped._getExtraPath("run_class001.mrc")), "stopped too late to test")
        done = sorted(p.name for p in Path(stopped._getExtraPath()).glob("run_it*_optimiser.star"))
        stopped.runMode.set(MODE_RESUME)
        self.launchProtocol(stopped)
        with open(stopped.getLogPaths()[0]) as f:
            self.assertIn(f"Continuing the refine from {stopped._getExtraPath(done[-1])}", f.read())
        for name in ("run_class001.mrc", "run_half1_class001_unfil.mrc", "run_half2_class001_unfil.mrc"):
            a, b = (read_mrc(p._getExtraPath(name))[0] for p in (full, stopped))
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max(), err_msg=name)
        da, db = (read_star(p._getExtraPath("run_data.star"))["particles"] for p in (full, stopped))
        for col in (L.ANGLE_ROT, L.ANGLE_TILT, L.ANGLE_PSI, L.ORIGIN_X_ANGST, L.ORIGIN_Y_ANGST):
            np.testing.assert_allclose(db[col].to_numpy(float), da[col].to_numpy(float), atol=1e-4, err_msg=col)
        self.assertEqual(stopped.outputParticles.getSize(), 40)

    def test_run_step_continues_only_the_same_refine(self):
        """runProgramStep: with a complete iteration in extra/ and the same arguments (threads, device and
        maximum iterations may differ) it continues from the newest optimiser file; with other arguments, or
        none recorded, it starts again and removes the earlier run's files."""
        prot = self._local_prot()
        extra = Path(prot._getExtraPath())
        extra.mkdir(parents=True, exist_ok=True)
        calls = []
        prot._runProgram = lambda command, args: calls.append((command, list(args)))
        args = prot._programArgs()
        for it in (1, 2):
            (extra / f"run_it00{it}_optimiser.star").write_text("data_\n")
        prot.runProgramStep(args)  # nothing recorded: a fresh start, the stale files removed
        self.assertEqual(calls[-1], ("refine3d", args))
        self.assertFalse(list(extra.glob("run_*")))
        (extra / "run_it001_optimiser.star").write_text("data_\n")
        (extra / "run_it002_optimiser.star").write_text("data_\n")
        more = list(args)
        more[more.index("--j") + 1] = "8"
        prot.runProgramStep(more)
        self.assertEqual(calls[-1][1][:4], ["--continue", prot._getExtraPath("run_it002_optimiser.star"), "--o",
                                            prot._getExtraPath("run")])
        self.assertEqual(calls[-1][1][4:], ["--iter", "999", "--j", "8"])
        changed = list(args)
        changed[changed.index("--ini_high") + 1] = "40"
        prot.runProgramStep(changed)
        self.assertEqual(calls[-1][1], changed)
        self.assertFalse(list(extra.glob("run_*")))
