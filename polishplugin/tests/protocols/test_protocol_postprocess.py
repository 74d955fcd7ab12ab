"""ProtPolishMaskCreate and ProtPolishPostprocess in a Scipion test project: outputs registered with
the right sampling rate, sizes and relations; ``_programArgs`` tokens; bad input caught by _validate."""

import os
import tempfile

import numpy as np

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.tests.protocols.base import PolishProjectTestCase, setupTestProject  # noqa: E402

from polishplugin.io.mrc import write_mrc  # noqa: E402
from polishplugin.io.postprocess import read_postprocess  # noqa: E402
from polishplugin.core.filters import raised_cosine_sphere  # noqa: E402
from polishplugin.core.fourier import irfft, radius_grid, rfft  # noqa: E402
from polishplugin.protocols import ProtPolishImport, ProtPolishMaskCreate, ProtPolishPostprocess  # noqa: E402
from polishplugin.tests.protocols.viewer_lookup import open_every_view  # noqa: E402

BOX = 32
ANGPIX = 1.5


def _write_maps(root):
    """Planted half maps (blurred white signal in a sphere + white noise), an MTF file."""
    rng = np.random.default_rng(3)
    shape = (BOX,) * 3
    sphere = raised_cosine_sphere(shape, 9.0, 3.0)
    s = radius_grid(shape) / (BOX * ANGPIX)
    signal = irfft(rfft(rng.standard_normal(shape) * sphere) * np.exp(-50.0 / 4 * s * s), shape)
    signal /= signal.std()
    files = {"half1": os.path.join(root, "run_half1_class001_unfil.mrc"),
             "half2": os.path.join(root, "run_half2_class001_unfil.mrc"),
             "mtf": os.path.join(root, "mtf_test.star")}
    write_mrc(files["half1"], signal + 1.0 * rng.standard_normal(shape), ANGPIX)
    write_mrc(files["half2"], signal + 1.0 * rng.standard_normal(shape), ANGPIX)
    rows = "".join(f"{x:.4f} {1.0 - 0.5 * x:.6f}\n" for x in np.linspace(0, 0.5, 11))
    with open(files["mtf"], "w") as fh:
        fh.write("data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n" + rows)
    return files


class TestPolishPostprocess(PolishProjectTestCase):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.files = _write_maps(tempfile.mkdtemp(prefix="polish_pp_"))
        cls.imp = cls.newProtocol(ProtPolishImport, objLabel="import half maps",
                                  halfMap1=cls.files["half1"], halfMap2=cls.files["half2"])
        cls.launchProtocol(cls.imp)

    def test_mask_then_postprocess(self):
        mask_prot = self.newProtocol(ProtPolishMaskCreate, inputVolume=self.imp.outputVolume,
                                     lowpass=10.0, iniThreshold=0.5, extendInimask=1, widthSoftEdge=3)
        self.assertEqual(mask_prot._programArgs()[-8:], ["--lowpass", "10", "--ini_threshold", "0.5",
                                                         "--extend_inimask", "1", "--width_soft_edge", "3"])
        self.launchProtocol(mask_prot)
        open_every_view(self.proj, mask_prot)  # mask-creation and import runs: map and mask slices
        open_every_view(self.proj, self.imp)
        mask = mask_prot.outputMask
        self.assertAlmostEqual(mask.getSamplingRate(), ANGPIX)
        self.assertEqual(mask.getDim(), (BOX, BOX, BOX))

        prot = self.newProtocol(ProtPolishPostprocess, inputVolume=self.imp.outputVolume,
                                solventMask=mask_prot.outputMask, mtfFile=self.files["mtf"],
                                mtfPixelSize=1.0, autoBfactor=True, autobLowres=10.0)
        args = prot._programArgs()
        self.assertEqual(args[:4], ["--i", self.files["half1"], "--i2", self.files["half2"]])
        self.assertIn("--auto_bfac", args)
        self.assertEqual(args[args.index("--mtf_angpix") + 1], "1")
        self.launchProtocol(prot)

        vol = prot.outputVolume
        self.assertAlmostEqual(vol.getSamplingRate(), ANGPIX)
        self.assertEqual(vol.getDim(), (BOX, BOX, BOX))
        self.assertTrue(vol.hasHalfMaps())
        self.assertTrue(os.path.exists(prot.outputVolumeMasked.getFileName()))
        fscs = prot.outputFSCs
        self.assertEqual(fscs.getSize(), 4)
        labels = sorted(f.getObjLabel() for f in fscs)
        self.assertEqual(labels, sorted(["corrected", "unmasked", "masked", "phase-randomised masked"]))
        post = read_postprocess(prot._getExtraPath("postprocess.star"))
        self.assertLess(post.bfactor_a2, 0)
        self.assertTrue(any("Final resolution" in line for line in prot.summary()))
        self.assertTrue(os.path.exists(prot._getExtraPath("logfile.pdf")))
        self._checkViewer(prot)

    def _checkViewer(self, prot):
        """Post-processing plots (FSC, Guinier, slices) through "Analyze results"; PNGs without Scipion."""
        from polishplugin.io.mrc import read_mrc
        from polishplugin.plots.postprocess import save_postprocess_pngs
        opened = open_every_view(self.proj, prot)
        self.assertEqual(sorted(opened), ["displayFsc", "displayGuinier", "displaySlices"])
        out = tempfile.mkdtemp(prefix="polish_pp_png_")
        written = save_postprocess_pngs(prot._getExtraPath("postprocess.star"), out,
                                        {"sharpened": read_mrc(prot._getExtraPath("postprocess.mrc"))[0]})
        self.assertEqual([os.path.basename(p) for p in written], ["fsc.png", "guinier.png", "slices.png"])

    def test_program_args_adhoc_and_skip_weighting(self):
        prot = self.newProtocol(ProtPolishPostprocess, inputVolume=self.imp.outputVolume, autoBfactor=False,
                                adhocBfactor=-150.0, skipFscWeighting=True, lowPass=4.5,
                                calibratedPixelSize=1.244)
        args = prot._programArgs()
        self.assertEqual(args[args.index("--angpix") + 1], "1.244")
        self.assertEqual(args[args.index("--adhoc_bfac") + 1], "-150")
        self.assertEqual(args[-3:], ["--skip_fsc_weighting", "--low_pass", "4.5"])
        self.assertNotIn("--mask", args)
        self.assertNotIn("--auto_bfac", args)

    def test_validate_mask_of_other_shape(self):
        path = os.path.join(os.path.dirname(self.files["half1"]), "small_mask.mrc")
        write_mrc(path, np.ones((BOX // 2,) * 3), ANGPIX)
        imp = self.newProtocol(ProtPolishImport, objLabel="import small mask", maskFile=path)
        self.launchProtocol(imp)
        prot = self.newProtocol(ProtPolishPostprocess, inputVolume=self.imp.outputVolume,
                                solventMask=imp.outputMask)
        errors = prot.validate()
        self.assertTrue(any(path in e and "shape" in e for e in errors), errors)

    def test_validate_missing_mtf(self):
        prot = self.newProtocol(ProtPolishPostprocess, inputVolume=self.imp.outputVolume,
                                mtfFile="/nonexistent/mtf.star")
        errors = prot.validate()
        self.assertTrue(any("/nonexistent/mtf.star" in e for e in errors), errors)
