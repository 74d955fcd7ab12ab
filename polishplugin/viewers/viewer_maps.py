"""Scipion viewer of the import and mask-creation runs: central slices of their maps and masks.

pwem's generic viewers of a Volume or VolumeMask (ChimeraX, Xmipp's showj) need programs that a pip
installation of Scipion lacks, so "Analyze results" on these runs opens this viewer instead.  The
figure is :func:`polishplugin.plots.postprocess.slices_figure`.
"""

from ..convert.scipion_objects import mrc_path
from ..plots.postprocess import slices_figure
from ..protocols.protocol_import import ProtPolishImport
from ..protocols.protocol_mask_create import ProtPolishMaskCreate
from ._views import PolishViewerBase


class PolishMapsViewer(PolishViewerBase):
    """Central xy/xz/yz slices of the run's map(s) and mask; for an import, what it imported."""

    _label = "map and mask slices"
    _targets = [ProtPolishImport, ProtPolishMaskCreate]

    _buttons = [("displaySlices", "Central slices of the map and the mask", "_showSlices"),
                ("displaySummary", "What the run produced", "_showSummary")]

    def _volumes(self) -> dict:
        """{label: Scipion volume} of the run: its inputs and outputs that are maps or masks."""
        prot = self.protocol
        volumes = {}
        if isinstance(prot, ProtPolishMaskCreate) and prot.inputVolume.get() is not None:
            volumes["input map"] = prot.inputVolume.get()
        for name, label in (("outputVolume", "map"), ("outputMask", "mask")):
            if getattr(prot, name, None) is not None:
                volumes[label] = getattr(prot, name)
        return volumes

    def _showSlices(self, param=None):
        from ..io.mrc import read_mrc

        volumes = self._volumes()
        if not volumes:
            return [self.errorMessage("The run has no map or mask (yet).")]
        maps = {label: read_mrc(mrc_path(vol))[0] for label, vol in volumes.items()}
        return self._figure("Map and mask slices", slices_figure(maps))

    def _showSummary(self, param=None):
        lines = []
        for name, output in self.protocol.iterOutputAttributes():
            size = f", {output.getSize()} items" if hasattr(output, "getSize") else ""
            where = f": {output.getFileName()}" if hasattr(output, "getFileName") and output.getFileName() else ""
            lines.append(f"{name} ({output.getClassName()}{size}){where}")
        return [self.infoMessage("\n".join(lines) or "No output yet.", title="Outputs")]
