"""Scipion viewer: Plots of a 3D auto-refine run (``polishplugin refine3d``) and its Scipion viewer.

The figures are drawn by :mod:`polishplugin.plots.refine3d`; this module only shows them in Scipion.
"""

import os

from pyworkflow.protocol import params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, ProtocolViewer
from ..protocols.protocol_refine3d import OUTPUT_ROOT, ProtPolishRefine3D

from ..plots.refine3d import fsc_per_iteration_figure, progress_figure, angular_distribution_figure, map_slices_figure


class PolishRefine3DViewer(ProtocolViewer):
    """FSC per iteration, resolution and sampling per iteration, angular distribution, map slices."""

    _label = "3D auto-refine plots"
    _targets = [ProtPolishRefine3D]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayFsc", params.LabelParam, label="Gold-standard FSC per iteration")
        form.addParam("displayProgress", params.LabelParam, label="Resolution and sampling per iteration")
        form.addParam("displayAngDist", params.LabelParam, label="Angular distribution")
        form.addParam("displaySlices", params.LabelParam, label="Central slices of the map")

    def _getVisualizeDict(self):
        return {"displayFsc": self._show(fsc_per_iteration_figure, ""),
                "displayProgress": self._show(progress_figure, ""),
                "displayAngDist": self._show(angular_distribution_figure, "_data.star"),
                "displaySlices": self._show(map_slices_figure, "_class001.mrc")}

    def _show(self, func, suffix):
        def show(param=None):
            from pwem.viewers.plotter import EmPlotter

            root = self.protocol._getExtraPath(OUTPUT_ROOT)
            if suffix and not os.path.exists(root + suffix):
                return [self.errorMessage("The 3D auto-refine has no output yet.")]
            plotter = EmPlotter(windowTitle="3D auto-refine")
            func(root + suffix, fig=plotter.figure)
            return [plotter]
        return show
