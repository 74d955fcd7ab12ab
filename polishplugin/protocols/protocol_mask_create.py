"""ProtPolishMaskCreate: a soft solvent mask from a map (``polishplugin mask_create``, RELION
``relion_mask_create``): low-pass, threshold, extend, raised-cosine soft edge."""

from __future__ import annotations

import os
from enum import Enum

from pwem.objects import VolumeMask
from pyworkflow.protocol import params

from ..convert.scipion_objects import make_mask
from ._base import ProtPolishBase, formatFloat, mrc_path as _mrc_path

__all__ = ["ProtPolishMaskCreate", "OUTPUT_MASK"]

#: file name of the mask in the run's extra/ folder (RELION: MaskCreate/jobNNN/mask.mrc)
OUTPUT_MASK = "mask.mrc"




class ProtPolishMaskCreate(ProtPolishBase):
    """Create a soft solvent mask from a (refined) map, as RELION's Mask creation job: optional
    low-pass filter, initial binarisation threshold, extension by N pixels, soft cosine edge of N
    pixels.  Defaults are the RELION tutorial's values (15 Å, 0.005, 0, 6)."""

    _label = "mask creation"
    _devStatus = "NEW"

    class outputs(Enum):
        outputMask = VolumeMask

    _possibleOutputs = outputs

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume", label="Input 3D map",
                      help="Usually the refined map (not the post-processed one).")
        form.addParam("lowpass", params.FloatParam, default=15.0, label="Lowpass filter map (Å)",
                      help="Low-pass the map at this resolution before thresholding; <= 0: no filter.")
        form.addParam("samplingRate", params.FloatParam, default=-1.0, label="Pixel size (Å)",
                      help="-1: the input map's sampling rate.")
        form.addSection(label="Mask")
        form.addParam("iniThreshold", params.FloatParam, default=0.005, label="Initial binarisation threshold",
                      help="Voxels of the (filtered) map >= this value are in the initial mask.")
        form.addParam("extendInimask", params.FloatParam, default=0.0, label="Extend binary map this many pixels",
                      help="Grow (positive) or shrink (negative) the binary mask.")
        form.addParam("widthSoftEdge", params.FloatParam, default=6.0, label="Add a soft-edge of this many pixels",
                      help="Width of the raised-cosine edge outside the binary mask.")
        form.addParam("invert", params.BooleanParam, default=False, label="Invert the mask?")

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.runProgramStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -----------------------------
    def runProgramStep(self):
        self._runProgram("mask_create", self._programArgs())

    def createOutputStep(self):
        mask = make_mask(self._extra(OUTPUT_MASK), self._pixelSize())
        self._defineOutputs(**{self.outputs.outputMask.name: mask})
        self._defineSourceRelation(self.inputVolume, mask)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        errors = []
        volume = self.inputVolume.get()
        if volume is None:
            return ["Choose an input map."]
        path = _mrc_path(volume)
        if not path.endswith((".mrc", ".map", ".mrcs")):
            errors.append(f"The input map {path} is not an MRC file (.mrc/.map).")
        elif not os.path.exists(path):
            errors.append(f"The input map {path} does not exist.")
        if self.widthSoftEdge.get() < 0:
            errors.append("The soft-edge width must be >= 0 pixels.")
        return errors

    def _summary(self):
        if not self.hasAttribute(self.outputs.outputMask.name):
            return ["Mask not created yet."]
        return [f"Mask from {os.path.basename(_mrc_path(self.inputVolume.get()))}: low-pass "
                f"{self.lowpass.get():g} Å, threshold {self.iniThreshold.get():g}, extended "
                f"{self.extendInimask.get():g} px, soft edge {self.widthSoftEdge.get():g} px."]

    def _methods(self):
        return ["A solvent mask was made by low-pass filtering, thresholding and soft-edging the map "
                "(polishplugin mask_create, following RELION's relion_mask_create)."]

    # --------------------------- UTILS functions -----------------------------
    def _pixelSize(self) -> float:
        value = self.samplingRate.get()
        return float(value) if value and value > 0 else float(self.inputVolume.get().getSamplingRate())

    def _programArgs(self) -> list:
        """Command-line tokens for ``polishplugin mask_create`` (pure: form values -> list of str)."""
        args = ["--i", _mrc_path(self.inputVolume.get()), "--o", self._extra(OUTPUT_MASK),
                "--angpix", formatFloat(self._pixelSize()),
                "--lowpass", formatFloat(self.lowpass.get()),
                "--ini_threshold", formatFloat(self.iniThreshold.get(), 8),
                "--extend_inimask", formatFloat(self.extendInimask.get()),
                "--width_soft_edge", formatFloat(self.widthSoftEdge.get())]
        if self.invert.get():
            args.append("--invert")
        return args
