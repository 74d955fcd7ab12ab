"""Open a finished run's plots the way Scipion's "Analyze results" does, for the protocol tests.

The viewer is found only through pyworkflow's lookup (``Domain.findViewers(run, DESKTOP_TKINTER)``,
the call of ``ProtocolsView._analyzeResults``); no viewer class of the plugin is imported.  Every
button of the viewer's form is pressed (its handler called, as ``ProtocolViewer._visualizeParam``
does) and every figure it returns must be non-blank.  With ``POLISHPLUGIN_VIEWER_SHOTS=DIR`` and an X
display, each figure window is also shown and saved as ``DIR/<run>_<button>.png`` (a screenshot of
the Tk window, taken with Pillow's ImageGrab).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["open_every_view", "assert_figure_not_blank", "analyze_results_viewer"]


def analyze_results_viewer(run):
    """The viewer class "Analyze results" opens for ``run`` (the first that Scipion's lookup finds)."""
    import pyworkflow as pw
    from pyworkflow.viewer import DESKTOP_TKINTER

    viewers = pw.Config.getDomain().findViewers(run, DESKTOP_TKINTER)
    assert viewers, f"Scipion's viewer lookup finds no viewer for {run.getClassName()}"
    return viewers[0]


def assert_figure_not_blank(figure, what: str = "") -> None:
    """Every figure has an axes with data, and its rendering is not a flat image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    assert figure.axes, f"{what}: figure without axes"
    assert any(ax.has_data() for ax in figure.axes), f"{what}: no axes has data"
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float64)
    grey = image.mean(-1)
    assert grey.std() > 5 and len(np.unique(grey)) > 16, f"{what}: the figure looks blank"


def _screenshot(view, path: str) -> None:
    from PIL import ImageGrab

    window = view.show()
    window.update()
    window.lift()
    for _ in range(5):
        window.update()
    x, y = window.winfo_rootx(), window.winfo_rooty()
    w, h = window.winfo_width(), window.winfo_height()
    ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=os.environ["DISPLAY"]).save(path)
    window.destroy()


def open_every_view(project, run, module_prefix: str = "polishplugin.viewers") -> dict:
    """Find ``run``'s viewer through Scipion's lookup, press every button of its form and check each
    view; returns ``{button: [views]}``."""
    from pyworkflow.viewer import MSG_ERROR, MessageView, ProtocolViewer, TextView

    cls = analyze_results_viewer(run)
    assert cls.__module__.startswith(module_prefix), \
        f"'Analyze results' on {run.getClassName()} opens {cls.__module__}.{cls.__name__}, not the plugin's viewer"
    viewer = cls(project=project, protocol=run)
    assert isinstance(viewer, ProtocolViewer), cls
    viewer.setProtocol(run)  # what ProtocolViewer.visualize does before it shows the form
    buttons = viewer._getVisualizeDict()
    assert buttons, f"{cls.__name__} has no button"
    shots = os.environ.get("POLISHPLUGIN_VIEWER_SHOTS") if os.environ.get("DISPLAY") else None
    opened = {}
    for key, handler in buttons.items():
        views = handler(key)
        assert views, f"{cls.__name__}.{key} returned no view"
        for j, view in enumerate(views):
            what = f"{cls.__name__}.{key}"
            if isinstance(view, MessageView):
                assert view._msgType != MSG_ERROR, f"{what}: {view.getMessage()}"
            elif hasattr(view, "figure"):
                assert_figure_not_blank(view.figure, what)
                if shots:
                    os.makedirs(shots, exist_ok=True)
                    _screenshot(view, os.path.join(shots, f"{run.getClassName()}_{run.getObjId()}_{key}_{j}.png"))
            elif isinstance(view, TextView):
                for path in view.getFileList():
                    assert os.path.getsize(path) > 0, f"{what}: {path} is empty"
            elif hasattr(view, "path"):
                assert os.path.getsize(view.path) > 1000, f"{what}: {view.path}"
            else:
                raise AssertionError(f"{what}: unexpected view {view!r}")
        opened[key] = views
    return opened
