"""Scipion viewer of ProtPolishPostprocess: FSC curves, Guinier plot and central slices.

The plots come from :mod:`polishplugin.plots.postprocess` (plain matplotlib, also used to
save PNGs without Scipion); this class only draws them into Scipion plotter windows.
"""

from __future__ import annotations

import os

from pyworkflow.protocol import params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, ProtocolViewer

from ..protocols.protocol_postprocess import OUTPUT_ROOT, ProtPolishPostprocess
from ..plots.postprocess import fsc_figure_from_star, guinier_figure_from_star, slices_figure

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


class PolishPostprocessViewer(ProtocolViewer):
    """FSC curves (corrected, unmasked, masked, phase-randomised) with the 0.143 line, the Guinier
    plot (original, MTF-corrected, weighted, sharpened, fitted line) and central map slices."""

    _label = "post-processing plots"
    _targets = [ProtPolishPostprocess]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayFsc", params.LabelParam, label="FSC curves")
        form.addParam("displayGuinier", params.LabelParam, label="Guinier plot")
        form.addParam("displaySlices", params.LabelParam, label="Central slices of the maps")

    def _getVisualizeDict(self):
        return {"displayFsc": self._showFsc, "displayGuinier": self._showGuinier,
                "displaySlices": self._showSlices}

    def _star(self) -> str:
        return self.protocol._getExtraPath(OUTPUT_ROOT + ".star")

    def _plotter(self, title: str):
        from pwem.viewers.plotter import EmPlotter
        return EmPlotter(windowTitle=title)

    def _showFsc(self, param=None):
        if not os.path.exists(self._star()):
            return [self.errorMessage("The post-processing has no output yet.")]
        plotter = self._plotter("FSC")
        fsc_figure_from_star(self._star(), fig=plotter.figure)
        return [plotter]

    def _showGuinier(self, param=None):
        if not os.path.exists(self._star()):
            return [self.errorMessage("The post-processing has no output yet.")]
        plotter = self._plotter("Guinier plot")
        if guinier_figure_from_star(self._star(), fig=plotter.figure) is None:
            return [self.errorMessage("postprocess.star has no Guinier table.")]
        return [plotter]

    def _showSlices(self, param=None):
        maps = postprocess_maps(self.protocol._getExtraPath())
        if not maps:
            return [self.errorMessage("The post-processing has no maps yet.")]
        plotter = self._plotter("Central slices")
        slices_figure(maps, fig=plotter.figure)
        return [plotter]
