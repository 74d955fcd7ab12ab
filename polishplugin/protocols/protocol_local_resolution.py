"""ProtPolishLocalRes: local resolution by local masked FSCs (``polishplugin local_resolution``, RELION
``relion_postprocess --locres``) for a Volume with half maps from any 3D-refine protocol."""

from __future__ import annotations

import os

import numpy as np
from pwem.objects import Volume
from pyworkflow.protocol import params

from ..io.local_resolution import locres_paths
from ..io.mrc import read_mrc
from ..plots.local_resolution import histogram_values
from ..convert.scipion_objects import make_volume
from ._base import HalfMapInputs, ProtPolishBase, formatFloat, mrc_path as _mrc_path

__all__ = ["ProtPolishLocalRes", "OUTPUT_ROOT"]

#: output root in the run's extra/ folder (RELION: LocalRes/jobNNN/relion)
OUTPUT_ROOT = "relion"


class ProtPolishLocalRes(HalfMapInputs, ProtPolishBase):
    """Estimate the local resolution from the two unfiltered half maps: a soft spherical mask moved
    on a grid, local FSC corrected by phase randomisation, FSC 0.143; also writes a locally
    FSC-weighted, low-pass filtered and sharpened map (RELION's LocalRes job, own implementation)."""

    _label = "local resolution"
    _devStatus = "NEW"

    OUTPUT_LOCRES = "outputLocalResolution"
    OUTPUT_FILTERED = "outputVolumeFiltered"
    _possibleOutputs = {OUTPUT_LOCRES: Volume, OUTPUT_FILTERED: Volume}

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume",
                      label="Refined map (with half maps)",
                      help="Output map of a 3D auto-refine (ours, RELION's or any other) that carries its "
                           "two unfiltered half maps.")
        form.addParam("solventMask", params.PointerParam, pointerClass="VolumeMask", allowsNull=True,
                      label="Mask (for the histogram)",
                      help="Voxels with mask > 0.5 make the local-resolution histogram; the local FSCs do "
                           "not use it (as RELION).")
        form.addParam("sharpenedMap", params.PointerParam, pointerClass="Volume", allowsNull=True,
                      label="Sharpened map (for ChimeraX)",
                      help="E.g. the post-processing output; the ChimeraX script colours it by local "
                           "resolution. Empty: the locally filtered map.")
        form.addParam("calibratedPixelSize", params.FloatParam, default=-1.0, label="Calibrated pixel size (Å)",
                      help="-1: the input map's sampling rate.")
        form.addSection(label="Sharpen")
        form.addParam("bfactor", params.FloatParam, default=-100.0, label="User-provided B-factor (Å²)",
                      help="Applied to the locally filtered map; negative values sharpen (RELION GUI: -100).")
        form.addParam("mtfFile", params.FileParam, default="", label="MTF of the detector (STAR file)",
                      help="RELION MTF STAR file (rlnResolutionInversePixel, rlnMtfValue); empty: no MTF.")
        form.addParam("mtfPixelSize", params.FloatParam, default=-1.0, label="Original detector pixel size (Å)",
                      condition="mtfFile", help="-1: the map's pixel size (what RELION's GUI passes).")
        form.addSection(label="Local resolution")
        form.addParam("sampling", params.FloatParam, default=25.0, label="Sampling (Å)",
                      help="Distance between the points where the local FSC is computed.")
        form.addParam("maskRadius", params.FloatParam, default=-1.0, expertLevel=params.LEVEL_ADVANCED,
                      label="Mask radius (Å)", help="-1: half the sampling.")
        form.addParam("edgeWidth", params.FloatParam, default=-1.0, expertLevel=params.LEVEL_ADVANCED,
                      label="Mask edge width (Å)", help="-1: the sampling.")
        form.addParam("randomizeAt", params.FloatParam, default=25.0, expertLevel=params.LEVEL_ADVANCED,
                      label="Randomise phases from (Å)")
        form.addParam("minRes", params.FloatParam, default=50.0, expertLevel=params.LEVEL_ADVANCED,
                      label="Lowest local resolution (Å)")
        form.addParam("exactMode", params.BooleanParam, default=False, expertLevel=params.LEVEL_ADVANCED,
                      label="Exact (RELION full-box) mode?",
                      help="No (default): FSCs in small windows around each point (same answer, much "
                           "faster). Yes: 4 full-box FFTs per point like RELION.")
        form.addParam("randomSeed", params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED,
                      label="Random seed", help="Seed of the phase randomisation.")
        form.addParallelSection(threads=1, mpi=1)

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.runProgramStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -----------------------------
    def runProgramStep(self):
        self._runProgram("local_resolution", self._programArgs())

    def createOutputStep(self):
        angpix = self._pixelSize()
        paths = locres_paths(self._extra(OUTPUT_ROOT))
        outputs = {self.OUTPUT_LOCRES: make_volume(paths["locres"], angpix),
                   self.OUTPUT_FILTERED: make_volume(paths["filtered"], angpix)}
        self._defineOutputs(**outputs)
        for obj in outputs.values():
            self._defineSourceRelation(self.inputVolume, obj)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        volume = self.inputVolume.get()
        errors = self._validateHalfMapInputs("local resolution")
        if volume is None or not volume.hasHalfMaps():
            return errors
        if not self.sampling.get() or self.sampling.get() <= 0:
            errors.append("The sampling must be > 0 Å.")
        else:
            dims = volume.getDim()
            if dims and self._pixelSize() > 0 and self.sampling.get() / self._pixelSize() > dims[0]:
                errors.append(f"The sampling {self.sampling.get()} Å is larger than the box "
                              f"({dims[0]} px = {dims[0] * self._pixelSize():.1f} Å).")
        return errors

    def _summary(self):
        paths = locres_paths(self._extra(OUTPUT_ROOT))
        if not os.path.exists(paths["locres"]):
            return ["Local resolution not finished yet."]
        locres, _ = read_mrc(paths["locres"])
        mask = self.solventMask.get()
        mask_map = read_mrc(_mrc_path(mask))[0] if mask is not None and os.path.exists(_mrc_path(mask)) else None
        values = histogram_values(locres, mask_map)
        if values.size == 0:
            return ["No voxel has a local resolution."]
        return [f"Local resolution{' inside the mask' if mask is not None else ''}: median "
                f"{np.median(values):.2f} Å, 5th-95th percentile {np.percentile(values, 5):.2f}-"
                f"{np.percentile(values, 95):.2f} Å",
                f"ChimeraX script: {paths['chimerax']}"]

    def _methods(self):
        return ["Local resolution was estimated with polishplugin (RELION relion_postprocess --locres "
                f"method): local FSCs in soft spherical masks sampled every {self.sampling.get():g} Å, "
                "corrected by phase randomisation, at FSC = 0.143."]

    # --------------------------- UTILS functions -----------------------------
    def _programArgs(self) -> list:
        """Command-line tokens for ``polishplugin local_resolution`` (pure: form values -> list of str)."""
        half1, half2 = self._halfMaps()
        args = ["--i", half1, "--i2", half2, "--o", self._extra(OUTPUT_ROOT),
                "--angpix", formatFloat(self._pixelSize()), "--adhoc_bfac", formatFloat(self.bfactor.get()),
                "--locres_sampling", formatFloat(self.sampling.get()),
                "--locres_maskrad", formatFloat(self.maskRadius.get()),
                "--locres_edgwidth", formatFloat(self.edgeWidth.get()),
                "--locres_randomize_at", formatFloat(self.randomizeAt.get()),
                "--locres_minres", formatFloat(self.minRes.get()),
                "--mode", "exact" if self.exactMode.get() else "fast", "--j", str(self._threadCount())]
        if self.solventMask.get() is not None:
            args += ["--mask", _mrc_path(self.solventMask.get())]
        if self.sharpenedMap.get() is not None:
            args += ["--sharpened", _mrc_path(self.sharpenedMap.get())]
        if self.mtfFile.get():
            args += ["--mtf", os.path.abspath(self.mtfFile.get())]
            if self.mtfPixelSize.get() and self.mtfPixelSize.get() > 0:
                args += ["--mtf_angpix", formatFloat(self.mtfPixelSize.get())]
        if self.randomSeed.get():
            args += ["--random_seed", str(self.randomSeed.get())]
        return args

