"""What every viewer of the plugin shares: figure and file views, and the ProtocolViewer base.

Each viewer is a pyworkflow ``ProtocolViewer`` (a form with one "eye" button per plot, as in
"Analyze results").  A button's handler returns views: :class:`FigureView` shows a
``matplotlib.figure.Figure`` of :mod:`polishplugin.plots` in its own Tk window (with matplotlib's
toolbar to zoom and save), :class:`FileView` opens a file such as ``logfile.pdf`` with the
desktop's program.  No Java (showj) and no ChimeraX are needed.
"""

from __future__ import annotations

import os

from pyworkflow.protocol import params
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer, View

__all__ = ["FigureView", "FileView", "PolishViewerBase"]


class FigureView(View):
    """A matplotlib Figure in a Tk window; ``figure`` is kept for tests and for saving."""

    def __init__(self, figure, title: str = "", tkParent=None):
        View.__init__(self)
        self.figure = figure
        self.title = title
        self._tkParent = tkParent
        self.window = None

    def show(self):
        import tkinter as tk

        from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg, NavigationToolbar2Tk

        master = self._tkParent if self._tkParent is not None else tk._default_root
        window = tk.Toplevel(master) if master is not None else tk.Tk()
        window.title(self.title or "polishplugin")
        canvas = FigureCanvasTkAgg(self.figure, master=window)
        toolbar = NavigationToolbar2Tk(canvas, window, pack_toolbar=False)
        toolbar.update()
        toolbar.pack(side=tk.BOTTOM, fill=tk.X)
        canvas.get_tk_widget().pack(side=tk.TOP, fill=tk.BOTH, expand=True)
        canvas.draw()
        self.window = window
        return window


class FileView(View):
    """Open a file (``logfile.pdf``) with the desktop's default program, else pyworkflow's text viewer."""

    def __init__(self, path: str, tkParent=None):
        View.__init__(self)
        self.path = path
        self._tkParent = tkParent

    def show(self):
        from pyworkflow.gui.text import openTextFileEditor

        openTextFileEditor(self.path, self._tkParent)


class PolishViewerBase(ProtocolViewer):
    """Helpers of the plugin's viewers; targets nothing itself.

    A viewer lists its plots in ``_buttons``: ``(form key, button label, method name)``; the method
    returns the views of that plot.  ``_defineChoices(form)`` may add fields above the buttons.
    """

    _environments = [DESKTOP_TKINTER]
    _buttons: list = []

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        self._defineChoices(form)
        for key, label, _ in self._buttons:
            form.addParam(key, params.LabelParam, label=label)

    def _defineChoices(self, form):
        pass

    def _getVisualizeDict(self):
        return {key: getattr(self, method) for key, _, method in self._buttons}

    def _extraFile(self, *parts: str) -> str:
        return self.protocol._getExtraPath(*parts)

    def _figure(self, title: str, figure) -> list:
        """One window with ``figure`` (laid out by its plots/ function)."""
        return [FigureView(figure, title, tkParent=self.getTkRoot())]

    def _missing(self, path: str, what: str) -> list:
        """An error view when ``path`` does not exist, else []."""
        if os.path.exists(path):
            return []
        return [self.errorMessage(f"{what}: {path} does not exist (has the run finished?).")]
