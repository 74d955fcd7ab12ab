"""Scipion viewer: Polishing training plots: the held-out score (TSC) of every evaluation and the chosen sigmas.

The figure is drawn by :mod:`polishplugin.plots.train`; this module only shows it in Scipion.
"""

from ..plots.train import plot_tsc_trace
from ..protocols.protocol_polish_train import ProtPolishTrain
from ._views import PolishViewerBase


class PolishTrainViewer(PolishViewerBase):
    """TSC over the training evaluations (best so far) and the sigmas tried, titled with the chosen ones."""

    _label = "training plots"
    _targets = [ProtPolishTrain]

    _buttons = [("displayTsc", "Held-out TSC and sigmas per evaluation", "_showTsc")]

    def _chosen(self):
        """(s_vel, s_div, s_acc) of the run's output, or None before it has one."""
        out = getattr(self.protocol, "outputParams", None)
        if out is None or not hasattr(out, "sVel"):
            return None
        return (out.sVel.get(), out.sDiv.get(), out.sAcc.get())

    def _showTsc(self, param=None):
        trace = self._extraFile("Train", "tsc_trace.star")
        return self._missing(trace, "tsc_trace.star") or \
            self._figure("Polishing training", plot_tsc_trace(trace, self._chosen()))
