"""RELION STAR/MRC files and Scipion objects.  ``star``, ``mrc`` and ``labels`` need no Scipion; the
modules that build Scipion objects import pyworkflow/pwem themselves."""
