"""Scipion viewer: Polishing plots: per-frame B-factors and scales, particle tracks per micrograph, logfile.pdf.

The figures are drawn by :mod:`polishplugin.plots.polish`; this module only shows them in Scipion.
"""


from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer

from ..protocols.protocol_polish import ProtPolishParticles

from ..plots.polish import write_viewer_pngs


class PolishParticlesViewer(Viewer):
    """Per-frame B-factor and scale plots, particle tracks (x30) and logfile.pdf of a polishing run."""

    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _label = "bayesian polishing plots"

    _targets = [ProtPolishParticles]

    def _visualize(self, obj, **kwargs):
        prot = obj
        out = prot._getExtraPath("Polish")
        pngs = write_viewer_pngs(out, prot._getExtraPath("viewer"))
        try:
            from pwem.viewers import DataView

            views = [DataView(p) for p in pngs]
        except Exception:  # pragma: no cover - headless
            views = []
        return views
