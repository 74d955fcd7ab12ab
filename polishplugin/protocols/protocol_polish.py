"""ProtPolishParticles: Bayesian polishing (step 26), a thin wrapper of ``polishplugin motion_refine``.

Inputs are Scipion objects (movies with their alignment, particles with CTF/poses/half sets, a volume
with half maps and a mask) or, for each of them, the RELION file directly (corrected_micrographs.star,
particle STAR, postprocess.star).  Sigmas come from a ProtPolishTrain run (its opt_params file) or are
typed in (GUI defaults 0.2 / 5000 / 2).  MPI over micrographs through runJob.
"""

from __future__ import annotations

import glob
import os
from enum import Enum

from pwem.objects import SetOfParticles
from pyworkflow.protocol import params

from ._base import ProtPolishBase, addComputeSection, formatFloat

__all__ = ["ProtPolishParticles"]

PARAMS_FROM_TRAINING, PARAMS_OWN = 0, 1


class ProtPolishParticles(ProtPolishBase):
    """Per-particle motion tracks (GP prior), per-frame B-factors and scales, and dose-weighted,
    motion-corrected "shiny" particles (RELION relion_motion_refine, polishing mode)."""

    _label = "bayesian polishing"
    _devStatus = "NEW"

    class outputs(Enum):
        outputParticles = SetOfParticles

    _possibleOutputs = outputs

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputMovies", params.PointerParam, pointerClass="SetOfMovies", allowsNull=True,
                      label="Movies (with alignment)",
                      help="Movies with their motion correction (global shifts; local model if any).")
        form.addParam("micrographsStar", params.PathParam, default="",
                      label="or corrected_micrographs.star",
                      help="Used when no movie set is given: RELION's MotionCorr output.")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles", allowsNull=True,
                      label="Particles (CTF, 3D alignment, coordinates, half sets)")
        form.addParam("particlesStar", params.PathParam, default="", label="or particle STAR file",
                      help="Used when no particle set is given (Refine3D/CtfRefine run_data.star).")
        form.addParam("postprocessStar", params.PathParam, default="", label="Post-process STAR file",
                      help="postprocess.star (half maps, mask and FSC). Or give a volume with half maps.")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume", allowsNull=True,
                      label="or volume with half maps",
                      help="Its half maps are the reference (no FSC: all frequencies are used).")
        form.addParam("inputMask", params.PointerParam, pointerClass="VolumeMask", allowsNull=True,
                      label="Mask for the half maps", condition="inputVolume")
        form.addParam("firstFrame", params.IntParam, default=1, label="First movie frame")
        form.addParam("lastFrame", params.IntParam, default=-1, label="Last movie frame", help="-1: all.")
        form.addSection(label="Motion")
        form.addParam("paramsSource", params.EnumParam, choices=["from a training run", "own parameters"],
                      default=PARAMS_OWN, display=params.EnumParam.DISPLAY_HLIST, label="Sigma parameters")
        form.addParam("trainingRun", params.PointerParam, pointerClass="ProtPolishTrain", allowsNull=True,
                      condition=f"paramsSource=={PARAMS_FROM_TRAINING}", label="Training run",
                      help="Its opt_params file (s_vel s_div s_acc) is used.")
        form.addParam("paramsFile", params.PathParam, default="",
                      condition=f"paramsSource=={PARAMS_FROM_TRAINING}", label="or optimised parameter file")
        form.addParam("sVel", params.FloatParam, default=0.2, condition=f"paramsSource=={PARAMS_OWN}",
                      label="Sigma for velocity (Å/dose)")
        form.addParam("sDiv", params.FloatParam, default=5000.0, condition=f"paramsSource=={PARAMS_OWN}",
                      label="Sigma for divergence (Å)")
        form.addParam("sAcc", params.FloatParam, default=2.0, condition=f"paramsSource=={PARAMS_OWN}",
                      label="Sigma for acceleration (Å/dose)", help="Negative: no acceleration prior.")
        form.addSection(label="Polish")
        form.addParam("bfacMinFreq", params.FloatParam, default=20.0,
                      label="Minimum resolution for B-factor fit (Å)")
        form.addParam("bfacMaxFreq", params.FloatParam, default=-1.0,
                      label="Maximum resolution for B-factor fit (Å)", help="-1: the FSC=0.143 resolution.")
        form.addParam("float16", params.BooleanParam, default=False, label="Write output in float16?")
        form.addParam("window", params.IntParam, default=-1, expertLevel=params.LEVEL_ADVANCED,
                      label="Extraction box in movie pixels", help="-1: from the reference (even).")
        form.addParam("scale", params.IntParam, default=-1, expertLevel=params.LEVEL_ADVANCED,
                      label="Output box", help="-1: the reference pixel size (even).")
        form.addParam("extraParams", params.StringParam, default="", expertLevel=params.LEVEL_ADVANCED,
                      label="Additional arguments")
        addComputeSection(form, mpi=1, threads=0, device=True)

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.runPolishStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -----------------------------
    def convertInputStep(self):
        if self.inputMovies.get() is not None:
            from ..convert.scipion_objects import movies_to_micrographs

            movies_to_micrographs(self.inputMovies.get(), self._extra("motion"))
        if self.inputParticles.get() is not None:
            from ..io.particles import write_particles
            from ..convert.scipion_objects import particles_to_table

            write_particles(self._extra("input_particles.star"),
                            particles_to_table(self.inputParticles.get(), movie_set=self.inputMovies.get()))

    def runPolishStep(self):
        self._runProgram("motion_refine", self._programArgs())

    def createOutputStep(self):
        from ..io.particles import read_particles
        from ..convert.scipion_objects import table_to_particles

        table = read_particles(self._extra("Polish", "shiny.star"), project_dir=os.getcwd())
        out = self._createSetOfParticles()
        table_to_particles(table, out, image_root=os.getcwd())
        self._defineOutputs(**{self.outputs.outputParticles.name: out})
        if self.inputParticles.get() is not None:
            self._defineSourceRelation(self.inputParticles, out)
        if self.inputMovies.get() is not None:
            self._defineSourceRelation(self.inputMovies, out)

    # --------------------------- helpers --------------------------------------
    def _micrographsFile(self) -> str:
        if self.inputMovies.get() is not None:
            return self._extra("motion", "corrected_micrographs.star")
        return self._absolute(self.micrographsStar.get())

    def _particlesFile(self) -> str:
        if self.inputParticles.get() is not None:
            return self._extra("input_particles.star")
        return self._absolute(self.particlesStar.get())

    def _paramsFile(self) -> str:
        if self.paramsFile.get():
            return self._absolute(self.paramsFile.get())
        run = self.trainingRun.get()
        if run is None:
            return ""
        out = getattr(run, "outputParams", None)  # ProtPolishTrain's EMFile (opt_params.txt)
        if out is not None and out.getFileName() and os.path.exists(out.getFileName()):
            return os.path.abspath(out.getFileName())
        found = sorted(glob.glob(run._getExtraPath("**", "opt_params*.txt"), recursive=True))
        return os.path.abspath(found[0]) if found else ""

    def _referenceArgs(self) -> list:
        if self.postprocessStar.get():
            return ["--f", self._absolute(self.postprocessStar.get())]
        vol = self.inputVolume.get()
        h1, h2 = vol.getHalfMaps(asList=True)
        args = ["--m1", self._absolute(h1), "--m2", self._absolute(h2)]
        if self.inputMask.get() is not None:
            args += ["--mask", self._absolute(self.inputMask.get().getFileName())]
        return args

    def _programArgs(self) -> list:
        """The motion_refine argument tokens (pure: form values -> list)."""
        args = ["--i", self._particlesFile(), "--corr_mic", self._micrographsFile(),
                "--o", self._extra("Polish") + "/", "--first_frame", str(self.firstFrame.get()),
                "--last_frame", str(self.lastFrame.get())]
        args += self._referenceArgs()
        if self.paramsSource.get() == PARAMS_FROM_TRAINING:
            args += ["--params_file", self._paramsFile()]
        else:
            args += ["--s_vel", formatFloat(self.sVel.get()), "--s_div", formatFloat(self.sDiv.get()),
                     "--s_acc", formatFloat(self.sAcc.get())]
        args += ["--combine_frames", "--bfac_minfreq", formatFloat(self.bfacMinFreq.get()),
                 "--bfac_maxfreq", formatFloat(self.bfacMaxFreq.get())]
        if self.float16.get():
            args.append("--float16")
        if self.window.get() > 0:
            args += ["--window", str(self.window.get())]
        if self.scale.get() > 0:
            args += ["--scale", str(self.scale.get())]
        args += self._deviceArgs()
        if self.extraParams.get():
            args += self.extraParams.get().split()
        return args

    def _validatePolishInputs(self) -> list:
        """Sentences for missing movies, particles or reference (shared with the training protocol)."""
        errors = []
        if self.inputMovies.get() is None:
            self._requireFile(self.micrographsStar.get(), "movies or corrected_micrographs.star", errors)
        if self.inputParticles.get() is None:
            self._requireFile(self.particlesStar.get(), "particles or particle STAR file", errors)
        if not self.postprocessStar.get():
            vol = self.inputVolume.get()
            if vol is None:
                errors.append("Give a post-process STAR file or a volume with half maps.")
            elif not vol.hasHalfMaps():
                errors.append(f"The volume {vol.getFileName()} has no half maps.")
        elif not os.path.exists(self.postprocessStar.get()):
            errors.append(f"The post-process STAR file {self.postprocessStar.get()} does not exist.")
        return errors

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        errors = self._validatePolishInputs()
        if self.paramsSource.get() == PARAMS_FROM_TRAINING and not self._paramsFile():
            errors.append("No optimised parameter file: choose a finished training run or a file.")
        for name, value in (("Extraction box", self.window.get()), ("Output box", self.scale.get())):
            if value > 0 and value % 2:
                errors.append(f"{name} must be even (got {value}).")
        if self.lastFrame.get() > 0 and self.lastFrame.get() < self.firstFrame.get() + 1:
            errors.append("The last frame must come after the first frame.")
        return errors

    def _summary(self):
        path = self._extra("Polish", "bfactors.star")
        if not os.path.exists(path):
            return ["Polishing not finished yet."]
        from ..io.polish import read_bfactors

        table = read_bfactors(path)
        b, lk = table.bfactor_a2, table.log_scale
        lines = [f"{len(b)} frames; per-frame B-factors (Å²): " + ", ".join(f"{v:.1f}" for v in b),
                 "ln(scale): " + ", ".join(f"{v:.3f}" for v in lk)]
        if self.hasAttribute("outputParticles"):
            lines.insert(0, f"{self.outputParticles.getSize()} polished particles.")
        return lines

    def _methods(self):
        return ["Particles were polished (per-particle motion with a Gaussian-process prior, per-frame "
                "B-factor weighting) as in RELION's Bayesian polishing [Zivanov2019]."]

    def _citations(self):
        return ["Zivanov2019"]
