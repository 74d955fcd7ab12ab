"""ProtPolishTrain: train the Bayesian-polishing sigmas (step 25), a thin wrapper of
``polishplugin motion_train --params3`` (``--params2`` when the acceleration sigma is not trained; RELION
spells it ``relion_motion_refine --params3``).

Inputs as ProtPolishParticles (movies or corrected_micrographs.star, particles or their STAR file,
postprocess.star or a volume with half maps), first/last frame, the fraction of Fourier pixels held out
for testing (0.5) and the number of particles (5000).  Outputs: ``outputParams`` (an ``EMFile`` pointing at
``opt_params.txt`` with the three values as attributes ``sVel``, ``sDiv``, ``sAcc``; ProtPolishParticles
reads it through its "training run" pointer) and ``outputTscTrace`` (``tsc_trace.star``).
"""

from __future__ import annotations

import os

from pwem.objects import EMFile
from pyworkflow.object import Float
from pyworkflow.protocol import params

from ._base import ProtPolishBase, addComputeSection, formatFloat
from .protocol_polish import ProtPolishParticles

__all__ = ["ProtPolishTrain"]


class ProtPolishTrain(ProtPolishBase):
    """Find the sigmas of the polishing motion prior (velocity, divergence, acceleration) that best
    predict held-out high frequencies (TSC), as RELION's relion_motion_refine --params3."""

    _label = "train polishing"
    _devStatus = "NEW"

    # a dict, not an Enum: two Enum members with the same value (EMFile) would be aliases of one name
    _possibleOutputs = {"outputParams": EMFile, "outputTscTrace": EMFile}

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputMovies", params.PointerParam, pointerClass="SetOfMovies", allowsNull=True,
                      label="Movies (with alignment)",
                      help="Movies with their motion correction (global shifts; local model if any).")
        form.addParam("micrographsStar", params.PathParam, default="", label="or corrected_micrographs.star",
                      help="Used when no movie set is given: RELION's MotionCorr output.")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles", allowsNull=True,
                      label="Particles (CTF, 3D alignment, coordinates, half sets)")
        form.addParam("particlesStar", params.PathParam, default="", label="or particle STAR file")
        form.addParam("postprocessStar", params.PathParam, default="", label="Post-process STAR file",
                      help="postprocess.star (half maps, mask and FSC). Or give a volume with half maps.")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume", allowsNull=True,
                      label="or volume with half maps")
        form.addParam("inputMask", params.PointerParam, pointerClass="VolumeMask", allowsNull=True,
                      label="Mask for the half maps", condition="inputVolume")
        form.addParam("firstFrame", params.IntParam, default=1, label="First movie frame")
        form.addParam("lastFrame", params.IntParam, default=-1, label="Last movie frame", help="-1: all.")
        form.addSection(label="Train")
        form.addParam("evalFrac", params.FloatParam, default=0.5,
                      label="Fraction of Fourier pixels for testing",
                      help="Held-out fraction of the disc up to the FSC cut-off; in (0.1, 0.9].")
        form.addParam("minParticles", params.IntParam, default=5000, label="Use this many particles",
                      help="Micrographs are added (in a seeded random order) until this many particles.")
        form.addParam("trainAcc", params.BooleanParam, default=True, label="Train the acceleration sigma?",
                      help="No: only s_vel and s_div are trained (--params2); s_acc stays at the start value.")
        form.addParam("extraParams", params.StringParam, default="", expertLevel=params.LEVEL_ADVANCED,
                      label="Additional arguments",
                      help="e.g. --s_vel_0 0.6 --s_div_0 10000 --s_acc_0 3 --seed 23 --max_evals 60 "
                           "--fit_window 24 --joint_particles 1000")
        addComputeSection(form, mpi=1, threads=0, device=True)

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.runTrainStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -----------------------------
    convertInputStep = ProtPolishParticles.convertInputStep  # same conversion of movies/particles

    def runTrainStep(self):
        self._runProgram("motion_train", self._programArgs())

    def createOutputStep(self):
        from ..io.polish import read_opt_params

        path = self._paramsPath()
        params = read_opt_params(path)
        out = EMFile(filename=path)
        out.sVel, out.sDiv, out.sAcc = Float(params.s_vel), Float(params.s_div), Float(params.s_acc)
        trace = EMFile(filename=self._trainDir("tsc_trace.star"))
        self._defineOutputs(outputParams=out, outputTscTrace=trace)
        for src in (self.inputParticles, self.inputMovies):
            if src.get() is not None:
                self._defineSourceRelation(src, out)

    # --------------------------- helpers --------------------------------------
    _micrographsFile = ProtPolishParticles._micrographsFile
    _particlesFile = ProtPolishParticles._particlesFile
    _referenceArgs = ProtPolishParticles._referenceArgs
    _validatePolishInputs = ProtPolishParticles._validatePolishInputs

    def _trainDir(self, *parts) -> str:
        return self._extra("Train", *parts)

    def _paramsPath(self) -> str:
        return self._trainDir("opt_params.txt")

    def _programArgs(self) -> list:
        """The motion_train argument tokens (pure: form values -> list; RELION-compatible options)."""
        args = ["--i", self._particlesFile(), "--corr_mic", self._micrographsFile(),
                "--o", self._trainDir() + "/", "--first_frame", str(self.firstFrame.get()),
                "--last_frame", str(self.lastFrame.get())]
        args += self._referenceArgs()
        args += ["--min_p", str(self.minParticles.get()), "--eval_frac", formatFloat(self.evalFrac.get()),
                 "--align_frac", "0.5", "--params3" if self.trainAcc.get() else "--params2"]
        args += self._deviceArgs()
        if self.extraParams.get():
            args += self.extraParams.get().split()
        return args

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        errors = self._validatePolishInputs()
        frac = self.evalFrac.get()
        if frac is None or not (0.1 < frac <= 0.9):
            errors.append(f"The fraction of Fourier pixels for testing must be in (0.1, 0.9] (got {frac}).")
        if self.minParticles.get() is None or self.minParticles.get() < 2:
            errors.append("Use at least 2 particles for training.")
        return errors

    def _summary(self):
        path = self._paramsPath()
        if not os.path.exists(path):
            return ["Training not finished yet."]
        from ..io.polish import read_opt_params, read_tsc_trace

        p = read_opt_params(path)
        lines = [f"Optimised parameters: s_vel {p.s_vel:g} Å/dose, s_div {p.s_div:g} Å, s_acc {p.s_acc:g} Å/dose "
                 f"(file {path})."]
        trace_path = self._trainDir("tsc_trace.star")
        if os.path.exists(trace_path):
            trace = read_tsc_trace(trace_path).evaluations
            lines.append(f"{len(trace)} evaluations; best TSC {trace.tsc.max():.6f}, first (start values) "
                         f"{trace.tsc.iloc[0]:.6f}.")
            if float(trace.tsc.max() - trace.tsc.min()) <= 1e-5 * abs(float(trace.tsc.max())):
                lines.append("WARNING: the TSC was flat: the data do not constrain the sigmas.")
        return lines

    def _methods(self):
        return ["The Bayesian-polishing motion-prior parameters were trained on held-out frequencies "
                "(TSC) as in RELION [Zivanov2019]."]

    def _citations(self):
        return ["Zivanov2019"]
