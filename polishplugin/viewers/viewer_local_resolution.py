"""Scipion viewer: Local-resolution plots: histogram inside the mask, slices coloured by local resolution,
and the ChimeraX script that colours the sharpened map.

The figures are drawn by :mod:`polishplugin.plots.local_resolution`; this module only shows them in Scipion.
"""

import os

from pyworkflow.viewer import TextView

from ..convert.scipion_objects import mrc_path
from ..plots.local_resolution import histogram_figure, histogram_values, slices_figure
from ..protocols.protocol_local_resolution import OUTPUT_ROOT, ProtPolishLocalRes
from ._views import PolishViewerBase


class PolishLocalResViewer(PolishViewerBase):
    """Histogram of the local resolutions inside the mask, central slices coloured by them, ChimeraX script."""

    _label = "local resolution plots"
    _targets = [ProtPolishLocalRes]

    _buttons = [("displayHistogram", "Histogram of local resolutions", "_showHistogram"),
                ("displaySlices", "Central slices coloured by local resolution", "_showSlices"),
                ("displayChimerax", "ChimeraX script (colours the sharpened map)", "_showChimerax")]

    def _root(self) -> str:
        return self._extraFile(OUTPUT_ROOT)

    def _maps(self):
        """(local resolution, map shown under it, mask or None)."""
        from ..io.mrc import read_mrc

        locres = read_mrc(self._root() + "_locres.mrc")[0]
        sharpened = self.protocol.sharpenedMap.get()
        under = mrc_path(sharpened) if sharpened is not None else self._root() + "_locres_filtered.mrc"
        if not os.path.exists(under):
            under = self._root() + "_locres_filtered.mrc"
        mask = self.protocol.solventMask.get()
        mask_path = mrc_path(mask) if mask is not None else ""
        return locres, read_mrc(under)[0], read_mrc(mask_path)[0] if os.path.exists(mask_path) else None

    def _showHistogram(self, param=None):
        missing = self._missing(self._root() + "_locres.mrc", "local-resolution map")
        if missing:
            return missing
        locres, _, mask = self._maps()
        return self._figure("Local resolution histogram", histogram_figure(histogram_values(locres, mask)))

    def _showSlices(self, param=None):
        missing = self._missing(self._root() + "_locres.mrc", "local-resolution map")
        if missing:
            return missing
        locres, density, mask = self._maps()
        return self._figure("Local resolution slices", slices_figure(density, locres, mask))

    def _showChimerax(self, param=None):
        script = self._root() + "_chimerax.cxc"
        return self._missing(script, "ChimeraX script") or \
            [TextView([script], title="ChimeraX: open with  chimerax " + script)]
