"""polishplugin: Bayesian polishing, 3D auto-refine, post-processing and local resolution for Scipion 3.

Only the Scipion ``Plugin`` class lives here.  It is built lazily, on first access, when pwem is
importable, so that the programs and the numeric core work without Scipion installed.
"""

__version__ = "0.1.0"

_references = ["Zivanov2019", "Scheres2012"]


def _define_plugin():
    """Build the Scipion ``Plugin`` class (imports pwem, hence pyworkflow and its configuration)."""
    import os
    import shutil
    import sys

    import pwem

    from .constants import PROGRAM

    class Plugin(pwem.Plugin):
        """The Scipion plugin: its programs are the ``polishplugin`` console script of this package.

        Nothing is built or downloaded: numpy/scipy/pyopencl/mpi4py come from pip, so
        ``defineBinaries`` is empty and the program is found beside the running Python or on PATH.
        """

        _url = "https://github.com/polishplugin/scipion-em-polishplugin"
        _supportedVersions = [__version__]
        _pathVars = []

        @classmethod
        def _defineVariables(cls):
            pass

        @classmethod
        def getProgram(cls):
            """The console script that Scipion's ``runJob`` calls (an absolute path when found)."""
            beside = os.path.join(os.path.dirname(sys.executable), PROGRAM)
            if os.path.exists(beside):
                return beside
            return shutil.which(PROGRAM) or PROGRAM

        @classmethod
        def getEnviron(cls):
            """The environment of the programs: this Python's bin folder first on PATH.

            runJob needs a real environment (not None) to build MPI command lines.
            """
            import pyworkflow.utils as pwutils

            environ = pwutils.Environ(os.environ)
            environ.update({"PATH": os.path.dirname(sys.executable)}, position=pwutils.Environ.BEGIN)
            return environ

        @classmethod
        def defineBinaries(cls, env):
            pass  # everything comes from pip: nothing to build

    Plugin.__module__ = __name__
    Plugin.__qualname__ = "Plugin"
    return Plugin


def __getattr__(name):
    # ``Plugin`` is made on first use (PEP 562), so that ``import polishplugin`` (core, programs,
    # convert) neither needs Scipion nor freezes pyworkflow's environment-based configuration
    # before a test or a program has set SCIPION_HOME & co.  pyworkflow's Domain reads
    # ``polishplugin.Plugin`` and gets the class.
    if name == "Plugin":
        try:
            plugin = _define_plugin()
        except ImportError as exc:
            raise AttributeError(f"polishplugin.Plugin needs Scipion (pwem): {exc}") from None
        globals()["Plugin"] = plugin
        return plugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
