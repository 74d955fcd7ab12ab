"""Viewers: Agg-safe plot functions (used by the programs too) and Scipion ``Viewer`` classes.

The programs import the plot modules without Scipion, so this package must not import pyworkflow
itself.  The Scipion viewer classes are therefore resolved lazily (PEP 562): pyworkflow's Domain
lists this module's members (``dir`` + ``getattr``), which imports each viewer module on demand.

HOW TO REGISTER A VIEWER: add ONE line ``"ClassName": "module_name",`` to ``_SCIPION_VIEWERS``
below (the module defines the class only where pyworkflow is importable).
"""

import importlib

_SCIPION_VIEWERS = {
    "PolishLocalResViewer": "viewer_local_resolution",
    "PolishParticlesViewer": "viewer_polish",
    "PolishTrainViewer": "viewer_polish_train",
    "PolishRefine3DViewer": "viewer_refine3d",
}

__all__ = sorted(_SCIPION_VIEWERS)


def __getattr__(name):
    module_name = _SCIPION_VIEWERS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{module_name}", __name__)
    try:
        value = getattr(module, name)
    except AttributeError:
        raise AttributeError(f"{name} needs pyworkflow/pwem (Scipion), which are not importable") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_SCIPION_VIEWERS))
