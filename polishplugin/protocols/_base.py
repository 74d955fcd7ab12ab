"""Shared helpers for the plugin's protocols (composition, not a flag-driven base class).

``ProtPolishBase`` only adds small utilities on top of pwem's ``EMProtocol``: run our console
script through ``runJob`` (so hosts.conf MPI and queues apply), build paths in ``extra/`` and
read program outputs through ``convert``.  Each concrete protocol keeps its own params and steps.

The pattern every protocol follows (see ``protocol_import.py`` for a complete example)::

    class ProtPolishPostprocess(ProtPolishBase):
        _label = "post-processing"
        _possibleOutputs = {"outputVolume": Volume}

        def _defineParams(self, form): ...
            addComputeSection(form, mpi=1, threads=1)        # optional: MPI/threads/OpenCL device

        def _insertAllSteps(self):
            self._insertFunctionStep(self.convertInputStep)
            self._insertFunctionStep(self.runProgramStep)
            self._insertFunctionStep(self.createOutputStep)

        def runProgramStep(self):
            self._runProgram("postprocess", self._programArgs())

        def _programArgs(self):                             # pure: form values -> list of tokens
            return ["--i", self._extra("half1.mrc"), "--o", self._extra("postprocess"), ...]
"""

from __future__ import annotations

import os

from pwem.protocols import EMProtocol
from pyworkflow.protocol import params

from .. import Plugin
from ..convert.scipion_objects import mrc_path
from ..io.star import read_star

__all__ = ["ProtPolishBase", "addComputeSection", "formatFloat"]


def formatFloat(value: float, digits: int = 10) -> str:
    """A float as one short command-line token (``0.5`` not ``0.500000``; ``1e-07`` kept)."""
    text = f"{float(value):.{digits}g}"
    return "0" if text == "-0" else text


def addComputeSection(form, threads: int = 0, mpi: int = 1, device: bool = False) -> None:
    """Add Scipion's parallel section (threads/MPI) and, with ``device``, an OpenCL device choice.

    ``device`` adds the text param ``clDevice`` ("" = the default device, "cpu" = numpy path,
    "0:1" = OpenCL platform 0, device 1); pass it with ``_deviceArgs()``.
    """
    if device:
        form.addSection(label="Compute")
        form.addParam("clDevice", params.StringParam, default="",
                      label="OpenCL device",
                      help="Empty: the first OpenCL device found (PoCL on a CPU-only machine). "
                           "'cpu': the numpy reference path, no OpenCL. 'P:D': platform P, device D "
                           "(see `clinfo -l`).")
    form.addParallelSection(threads=threads, mpi=mpi)


class ProtPolishBase(EMProtocol):
    """Helpers shared by every polishplugin protocol; defines no params and no steps."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # pyworkflow 3.11.7's Step.__init__ drops objLabel/objComment, so a workflow template's
        # "object.label"/"object.comment" (Project.loadProtocols) and newProtocol(objLabel=...) would
        # be lost and every run would show the class label.
        for key, setter in (("objLabel", self.setObjLabel), ("objComment", self.setObjComment)):
            if kwargs.get(key):
                setter(kwargs[key])

    # ---------------------------------------------------------------- running programs
    def _runProgram(self, command: str, args: list) -> None:
        """Run ``polishplugin <command> <args...>`` with runJob (MPI from the form when it has one).

        ``args`` is a list of tokens (never a joined string): runJob quotes each token.
        """
        tokens = [command] + [str(a) for a in args]
        kwargs = {"numberOfMpi": self._mpiCount(), "numberOfThreads": self._threadCount()}
        self.runJob(Plugin.getProgram(), tokens, **kwargs)

    def _mpiCount(self) -> int:
        mpi = getattr(self, "numberOfMpi", None)
        return max(1, int(mpi.get())) if mpi is not None and mpi.get() is not None else 1

    def _threadCount(self) -> int:
        threads = getattr(self, "numberOfThreads", None)
        return max(1, int(threads.get())) if threads is not None and threads.get() is not None else 1

    def _deviceArgs(self) -> list:
        """``["--device", value]`` when the form has a non-empty ``clDevice``, else ``[]``."""
        device = getattr(self, "clDevice", None)
        value = device.get() if device is not None else None
        return ["--device", value.strip()] if value and value.strip() else []

    # ---------------------------------------------------------------- paths
    def _extra(self, *parts: str) -> str:
        """A path inside this run's ``extra/`` folder."""
        return self._getExtraPath(*parts)

    def _tmp(self, *parts: str) -> str:
        """A path inside this run's ``tmp/`` folder."""
        return self._getTmpPath(*parts)

    @staticmethod
    def _absolute(path: str) -> str:
        return os.path.abspath(os.path.expanduser(path)) if path else path

    # ---------------------------------------------------------------- reading outputs
    def _readStar(self, *parts: str):
        """All blocks of a STAR file in ``extra/`` (``{name: DataFrame}``), via io.star."""
        return read_star(self._extra(*parts))

    def _requireFile(self, path: str, what: str, errors: list) -> None:
        """Append a sentence to ``errors`` when ``path`` is empty or missing (for ``_validate``)."""
        if not path:
            errors.append(f"No {what} was given.")
        elif not os.path.exists(path):
            errors.append(f"The {what} {path} does not exist.")


class HalfMapInputs:
    """Form helpers of protocols that read a refined ``inputVolume`` with half maps, an optional
    ``solventMask``, an ``mtfFile`` and a ``calibratedPixelSize`` (post-processing, local resolution)."""

    def _pixelSize(self) -> float:
        value = self.calibratedPixelSize.get()
        return float(value) if value and value > 0 else float(self.inputVolume.get().getSamplingRate())

    def _halfMaps(self) -> list:
        return [mrc_path(h) for h in self.inputVolume.get().getHalfMaps(asList=True)]

    def _validateHalfMapInputs(self, purpose: str) -> list:
        """Sentences for a missing map, half maps, mask or MTF file and a bad pixel size."""
        volume = self.inputVolume.get()
        if volume is None:
            return ["Choose the refined map."]
        if not volume.hasHalfMaps():
            return [f"The map {volume.getFileName()} has no half maps: {purpose} needs the two "
                    "unfiltered half maps of a 3D refinement."]
        errors = [f"The half map {path} does not exist." for path in self._halfMaps()
                  if not os.path.exists(path)]
        mask = self.solventMask.get()
        if mask is not None and not os.path.exists(mrc_path(mask)):
            errors.append(f"The mask {mrc_path(mask)} does not exist.")
        if self.mtfFile.get() and not os.path.exists(self.mtfFile.get()):
            errors.append(f"The MTF file {self.mtfFile.get()} does not exist.")
        if self._pixelSize() <= 0:
            errors.append("The pixel size must be > 0.")
        return errors
