"""Scipion viewer: Polishing plots: per-frame B-factors and scales, particle tracks per micrograph, logfile.pdf.

The figures are drawn by :mod:`polishplugin.plots.polish`; this module only shows them in Scipion.
"""

from pathlib import Path

from pyworkflow.protocol import params

from ..plots.polish import plot_bfactors, plot_scales, polish_figures
from ..protocols.protocol_polish import ProtPolishParticles
from ._views import FileView, PolishViewerBase

TRACKS_SUFFIX = "_tracks.star"


class PolishParticlesViewer(PolishViewerBase):
    """Per-frame B-factors (Å²) and scales, particle tracks (x30) of a chosen micrograph, logfile.pdf."""

    _label = "bayesian polishing plots"
    _targets = [ProtPolishParticles]

    def _polishDir(self) -> Path:
        return Path(self._extraFile("Polish"))

    def _trackFiles(self) -> list:
        """The per-micrograph track files, in the order of ``plots.polish.polish_figures``."""
        return sorted(self._polishDir().rglob("*" + TRACKS_SUFFIX))

    def _micrographNames(self) -> list:
        return [path.name[: -len(TRACKS_SUFFIX)] for path in self._trackFiles()] or ["(no tracks yet)"]

    _buttons = [("displayBfactors", "Per-frame B-factors", "_showBfactors"),
                ("displayScales", "Per-frame scale factors", "_showScales"),
                ("displayTracks", "Particle tracks of the chosen micrograph", "_showTracks"),
                ("displayLogfile", "logfile.pdf (all plots, every micrograph)", "_showLogfile")]

    def _defineChoices(self, form):
        form.addParam("micrograph", params.EnumParam, choices=self._micrographNames(), default=0,
                      label="Micrograph", help="The micrograph whose particle tracks are shown.")

    def _bfactors(self):
        from ..io.polish import read_bfactors

        return read_bfactors(self._polishDir() / "bfactors.star")

    def _showBfactors(self, param=None):
        missing = self._missing(str(self._polishDir() / "bfactors.star"), "bfactors.star")
        if missing:
            return missing
        figure = plot_bfactors(self._bfactors().bfactor_a2)
        figure.axes[0].set_ylabel("B-factor (Å²)")
        return self._figure("Per-frame B-factors", figure)

    def _showScales(self, param=None):
        missing = self._missing(str(self._polishDir() / "bfactors.star"), "bfactors.star")
        return missing or self._figure("Per-frame scale factors", plot_scales(self._bfactors().log_scale))

    def _showTracks(self, param=None):
        files = self._trackFiles()
        index = int(self.micrograph.get() or 0)
        if not files or index >= len(files):
            return [self.errorMessage(f"No particle tracks in {self._polishDir()} yet.")]
        name = files[index].name[: -len(TRACKS_SUFFIX)]
        figures = dict(polish_figures(self._polishDir(), max_micrographs=index + 1))
        return self._figure(f"Particle tracks: {name}", figures[name + "_tracks"])

    def _showLogfile(self, param=None):
        path = str(self._polishDir() / "logfile.pdf")
        return self._missing(path, "logfile.pdf") or [FileView(path, tkParent=self.getTkRoot())]
