"""ProtPolishLocalRes in a Scipion test project: outputs registered (sampling, size, relations),
``_programArgs`` tokens, bad input caught by _validate, the viewer's PNGs."""

import os
import tempfile

import numpy as np

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.tests.protocols.base import PolishProjectTestCase, setupTestProject  # noqa: E402

from polishplugin.io.mrc import read_mrc, write_mrc  # noqa: E402
from polishplugin.testing.planted_maps import two_resolution_half_maps as planted_half_maps  # noqa: E402
from polishplugin.protocols import ProtPolishImport, ProtPolishLocalRes  # noqa: E402
from polishplugin.tests.protocols.viewer_lookup import open_every_view  # noqa: E402

BOX = 32
ANGPIX = 1.5


def _write_maps(root):
    half1, half2, _ = planted_half_maps(BOX, ANGPIX, (4.0, 8.0), noise=0.45, seed=2)
    files = {"half1": os.path.join(root, "run_half1_class001_unfil.mrc"),
             "half2": os.path.join(root, "run_half2_class001_unfil.mrc"),
             "mask": os.path.join(root, "mask.mrc")}
    write_mrc(files["half1"], half1, ANGPIX)
    write_mrc(files["half2"], half2, ANGPIX)
    write_mrc(files["mask"], np.ones((BOX,) * 3, np.float32), ANGPIX)
    return files


class TestPolishLocalRes(PolishProjectTestCase):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.files = _write_maps(tempfile.mkdtemp(prefix="polish_locres_"))
        cls.imp = cls.newProtocol(ProtPolishImport, objLabel="import half maps",
                                  halfMap1=cls.files["half1"], halfMap2=cls.files["half2"],
                                  maskFile=cls.files["mask"])
        cls.launchProtocol(cls.imp)

    def test_local_resolution_runs(self):
        prot = self.newProtocol(ProtPolishLocalRes, inputVolume=self.imp.outputVolume,
                                solventMask=self.imp.outputMask, sampling=12.0, bfactor=-50.0)
        args = prot._programArgs()
        self.assertEqual(args[:4], ["--i", self.files["half1"], "--i2", self.files["half2"]])
        self.assertEqual(args[args.index("--locres_sampling") + 1], "12")
        self.assertEqual(args[args.index("--adhoc_bfac") + 1], "-50")
        self.assertEqual(args[args.index("--mode") + 1], "fast")
        self.assertIn("--mask", args)
        self.launchProtocol(prot)

        locres = prot.outputLocalResolution
        filtered = prot.outputVolumeFiltered
        for vol in (locres, filtered):
            self.assertAlmostEqual(vol.getSamplingRate(), ANGPIX)
            self.assertEqual(vol.getDim(), (BOX, BOX, BOX))
        data, angpix = read_mrc(locres.getFileName())
        self.assertAlmostEqual(angpix, ANGPIX, places=4)
        inside = data[data > 0]
        self.assertGreater(inside.size, 0)
        self.assertTrue(np.all((inside >= 2 * ANGPIX - 1e-4) & (inside <= 50.0 + 1e-4)))
        for suffix in ("_locres_fscs.star", "_histogram.png", "_histogram.pdf", "_chimerax.cxc"):
            self.assertTrue(os.path.exists(prot._getExtraPath("relion" + suffix)), suffix)
        self.assertTrue(any("median" in line for line in prot.summary()))
        self._checkViewer(prot)

    def _checkViewer(self, prot):
        """Histogram, coloured slices and the ChimeraX script through "Analyze results"."""
        opened = open_every_view(self.proj, prot)
        script = opened["displayChimerax"][0].getFileList()[0]
        self.assertTrue(script.endswith("_chimerax.cxc"), script)

    def test_validate_sampling_larger_than_box(self):
        prot = self.newProtocol(ProtPolishLocalRes, inputVolume=self.imp.outputVolume, sampling=100.0)
        errors = prot.validate()
        self.assertTrue(any("larger than the box" in e for e in errors), errors)

    def test_validate_missing_mtf_and_exact_args(self):
        prot = self.newProtocol(ProtPolishLocalRes, inputVolume=self.imp.outputVolume,
                                mtfFile="/nonexistent/mtf.star", exactMode=True, calibratedPixelSize=1.244)
        errors = prot.validate()
        self.assertTrue(any("/nonexistent/mtf.star" in e for e in errors), errors)
        args = prot._programArgs()
        self.assertEqual(args[args.index("--mode") + 1], "exact")
        self.assertEqual(args[args.index("--angpix") + 1], "1.244")
