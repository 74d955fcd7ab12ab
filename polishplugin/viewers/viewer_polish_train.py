"""Scipion viewer: Polishing training plots: the held-out score (TSC) of every evaluation and the chosen parameters.

The figures are drawn by :mod:`polishplugin.plots.train`; this module only shows them in Scipion.
"""


from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer

from ..protocols.protocol_polish_train import ProtPolishTrain

from ..plots.train import write_train_png


class PolishTrainViewer(Viewer):
    """TSC over the training evaluations and the chosen sigmas."""

    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _label = "training plots"

    _targets = [ProtPolishTrain]

    def _visualize(self, obj, **kwargs):
        png = write_train_png(obj._getExtraPath("Train", "tsc_trace.star"),
                              obj._getExtraPath("viewer", "tsc_trace.png"))
        try:
            from pwem.viewers import DataView

            return [DataView(png)]
        except Exception:  # pragma: no cover - headless
            return []
