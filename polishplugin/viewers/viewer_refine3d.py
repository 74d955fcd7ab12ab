"""Scipion viewer of a 3D auto-refine run (``polishplugin refine3d``).

The figures are drawn by :mod:`polishplugin.plots.refine3d`; this module only shows them in Scipion.
"""

import glob
from functools import partial

from ..plots.refine3d import angular_distribution_figure, fsc_per_iteration_figure, map_slices_figure, progress_figure
from ..protocols.protocol_refine3d import OUTPUT_ROOT, ProtPolishRefine3D
from ._views import PolishViewerBase


class PolishRefine3DViewer(PolishViewerBase):
    """FSC per iteration, resolution and sampling per iteration, angular distribution, map slices."""

    _label = "3D auto-refine plots"
    _targets = [ProtPolishRefine3D]
    _buttons = [("displayFsc", "Gold-standard FSC per iteration", "_showFsc"),
                ("displayProgress", "Resolution and sampling per iteration", "_showProgress"),
                ("displayAngDist", "Angular distribution", "_showAngularDistribution"),
                ("displaySlices", "Central slices of the map", "_showSlices")]

    def _root(self) -> str:
        return self._extraFile(OUTPUT_ROOT)

    def _perIteration(self, title, func):
        if not glob.glob(self._root() + "_it[0-9][0-9][0-9]_model.star"):
            return [self.errorMessage("The 3D auto-refine has no iteration yet.")]
        return self._figure(title, func(self._root()))

    def _final(self, suffix, title, func):
        path = self._root() + suffix
        return self._missing(path, "3D auto-refine output") or self._figure(title, func(path))

    def _showFsc(self, param=None):
        return self._perIteration("FSC per iteration", fsc_per_iteration_figure)

    def _showProgress(self, param=None):
        return self._perIteration("Resolution and sampling per iteration", progress_figure)

    def _showAngularDistribution(self, param=None):
        symmetry = self.protocol.symmetryGroup.get() if hasattr(self.protocol, "symmetryGroup") else None
        return self._final("_data.star", "Angular distribution",
                           partial(angular_distribution_figure, symmetry=symmetry))

    def _showSlices(self, param=None):
        return self._final("_class001.mrc", "Central slices", map_slices_figure)
