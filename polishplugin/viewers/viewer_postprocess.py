"""Scipion viewer of ProtPolishPostprocess: FSC curves, Guinier plot and central slices.

The plots come from :mod:`polishplugin.plots.postprocess` (plain matplotlib, also used to
save PNGs without Scipion); this class only shows them in Scipion windows.
"""

from __future__ import annotations

import os

from ..plots.postprocess import fsc_figure_from_star, guinier_figure_from_star, slices_figure
from ..protocols.protocol_postprocess import OUTPUT_ROOT, ProtPolishPostprocess
from ._views import PolishViewerBase

__all__ = ["PolishPostprocessViewer", "postprocess_maps"]


def postprocess_maps(extra_dir: str) -> dict:
    """The post-processed maps of a run's extra/ folder that exist: ``{label: array}``."""
    from ..io.mrc import read_mrc
    maps = {}
    for label, suffix in (("sharpened", ".mrc"), ("sharpened, masked", "_masked.mrc")):
        path = os.path.join(extra_dir, OUTPUT_ROOT + suffix)
        if os.path.exists(path):
            maps[label] = read_mrc(path)[0]
    return maps


class PolishPostprocessViewer(PolishViewerBase):
    """FSC curves (corrected, unmasked, masked, phase-randomised) with the 0.143 line, the Guinier
    plot (original, MTF-corrected, weighted, sharpened, fitted line) and central map slices."""

    _label = "post-processing plots"
    _targets = [ProtPolishPostprocess]

    _buttons = [("displayFsc", "FSC curves", "_showFsc"), ("displayGuinier", "Guinier plot", "_showGuinier"),
                ("displaySlices", "Central slices of the maps", "_showSlices")]

    def _star(self) -> str:
        return self._extraFile(OUTPUT_ROOT + ".star")

    def _title(self) -> str:
        """The run's label (e.g. "post-process before polishing") heads its plots."""
        return self.protocol.getObjLabel() or ""

    def _showFsc(self, param=None):
        return self._missing(self._star(), "postprocess.star") or \
            self._figure("FSC", fsc_figure_from_star(self._star(), title=self._title()))

    def _showGuinier(self, param=None):
        missing = self._missing(self._star(), "postprocess.star")
        if missing:
            return missing
        figure = guinier_figure_from_star(self._star(), title=self._title())
        if figure is None:
            return [self.errorMessage(f"{self._star()} has no Guinier table.")]
        return self._figure("Guinier plot", figure)

    def _showSlices(self, param=None):
        maps = postprocess_maps(self._extraFile())
        if not maps:
            return [self.errorMessage("The post-processing has no maps yet.")]
        return self._figure("Central slices", slices_figure(maps))
