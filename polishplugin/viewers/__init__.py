"""Scipion viewers: each shows the figures of :mod:`polishplugin.plots` for one finished protocol.

Scipion's viewer lookup (``Domain.findViewers``, used by "Analyze results" and ``scipion inspect``)
lists this package's members and reads each class's ``_targets``, so every viewer class is imported
here.  The figures themselves are drawn by ``polishplugin.plots`` (no Scipion), which the programs use too.
"""

from .viewer_local_resolution import PolishLocalResViewer
from .viewer_maps import PolishMapsViewer
from .viewer_polish import PolishParticlesViewer
from .viewer_polish_train import PolishTrainViewer
from .viewer_postprocess import PolishPostprocessViewer
from .viewer_refine3d import PolishRefine3DViewer

__all__ = ["PolishLocalResViewer", "PolishMapsViewer", "PolishParticlesViewer", "PolishPostprocessViewer",
           "PolishRefine3DViewer", "PolishTrainViewer"]
