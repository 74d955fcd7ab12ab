"""ProtPolishImport: bring a RELION-shaped project into Scipion objects.

The pattern for the plugin's protocols, in its simplest form: params -> one step that reads the
files through ``convert`` -> ``_defineOutputs`` + source relations.  Files are referenced where
they are (absolute paths), not copied.
"""

from __future__ import annotations

import os
import shutil
from enum import Enum

from pwem.objects import SetOfMovies, SetOfParticles, Volume, VolumeMask
from pyworkflow.protocol import params

from ..io.mrc import MrcError, read_mrc, read_mrc_header, write_mrc
from ..io.movies import read_corrected_micrographs
from ..io.mtf import read_mtf
from ..io.postprocess import read_postprocess
from ..io.particles import read_particles, resolve_relion_path
from ..convert.scipion_objects import make_mask, make_volume, micrographs_to_movies, table_to_particles
from ..io.star import StarError
from ._base import ProtPolishBase

__all__ = ["ProtPolishImport"]


class ProtPolishImport(ProtPolishBase):
    """Import a RELION project: movies with their motion correction (corrected_micrographs.star and
    the per-movie STAR files), particles (STAR with optics, poses, CTF, half sets), and optionally
    the half maps, the solvent mask and postprocess.star of a previous refinement.  Or simulate a
    small project with known ground truth (``polishplugin simulate``) and import that."""

    _label = "import RELION project"
    _devStatus = "NEW"

    class outputs(Enum):
        outputMovies = SetOfMovies
        outputParticles = SetOfParticles
        outputVolume = Volume
        outputMask = VolumeMask

    _possibleOutputs = outputs

    IMPORT_FILES, IMPORT_SIMULATED = 0, 1
    #: Where ``polishplugin simulate`` writes each file of its project (relative to its --o).
    SIMULATED_FILES = {"micrographsStar": "MotionCorr/job002/corrected_micrographs.star",
                       "particlesStar": "Refine3D/job021/run_data.star",
                       "postprocessStar": "PostProcess/job023/postprocess.star",
                       "mtfStar": "mtf_simulated.star"}

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("importFrom", params.EnumParam, default=self.IMPORT_FILES,
                      choices=["RELION project files", "simulated dataset"],
                      display=params.EnumParam.DISPLAY_HLIST, label="Import from",
                      help="Simulated dataset: `polishplugin simulate` makes a small RELION-shaped "
                           "project with known ground truth (movies, particles, half maps, mask, "
                           "postprocess.star, MTF) in extra/simulated, which is then imported.")
        form.addParam("simPreset", params.EnumParam, default=0, choices=["tiny", "demo", "tutorial"],
                      condition="importFrom == 1", label="Dataset size",
                      help="tiny: 3 movies (seconds); demo: the demo's size; tutorial: larger.")
        form.addParam("simSeed", params.IntParam, default=1, condition="importFrom == 1",
                      label="Random seed")
        form.addParam("projectDir", params.PathParam, default="", label="RELION project folder",
                      condition="importFrom == 0",
                      help="Folder the paths inside the STAR files are relative to. Empty: the first "
                           "folder above each STAR file where those paths exist.")
        form.addParam("micrographsStar", params.PathParam, default="", condition="importFrom == 0",
                      label="Micrographs (from MotionCorr)",
                      help="corrected_micrographs.star; its rlnMicrographMetadata column points to "
                           "the per-movie motion STAR files.")
        form.addParam("requireMovies", params.BooleanParam, default=True,
                      label="Movie files must exist?",
                      help="No: import the motion metadata even when the movie files are absent "
                           "(polishing will then refuse them).")
        form.addParam("particlesStar", params.PathParam, default="", condition="importFrom == 0",
                      label="Particles (from Refine3D or CtfRefine)",
                      help="RELION 3.0 or 3.1+ particle STAR file.")
        form.addParam("checkStacks", params.BooleanParam, default=True,
                      label="Particle stacks must exist?")
        form.addSection(label="Detector")
        form.addParam("gainFile", params.PathParam, default="", condition="importFrom == 0",
                      label="Gain reference",
                      help="MRC, TIFF or EPU .gain file for every movie (empty: each movie's "
                           "rlnMicrographGainName). Orientation as RELION's motion correction uses it: TIFF "
                           "gains are flipped along y like TIFF movies; for EER the size of the detector or of the "
                           "rendering, .gain multiplicative, others the detector's sensitivity.")
        form.addParam("defectFile", params.PathParam, default="", condition="importFrom == 0",
                      label="Defect file",
                      help="MotionCor2 text file of rectangles (x y w h per line) or an MRC mask (non-zero = "
                           "defect) of the movies' size (empty: each movie's rlnMicrographDefectFile). Defects "
                           "and hot pixels are replaced by a random good neighbour before particles are cut.")
        form.addParam("eerUpsampling", params.EnumParam, default=0, condition="importFrom == 0",
                      choices=["from the movie STAR files", "1 (detector size, 4K)", "2 (twice, 8K)"],
                      label="EER upsampling",
                      help="rlnEERUpsampling of EER movies; polishing renders them as motion correction did.")
        form.addParam("eerGrouping", params.IntParam, default=0, condition="importFrom == 0",
                      label="EER grouping",
                      help="Raw EER frames per fraction (rlnEERGrouping); 0: from the movie STAR files.")
        form.addParam("binning", params.FloatParam, default=0.0, condition="importFrom == 0",
                      label="Binning of motion correction",
                      help="rlnMicrographBinning (2 for super-resolution movies binned to the micrographs' "
                           "pixel size); 0: from the movie STAR files.")
        form.addParam("simMovieFormat", params.EnumParam, default=0, condition="importFrom == 1",
                      choices=["MRC", "4-bit MRC (mode 101)", "8-bit LZW TIFF", "EER"],
                      label="Simulated movie format")
        form.addParam("simGain", params.BooleanParam, default=False, condition="importFrom == 1",
                      label="Simulate a gain reference?")
        form.addParam("simHotPixels", params.IntParam, default=0, condition="importFrom == 1",
                      label="Hot pixels to plant", help="Half listed in the movie STAR files, half in a defect file.")
        form.addParam("simSuperResolution", params.BooleanParam, default=False,
                      condition="importFrom == 1 and simMovieFormat != 3", label="Super-resolution movies?",
                      help="Movies at half the pixel size, binning 2.")
        form.addParam("simEerUpsampling", params.IntParam, default=1,
                      condition="importFrom == 1 and simMovieFormat == 3", label="EER upsampling (1 or 2)")
        form.addParam("simOpticsGroups", params.IntParam, default=1, condition="importFrom == 1",
                      label="Optics groups", help="Groups of different pixel sizes and boxes.")
        form.addSection(label="Maps")
        form.addParam("postprocessStar", params.PathParam, default="", condition="importFrom == 0",
                      label="Postprocess STAR file",
                      help="postprocess.star: gives the half maps and the mask when those are empty.")
        form.addParam("halfMap1", params.PathParam, default="", label="Half map 1 (unfiltered)",
                      condition="importFrom == 0")
        form.addParam("halfMap2", params.PathParam, default="", label="Half map 2 (unfiltered)",
                      condition="importFrom == 0")
        form.addParam("maskFile", params.PathParam, default="", label="Solvent mask",
                      condition="importFrom == 0")
        form.addParam("samplingRate", params.FloatParam, default=0.0, label="Map pixel size (Å)",
                      help="0: from the MRC header.")
        form.addParam("mtfStar", params.PathParam, default="", label="MTF of the detector (STAR file)",
                      condition="importFrom == 0",
                      help="Validated and copied to extra/ for later steps.")

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        if self._simulated():
            self._insertFunctionStep(self.simulateStep)
        self._insertFunctionStep(self.importStep)

    # --------------------------- STEPS functions -----------------------------
    def simulateStep(self):
        self._runProgram("simulate", self._simulateArgs())

    def importStep(self):
        files = self._inputFiles()
        if files["micrographsStar"]:
            self._importMovies(files["micrographsStar"])
        if files["particlesStar"]:
            self._importParticles(files["particlesStar"])
        half1, half2, mask = self._mapFiles()
        if half1 and half2:
            self._importMaps(half1, half2)
        if mask:
            angpix = self._mapPixelSize(mask)
            self._defineOutputs(**{self.outputs.outputMask.name: make_mask(mask, angpix)})
        if files["mtfStar"]:
            shutil.copy(files["mtfStar"], self._extra(os.path.basename(files["mtfStar"])))

    def _importMovies(self, star):
        table = read_corrected_micrographs(star, self._projectDir())
        movies = self._createSetOfMovies()
        micrographs_to_movies(table, movies, detector=self.detectorSettings())
        self._defineOutputs(**{self.outputs.outputMovies.name: movies})

    def _importParticles(self, star):
        table = read_particles(star, check_stacks=self.checkStacks.get(),
                               project_dir=self._projectDir())
        particles = self._createSetOfParticles()
        table_to_particles(table, particles)
        self._defineOutputs(**{self.outputs.outputParticles.name: particles})

    def _importMaps(self, half1, half2):
        angpix = self._mapPixelSize(half1)
        volume = make_volume(self._fullMap(half1, half2, angpix), angpix, half1, half2)
        self._defineOutputs(**{self.outputs.outputVolume.name: volume})

    def _fullMap(self, half1, half2, angpix):
        """RELION's map beside the half maps (``run_half1_class001_unfil.mrc`` -> ``run_class001.mrc``)
        when it exists, else the average of the half maps written to extra/."""
        name = os.path.basename(half1)
        if "_half1_" in name:
            candidate = os.path.join(os.path.dirname(half1),
                                     name.replace("_half1_", "_").replace("_unfil.mrc", ".mrc"))
            if os.path.exists(candidate) and read_mrc_header(candidate)[0] == read_mrc_header(half1)[0]:
                return candidate
        average = self._extra("half_maps_average.mrc")
        write_mrc(average, 0.5 * (read_mrc(half1)[0] + read_mrc(half2)[0]), angpix)
        return average

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        if self._simulated():
            if self.simGain.get() and self.simOpticsGroups.get() > 1:
                return ["A simulated gain reference needs a single optics group (one detector)."]
            return []
        errors = []
        given = [self.micrographsStar.get(), self.particlesStar.get(), self.halfMap1.get(),
                 self.postprocessStar.get(), self.maskFile.get()]
        if not any(given):
            errors.append("Give at least one file to import (micrographs, particles, maps or mask).")
        for param, what in ((self.micrographsStar, "micrographs STAR file"),
                            (self.particlesStar, "particles STAR file"),
                            (self.postprocessStar, "postprocess STAR file"),
                            (self.halfMap1, "half map 1"), (self.halfMap2, "half map 2"),
                            (self.maskFile, "mask"), (self.mtfStar, "MTF STAR file"),
                            (self.gainFile, "gain reference"), (self.defectFile, "defect file")):
            if param.get() and not os.path.exists(param.get()):
                errors.append(f"The {what} {param.get()} does not exist.")
        if errors:
            return errors
        if self.eerGrouping.get() < 0:
            errors.append("The EER grouping must be >= 1 (0: from the movie STAR files).")
        if bool(self.halfMap1.get()) != bool(self.halfMap2.get()):
            errors.append("Give both half maps, or neither.")
        errors += self._validateContents()
        return errors

    def _validateContents(self):
        errors = []
        try:
            if self.particlesStar.get():
                read_particles(self.particlesStar.get(), check_stacks=self.checkStacks.get(),
                               project_dir=self._projectDir())
            if self.micrographsStar.get():
                errors += self._validateMovies()
            if self.postprocessStar.get():
                read_postprocess(self.postprocessStar.get())
            if self.mtfStar.get():
                read_mtf(self.mtfStar.get())
            half1, half2, mask = self._mapFiles()
            shapes = {path: read_mrc_header(path) for path in (half1, half2, mask) if path}
            if half1 and half2 and shapes[half1][0] != shapes[half2][0]:
                errors.append(f"The half maps {half1} and {half2} have different shapes "
                              f"{shapes[half1][0]} and {shapes[half2][0]}.")
            if mask and half1 and shapes[mask][0] != shapes[half1][0]:
                errors.append(f"The mask {mask} has shape {shapes[mask][0]}, the half maps "
                              f"{shapes[half1][0]}.")
        except (StarError, MrcError) as exc:
            errors.append(str(exc))
        return errors

    def _validateMovies(self):
        from ..io.movies import is_eer, read_movie_metadata
        table = read_corrected_micrographs(self.micrographsStar.get(), self._projectDir())
        form = self.detectorSettings()
        errors = []
        for row in range(len(table)):
            meta_path = table.metadata_path(row)
            if not meta_path.exists():
                errors.append(f"The per-movie STAR file {meta_path} (micrographs STAR file "
                              f"{table.path}) does not exist.")
                continue
            meta = read_movie_metadata(meta_path)
            movie = resolve_relion_path(meta.movie_name, table.path, table.project_dir)
            if self.requireMovies.get() and not movie.exists():
                errors.append(f"The movie {movie} (per-movie STAR file {meta_path}) does not exist.")
            up, group = meta.eer_settings()
            if is_eer(movie) and not ((up or form["eer_upsampling"]) and (group or form["eer_grouping"])):
                errors.append(f"The movie {movie} is an EER movie but its per-movie STAR file {meta_path} has no "
                              "rlnEERUpsampling/rlnEERGrouping: set EER upsampling and grouping (Detector tab).")
        return errors[:10]

    def _summary(self):
        lines = []
        for name in self.outputs:
            if self.hasAttribute(name.name):
                obj = getattr(self, name.name)
                size = f" ({obj.getSize()} items)" if hasattr(obj, "getSize") else ""
                lines.append(f"{name.name}: imported{size}")
        return lines or ["Nothing imported yet."]

    def _methods(self):
        return ["A RELION project was imported into Scipion with polishplugin."]

    # --------------------------- UTILS functions -----------------------------
    def _simulated(self):
        return self.importFrom.get() == self.IMPORT_SIMULATED

    def _simulateArgs(self):
        """``polishplugin simulate`` arguments (pure: form values -> tokens)."""
        preset = ["tiny", "demo", "tutorial"][self.simPreset.get()]
        args = ["--preset", preset, "--seed", str(self.simSeed.get()), "--o", self._extra("simulated")]
        fmt = ["mrc", "mrc4", "tiff", "eer"][self.simMovieFormat.get()]
        if fmt != "mrc":
            args += ["--movie_format", fmt]
        if fmt == "eer" and self.simEerUpsampling.get() == 2:
            args += ["--eer_upsampling", "2"]
        if self.simGain.get():
            args.append("--gain")
        if self.simHotPixels.get() > 0:
            args += ["--hot_pixels", str(self.simHotPixels.get())]
        if self.simSuperResolution.get() and fmt != "eer":
            args.append("--super_resolution")
        if self.simOpticsGroups.get() > 1:
            args += ["--optics_groups", str(self.simOpticsGroups.get())]
        return args

    def detectorSettings(self):
        """The Detector tab as :func:`polishplugin.convert.scipion_objects.detector_settings` overrides (empty and
        0 values keep each movie's own STAR values)."""
        if self._simulated():
            return {}
        return {"gain": self.gainFile.get() or None, "defect_file": self.defectFile.get() or None,
                "binning": float(self.binning.get() or 0.0), "eer_upsampling": int(self.eerUpsampling.get() or 0),
                "eer_grouping": int(self.eerGrouping.get() or 0)}

    def _inputFiles(self):
        """The STAR/MTF files to import: the form's, or those of the simulated project."""
        if self._simulated():
            return {key: self._extra("simulated", rel) for key, rel in self.SIMULATED_FILES.items()}
        return {key: getattr(self, key).get() or None for key in self.SIMULATED_FILES}

    def _projectDir(self):
        if self._simulated():
            return self._extra("simulated")
        return self.projectDir.get() or None

    def _mapFiles(self):
        """(half1, half2, mask): the form's files, else those named in postprocess.star."""
        half1, half2, mask = self.halfMap1.get(), self.halfMap2.get(), self.maskFile.get()
        if self._simulated():
            half1 = half2 = mask = None
        postprocess = self._inputFiles()["postprocessStar"]
        if postprocess and not (half1 and half2 and mask):
            post = read_postprocess(postprocess)
            star = post.path

            def resolve(name):
                return str(resolve_relion_path(name, star, self._projectDir())) if name else None
            p1, p2 = post.half_maps()
            if not (half1 and half2):
                half1, half2 = resolve(p1), resolve(p2)
            mask = mask or resolve(post.mask_name)
        return half1 or None, half2 or None, mask or None

    def _mapPixelSize(self, path):
        if self.samplingRate.get():
            return float(self.samplingRate.get())
        return read_mrc_header(path)[1]
