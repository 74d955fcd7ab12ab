"""ProtPolishRefine3D: gold-standard 3D auto-refine (``polishplugin refine3d``, RELION's Refine3D job)
of a set of particles against a reference map; outputs a Volume with half maps, the refined
particles and the gold-standard FSC."""

from __future__ import annotations

import glob
import os

from pwem.objects import SetOfFSCs, SetOfParticles, Volume
from pwem.protocols import ProtRefine3D
from pyworkflow.protocol import params

from ..io.refine import read_model, read_run_arguments, write_run_arguments
from ..convert.scipion_objects import make_fsc, make_volume
from ._base import ProtPolishBase, addComputeSection, formatFloat
from .protocol_mask_create import _mrc_path

__all__ = ["ProtPolishRefine3D", "ANGULAR_SAMPLING_CHOICES", "OUTPUT_ROOT"]

#: RELION GUI's angular sampling list; the index is the coarse HEALPix order (--healpix_order)
ANGULAR_SAMPLING_CHOICES = ["30 degrees", "15 degrees", "7.5 degrees", "3.7 degrees", "1.8 degrees",
                            "0.9 degrees", "0.5 degrees", "0.2 degrees", "0.1 degrees"]
#: output root inside extra/ (RELION: Refine3D/jobNNN/run)
OUTPUT_ROOT = "run"
#: in extra/: the arguments the refine started with (Scipion's "Continue" goes on only from the same run)
ARGUMENTS_FILE = "refine3d_arguments.json"
#: options that a continued refine may change (refine3d --continue takes them again), with a value / flags
RESUME_FREE_OPTIONS = ("--iter", "--j", "--device", "--scratch_dir")
RESUME_FREE_FLAGS = ("--preread_images",)


def _split_free(args: list) -> tuple[list, list]:
    """``args`` without the RESUME_FREE_OPTIONS (each with its value) and RESUME_FREE_FLAGS, and those alone."""
    kept, free, i = [], [], 0
    while i < len(args):
        if args[i] in RESUME_FREE_OPTIONS and i + 1 < len(args):
            free += args[i:i + 2]
            i += 2
        elif args[i] in RESUME_FREE_FLAGS:
            free.append(args[i])
            i += 1
        else:
            kept.append(args[i])
            i += 1
    return kept, free


