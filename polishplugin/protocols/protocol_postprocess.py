"""ProtPolishPostprocess: sharpening, mask-corrected FSC and resolution (``polishplugin postprocess``,
RELION ``relion_postprocess``), for a Volume with half maps from any 3D-refine protocol."""

from __future__ import annotations

import os

from pwem.objects import SetOfFSCs, Volume
from pyworkflow.protocol import params

from ..io import labels as L
from ..io.mrc import MrcError, read_mrc_header
from ..io.postprocess import postprocess_paths, read_postprocess
from ..convert.scipion_objects import make_fsc, make_volume
from ._base import HalfMapInputs, ProtPolishBase, formatFloat, mrc_path as _mrc_path

__all__ = ["ProtPolishPostprocess", "OUTPUT_ROOT", "FSC_COLUMNS"]

#: output root in the run's extra/ folder (RELION: PostProcess/jobNNN/postprocess)
OUTPUT_ROOT = "postprocess"
#: FSC curves registered as outputs: label -> postprocess.star column
FSC_COLUMNS = {
    "corrected": L.FOURIER_SHELL_CORRELATION_CORRECTED,
    "unmasked": L.FOURIER_SHELL_CORRELATION_UNMASKED_MAPS,
    "masked": L.FOURIER_SHELL_CORRELATION_MASKED_MAPS,
    "phase-randomised masked": L.CORRECTED_FOURIER_SHELL_CORRELATION_PHASE_RANDOMIZED_MASKED_MAPS,
}


