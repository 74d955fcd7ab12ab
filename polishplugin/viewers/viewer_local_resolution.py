"""Scipion viewer: Local-resolution plots: histogram inside the mask, slices coloured by local resolution.

The figures are drawn by :mod:`polishplugin.plots.local_resolution`; this module only shows them in Scipion.
"""

import os

from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer

from ..protocols.protocol_local_resolution import ProtPolishLocalRes

from ..plots.local_resolution import histogram_figure, histogram_values, save_png, slices_figure


class PolishLocalResViewer(Viewer):
    """Show the local-resolution histogram and coloured slices of a ``ProtPolishLocalRes`` run."""

    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _label = "local resolution plots"

    _targets = [ProtPolishLocalRes]

    def _visualize(self, obj, **kwargs):
        from ..io.mrc import read_mrc

        prot = obj
        root = prot._getExtraPath("relion")
        locres, _ = read_mrc(root + "_locres.mrc")
        filt, _ = read_mrc(root + "_locres_filtered.mrc")
        mask = None
        if prot.solventMask.get() is not None:
            from ..convert.scipion_objects import mrc_path as _mrc_path
            mask_path = _mrc_path(prot.solventMask.get())
            mask = read_mrc(mask_path)[0] if os.path.exists(mask_path) else None
        values = histogram_values(locres, mask)
        pngs = []
        for name, fig in (("histogram", histogram_figure(values)),
                          ("slices", slices_figure(filt, locres, mask))):
            path = prot._getExtraPath(f"viewer_{name}.png")
            save_png(fig, path)
            pngs.append(path)
        views = []
        try:
            from pwem.viewers import DataView
            views = [DataView(p) for p in pngs]
        except Exception:  # pragma: no cover - headless
            pass
        script = root + "_chimerax.cxc"
        if os.path.exists(script):
            from pyworkflow.viewer import TextView
            views.append(TextView([script], title="ChimeraX: colour the map by local resolution"))
        return views