class ProtPolishRefine3D(ProtRefine3D, ProtPolishBase):
    """3D auto-refine with gold-standard half sets, CTF correction, symmetry and automatic HEALPix
    sampling down to local searches, as RELION's 3D auto-refine job (tutorial step 27); or local searches
    only, around the input particles' orientations.  A stopped or failed run goes on from its last complete
    iteration when executed again in Scipion's "Continue" mode (RELION's --continue)."""

    _label = "3D auto-refine"
    _devStatus = "NEW"

    OUTPUT_VOLUME = "outputVolume"
    OUTPUT_PARTICLES = "outputParticles"
    OUTPUT_FSCS = "outputFSCs"
    _possibleOutputs = {OUTPUT_VOLUME: Volume, OUTPUT_PARTICLES: SetOfParticles, OUTPUT_FSCS: SetOfFSCs}

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="I/O")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      label="Input images", help="Particles with CTF (e.g. the polished particles).")
        form.addParam("referenceVolume", params.PointerParam, pointerClass="Volume", label="Reference map",
                      help="Initial reference of the same box and pixel size as the particles.")
        form.addParam("referenceMask", params.PointerParam, pointerClass="VolumeMask", allowsNull=True,
                      label="Reference mask (optional)",
                      help="Solvent mask used to flatten the references and for solvent-corrected FSCs.")
        form.addParam("solventMask2", params.PointerParam, pointerClass="VolumeMask", allowsNull=True,
                      expertLevel=params.LEVEL_ADVANCED, label="Second solvent mask (optional)",
                      help="RELION's --solvent_mask2: after the references were multiplied by the reference mask "
                           "(or, without one, a sphere of the mask diameter), the region where this mask is 1 is "
                           "set to its own average density, e.g. the higher density inside a virion or a "
                           "detergent micelle. Values in [0, 1] (1 = the region to flatten), of the particles' "
                           "box and pixel size.")
        form.addSection(label="Reference")
        form.addParam("isMapAbsoluteGreyScale", params.BooleanParam, default=True,
                      label="Ref. map is on absolute greyscale?",
                      help="No: the first iteration uses cross-correlation (--firstiter_cc).")
        form.addParam("initialLowPassFilterA", params.FloatParam, default=50.0, label="Initial low-pass filter (Å)")
        form.addParam("symmetryGroup", params.StringParam, default="D2", label="Symmetry",
                      help="C1, Cn, Dn, T, O or I (RELION conventions).")
        form.addSection(label="CTF")
        form.addParam("doCTF", params.BooleanParam, default=True, label="Do CTF-correction?")
        form.addParam("refCtfCorrected", params.BooleanParam, default=True,
                      label="Has reference been CTF-corrected?")
        form.addParam("haveDataBeenPhaseFlipped", params.BooleanParam, default=False,
                      label="Have data been phase-flipped?")
        form.addParam("ignoreCTFUntilFirstPeak", params.BooleanParam, default=False,
                      label="Ignore CTFs until first peak?")
        form.addSection(label="Optimisation")
        form.addParam("maskDiameterA", params.FloatParam, default=200.0, label="Mask diameter (Å)")
        form.addParam("maskZero", params.BooleanParam, default=True, label="Mask individual particles with zeros?")
        form.addParam("solventFscMask", params.BooleanParam, default=True, label="Use solvent-flattened FSCs?")
        form.addSection(label="Auto-sampling")
        form.addParam("localAngularSearch", params.BooleanParam, default=False,
                      label="Perform local angular search?",
                      help="Yes: every iteration searches only around each particle's previous orientation "
                           "(at the start: the input particles' alignment), with a Gaussian prior of sigma = "
                           "1/3 of the range below (--sigma_ang), starting at the sampling of 'Local searches "
                           "from auto-sampling' (no global search). For refining polished particles from "
                           "their previous poses.")
        form.addParam("localAngularSearchRange", params.FloatParam, default=5.0, condition="localAngularSearch",
                      label="Local angular search range",
                      help="Orientations within +/- this many degrees of the previous orientation are searched "
                           "(--sigma_ang = range / 3).")
        form.addParam("relaxSym", params.StringParam, default="", label="Relax symmetry",
                      help="A point group whose mates of each particle's orientation the local searches also "
                           "explore (--relax_sym), e.g. C2 with symmetry C1 for a pseudo-symmetric dimer A-A': "
                           "each particle can move to the mate that tells A from A'.  The reference must follow "
                           "the point group's axis conventions.  Empty or C1: off.")
        form.addParam("angularSamplingDeg", params.EnumParam, choices=ANGULAR_SAMPLING_CHOICES, default=2,
                      condition="not localAngularSearch", label="Initial angular sampling")
        form.addParam("offsetSearchRangePix", params.FloatParam, default=5.0, label="Initial offset range (pix)")
        form.addParam("offsetSearchStepPix", params.FloatParam, default=1.0, label="Initial offset step (pix)")
        form.addParam("localSearchAutoSamplingDeg", params.EnumParam, choices=ANGULAR_SAMPLING_CHOICES,
                      default=4, label="Local searches from auto-sampling",
                      help="Auto-sampling uses local searches from this sampling on (with a local angular search: "
                           "the sampling of the first iteration).")
        form.addParam("useFinerAngularSampling", params.BooleanParam, default=False,
                      label="Use finer angular sampling faster?",
                      help="Yes: auto-refinement goes on to finer angular samplings sooner (RELION's "
                           "--auto_ignore_angles --auto_resol_angles): the sampling goes finer (and the run "
                           "converges) despite changes still happening in the orientations, and also when the "
                           "current resolution already asks for a finer step at the particle's edge "
                           "(360/ceil(pi x mask diameter / resolution)), except into the local searches. Faster; "
                           "check that the alignment is not worse than without.")
        form.addParam("lowResolJoinHalves", params.FloatParam, default=40.0, expertLevel=params.LEVEL_ADVANCED,
                      label="Join halves below (Å)")
        form.addParam("randomSeed", params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED,
                      label="Random seed", help="Seed of the grid perturbation (-1: from the clock).")
        form.addParam("maxIterations", params.IntParam, default=999, expertLevel=params.LEVEL_ADVANCED,
                      label="Maximum iterations")
        addComputeSection(form, threads=1, mpi=1, device=True)
        compute = form.getSection("Compute")
        compute.addParam("allParticlesRam", params.BooleanParam, default=False,
                         label="Pre-read all particles into RAM?",
                         help="RELION's --preread_images. refine3d always reads all particle images into memory "
                              "once at the start (each MPI process its own share: N x box^2 x 4 bytes for N "
                              "particles); Yes also makes the scratch directory below unused, as in RELION.")
        compute.addParam("scratchDir", params.PathParam, default="", condition="not allParticlesRam",
                         label="Copy particles to scratch directory",
                         help="A directory on a fast local disk (RELION's --scratch_dir): the particle stacks are "
                              "copied to a new folder there and the images read from the copies; stacks that "
                              "would leave less than 10 Gb free are read from where they are (the log says so). "
                              "The copy is removed once the images are read. Empty: read from the project.")

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.runProgramStep, self._programArgs())
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -----------------------------
    def convertInputStep(self):
        from ..io.particles import write_particles
        from ..convert.scipion_objects import particles_to_table

        write_particles(self._extra("input_particles.star"), particles_to_table(self.inputParticles.get()))

    def runProgramStep(self, args=None):
        """Run ``refine3d`` with ``args`` (the form's :meth:`_programArgs`).  When Scipion's "Continue" runs
        this step again after a stop (or a failure), the refine goes on from its last complete iteration (the
        newest ``run_itNNN_optimiser.star``: RELION's ``--continue``) if it started with the same arguments
        (maximum iterations, threads and device aside); otherwise it starts again from iteration 1."""
        args = [str(a) for a in (self._programArgs() if args is None else args)]
        fixed, free = _split_free(args)
        last = self._lastOptimiser()
        if last is not None and read_run_arguments(self._extra(ARGUMENTS_FILE)) == fixed:
            self.info(f"Continuing the refine from {last} (its last complete iteration)")
            args = ["--continue", last, "--o", self._extra(OUTPUT_ROOT)] + free
        else:
            for old in glob.glob(self._extra(f"{OUTPUT_ROOT}_*")):  # an earlier run with other arguments
                os.remove(old)
            write_run_arguments(self._extra(ARGUMENTS_FILE), fixed)
        self._runProgram("refine3d", args)

    def _lastOptimiser(self) -> str | None:
        """The newest ``extra/run_itNNN_optimiser.star`` (a complete iteration), or None."""
        found = sorted(glob.glob(self._extra(f"{OUTPUT_ROOT}_it[0-9][0-9][0-9]_optimiser.star")))
        return found[-1] if found else None

    def createOutputStep(self):
        from ..io.particles import read_particles
        from ..convert.scipion_objects import table_to_particles

        angpix = self.inputParticles.get().getSamplingRate()
        half1, half2 = (self._extra(f"{OUTPUT_ROOT}_half{h}_class001_unfil.mrc") for h in (1, 2))
        volume = make_volume(self._extra(f"{OUTPUT_ROOT}_class001.mrc"), angpix, half1, half2)
        table = read_particles(self._extra(f"{OUTPUT_ROOT}_data.star"), project_dir=os.getcwd())
        particles = self._createSetOfParticles()
        table_to_particles(table, particles, image_root=os.getcwd())
        fscs = self._createSetOfFSCs()
        model = read_model(self._extra(f"{OUTPUT_ROOT}_model.star"))
        fscs.append(make_fsc(model.resolution_per_a, model.fsc, label="gold-standard FSC"))
        outputs = {self.OUTPUT_VOLUME: volume, self.OUTPUT_PARTICLES: particles, self.OUTPUT_FSCS: fscs}
        self._defineOutputs(**outputs)
        for obj in outputs.values():
            self._defineSourceRelation(self.inputParticles, obj)
            self._defineSourceRelation(self.referenceVolume, obj)

    # --------------------------- arguments -----------------------------------
    def _programArgs(self) -> list:
        """The ``polishplugin refine3d`` argument tokens for the form values (pure)."""
        args = ["--i", self._extra("input_particles.star"), "--o", self._extra(OUTPUT_ROOT),
                "--ref", _mrc_path(self.referenceVolume.get()), "--auto_refine", "--split_random_halves",
                "--ini_high", formatFloat(self.initialLowPassFilterA.get()), "--pad", "2",
                "--particle_diameter", formatFloat(self.maskDiameterA.get()), "--sym", self.symmetryGroup.get(),
                "--healpix_order", str(self._initialHealpixOrder()),
                "--auto_local_healpix_order", str(int(self.localSearchAutoSamplingDeg.get())),
                "--offset_range", formatFloat(self.offsetSearchRangePix.get()),
                "--offset_step", formatFloat(2 * self.offsetSearchStepPix.get()),
                "--oversampling", "1", "--low_resol_join_halves", formatFloat(self.lowResolJoinHalves.get()),
                "--norm", "--scale", "--random_seed", str(int(self.randomSeed.get())),
                "--iter", str(int(self.maxIterations.get())), "--j", str(self._threadCount())]
        if self.localAngularSearch.get():
            args += ["--sigma_ang", formatFloat(self.localAngularSearchRange.get() / 3.0)]
        relax = (self.relaxSym.get() or "").strip()
        if relax and relax.upper() != "C1":
            args += ["--relax_sym", relax]
        if not self.isMapAbsoluteGreyScale.get():
            args.append("--firstiter_cc")
        if self.doCTF.get():
            args.append("--ctf")
            if self.refCtfCorrected.get():
                args.append("--ctf_corrected_ref")
            if self.haveDataBeenPhaseFlipped.get():
                args.append("--ctf_phase_flipped")
            if self.ignoreCTFUntilFirstPeak.get():
                args.append("--ctf_intact_first_peak")
        if self.maskZero.get():
            args.append("--zero_mask")
        mask, mask2 = self.referenceMask.get(), self.solventMask2.get()
        if mask is not None or mask2 is not None:
            args.append("--flatten_solvent")
        if mask is not None:
            args += ["--solvent_mask", _mrc_path(mask)]
            if self.solventFscMask.get():
                args.append("--solvent_correct_fsc")
        if mask2 is not None:
            args += ["--solvent_mask2", _mrc_path(mask2)]
        if self.useFinerAngularSampling.get():
            args += ["--auto_ignore_angles", "--auto_resol_angles"]
        if self.allParticlesRam.get():
            args.append("--preread_images")
        elif (self.scratchDir.get() or "").strip():
            args += ["--scratch_dir", self.scratchDir.get().strip()]
        return args + self._deviceArgs()

    def _initialHealpixOrder(self) -> int:
        """--healpix_order: the initial sampling, or with a local angular search the local searches' order
        (RELION: an initial order at least --auto_local_healpix_order searches locally from the start)."""
        field = self.localSearchAutoSamplingDeg if self.localAngularSearch.get() else self.angularSamplingDeg
        return int(field.get())

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        errors = []
        parts, ref = self.inputParticles.get(), self.referenceVolume.get()
        if parts is None or ref is None:
            return ["Choose the input particles and the reference map."]
        p_apix, r_apix = parts.getSamplingRate(), ref.getSamplingRate()
        if p_apix and r_apix and abs(p_apix - r_apix) > 0.01 * p_apix:
            errors.append(f"The reference {ref.getFileName()} has pixel size {r_apix:g} Å but the particles "
                          f"{p_apix:g} Å.")
        p_box, r_box = parts.getXDim(), ref.getXDim()
        if p_box and r_box and p_box != r_box:
            errors.append(f"The reference {ref.getFileName()} is {r_box} px wide but the particles {p_box} px.")
        for label, mask in (("mask", self.referenceMask.get()), ("second solvent mask", self.solventMask2.get())):
            if mask is None:
                continue
            if p_box and mask.getXDim() and mask.getXDim() != p_box:
                errors.append(f"The {label} {mask.getFileName()} is {mask.getXDim()} px wide, the particles "
                              f"{p_box} px.")
            m_apix = mask.getSamplingRate()
            if p_apix and m_apix and abs(p_apix - m_apix) > 0.01 * p_apix:
                errors.append(f"The {label} {mask.getFileName()} has pixel size {m_apix:g} Å but the particles "
                              f"{p_apix:g} Å.")
        if self.localAngularSearch.get():
            if not parts.hasAlignmentProj():
                errors.append("A local angular search starts from the particles' orientations, but the input "
                              "particles have no 3D alignment; refine them with a global search first.")
            if self.localAngularSearchRange.get() <= 0:
                errors.append("The local angular search range must be positive (degrees).")
        if self.doCTF.get() and not parts.hasCTF():
            errors.append("CTF correction was asked but the input particles have no CTF.")
        from ..core.geometry import symmetry_matrices

        relax = (self.relaxSym.get() or "").strip()
        for label, group in [("Symmetry", self.symmetryGroup.get())] + ([("Relax symmetry", relax)] if relax else []):
            try:
                symmetry_matrices(group)
            except ValueError as exc:
                errors.append(f"{label} {group}: {exc}.")
        return errors

    def _summary(self):
        path = self._extra(f"{OUTPUT_ROOT}_model.star")
        if not os.path.exists(path):
            return ["3D auto-refine not finished yet."]
        resolution_a = read_model(path).current_resolution_a
        return [f"Final resolution (FSC 0.143): {resolution_a:.2f} Å"]

    def _methods(self):
        return ["3D auto-refine with gold-standard half sets (RELION's algorithm, Scheres 2012) by polishplugin."]

    def _citations(self):
        return []