class ProtPolishPostprocess(HalfMapInputs, ProtPolishBase):
    """Post-process a refined map from its two unfiltered half maps: mask-corrected FSC (phase
    randomisation), resolution at FSC 0.143, MTF correction, FSC weighting and B-factor sharpening
    (automatic Guinier fit or your own), as RELION's Post-processing job."""

    _label = "post-processing"
    _devStatus = "NEW"

    # a dict, not an Enum: two outputs share the class Volume (an Enum would make them aliases)
    OUTPUT_VOLUME = "outputVolume"
    OUTPUT_VOLUME_MASKED = "outputVolumeMasked"
    OUTPUT_FSCS = "outputFSCs"
    _possibleOutputs = {OUTPUT_VOLUME: Volume, OUTPUT_VOLUME_MASKED: Volume, OUTPUT_FSCS: SetOfFSCs}

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume",
                      label="Refined map (with half maps)",
                      help="Output map of a 3D auto-refine (ours, RELION's or any other) that carries "
                           "its two unfiltered half maps.")
        form.addParam("solventMask", params.PointerParam, pointerClass="VolumeMask", allowsNull=True,
                      label="Solvent mask", help="Soft mask (values in [0, 1]); empty: no mask.")
        form.addParam("calibratedPixelSize", params.FloatParam, default=-1.0, label="Calibrated pixel size (Å)",
                      help="-1: the input map's sampling rate.")
        form.addSection(label="Sharpen")
        form.addParam("mtfFile", params.FileParam, default="", label="MTF of the detector (STAR file)",
                      help="RELION MTF STAR file (rlnResolutionInversePixel, rlnMtfValue); empty: no MTF.")
        form.addParam("mtfPixelSize", params.FloatParam, default=-1.0, label="Original detector pixel size (Å)",
                      condition="mtfFile", help="Pixel size of the MTF's detector; -1: the map's pixel size.")
        form.addParam("autoBfactor", params.BooleanParam, default=True, label="Estimate B-factor automatically?")
        form.addParam("autobLowres", params.FloatParam, default=10.0, condition="autoBfactor",
                      label="Lowest resolution for auto-B fit (Å)")
        form.addParam("autobHighres", params.FloatParam, default=0.0, condition="autoBfactor",
                      label="Highest resolution for auto-B fit (Å)", expertLevel=params.LEVEL_ADVANCED,
                      help="0: Nyquist.")
        form.addParam("adhocBfactor", params.FloatParam, default=-1000.0, condition="not autoBfactor",
                      label="User-provided B-factor (Å²)", help="Negative values sharpen.")
        form.addSection(label="Filter")
        form.addParam("skipFscWeighting", params.BooleanParam, default=False, label="Skip FSC-weighting?")
        form.addParam("lowPass", params.FloatParam, default=5.0, condition="skipFscWeighting",
                      label="Ad-hoc low-pass filter (Å)", help="Negative: the FSC 0.143 resolution.")
        form.addParam("randomSeed", params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED,
                      label="Random seed", help="Seed of the phase randomisation.")

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.runProgramStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -----------------------------
    def runProgramStep(self):
        self._runProgram("postprocess", self._programArgs())

    def createOutputStep(self):
        paths = self._outputPaths()
        post = read_postprocess(paths["star"])
        angpix = self._pixelSize()
        half1, half2 = self._halfMaps()
        outputs = {self.OUTPUT_VOLUME: make_volume(paths["map"], angpix, half1, half2)}
        if os.path.exists(paths["masked"]):
            outputs[self.OUTPUT_VOLUME_MASKED] = make_volume(paths["masked"], angpix)
        fscs = self._createSetOfFSCs()
        for label, column in FSC_COLUMNS.items():
            if column in post.fsc.columns:
                fscs.append(make_fsc(*post.fsc_curve(column), label=label))
        outputs[self.OUTPUT_FSCS] = fscs
        self._defineOutputs(**outputs)
        for obj in outputs.values():
            self._defineSourceRelation(self.inputVolume, obj)
            if self.solventMask.get() is not None:
                self._defineSourceRelation(self.solventMask, obj)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        volume = self.inputVolume.get()
        errors = self._validateHalfMapInputs("post-processing")
        if volume is None or not volume.hasHalfMaps():
            return errors
        return errors or self._validateShapes()

    def _validateShapes(self):
        """Half maps of one shape and pixel size, a mask of the same shape (headers only)."""
        half1, half2 = self._halfMaps()
        try:
            (shape1, apix1), (shape2, apix2) = read_mrc_header(half1), read_mrc_header(half2)
            errors = []
            if shape1 != shape2:
                errors.append(f"The half maps {half1} and {half2} have different shapes {shape1} and {shape2}.")
            elif apix1 > 0 and apix2 > 0 and abs(apix1 - apix2) > 1e-3 * max(apix1, apix2):
                errors.append(f"The half maps {half1} ({apix1:g} Å) and {half2} ({apix2:g} Å) have "
                              "different pixel sizes.")
            mask = self.solventMask.get()
            if mask is not None and read_mrc_header(_mrc_path(mask))[0] != shape1:
                errors.append(f"The mask {_mrc_path(mask)} has shape {read_mrc_header(_mrc_path(mask))[0]}, "
                              f"the half maps {shape1}.")
        except MrcError as exc:
            errors = [str(exc)]
        return errors

    def _summary(self):
        path = self._outputPaths()["star"]
        if not os.path.exists(path):
            return ["Post-processing not finished yet."]
        post = read_postprocess(path)
        lines = [f"Final resolution (FSC 0.143): {post.final_resolution_a:.2f} Å",
                 f"B-factor used for sharpening: {post.bfactor_a2:.2f} Å²"]
        if L.CORRELATION_FIT_GUINIER_PLOT in post.general:
            lines.append(f"Guinier fit correlation: {float(post.general[L.CORRELATION_FIT_GUINIER_PLOT]):.3f}")
        return lines

    def _methods(self):
        return ["The map was post-processed with polishplugin (RELION relion_postprocess method): "
                "mask-corrected gold-standard FSC with phase randomisation, resolution at FSC = 0.143, "
                "MTF correction, FSC weighting and B-factor sharpening."]

    # --------------------------- UTILS functions -----------------------------
    def _outputPaths(self) -> dict:
        """The program's output files (RELION names) in the run's extra/ folder."""
        return postprocess_paths(self._extra(OUTPUT_ROOT))

    def _programArgs(self) -> list:
        """Command-line tokens for ``polishplugin postprocess`` (pure: form values -> list of str)."""
        half1, half2 = self._halfMaps()
        args = ["--i", half1, "--i2", half2, "--o", self._extra(OUTPUT_ROOT),
                "--angpix", formatFloat(self._pixelSize())]
        if self.solventMask.get() is not None:
            args += ["--mask", _mrc_path(self.solventMask.get())]
        if self.mtfFile.get():
            args += ["--mtf", os.path.abspath(self.mtfFile.get())]
            if self.mtfPixelSize.get() and self.mtfPixelSize.get() > 0:
                args += ["--mtf_angpix", formatFloat(self.mtfPixelSize.get())]
        if self.autoBfactor.get():
            args += ["--auto_bfac", "--autob_lowres", formatFloat(self.autobLowres.get())]
            if self.autobHighres.get():
                args += ["--autob_highres", formatFloat(self.autobHighres.get())]
        else:
            args += ["--adhoc_bfac", formatFloat(self.adhocBfactor.get())]
        if self.skipFscWeighting.get():
            args += ["--skip_fsc_weighting", "--low_pass", formatFloat(self.lowPass.get())]
        if self.randomSeed.get():
            args += ["--random_seed", str(self.randomSeed.get())]
        return args

