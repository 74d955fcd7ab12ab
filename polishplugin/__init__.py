"""polishplugin: Bayesian polishing, 3D auto-refine, post-processing and local resolution for Scipion 3.

Only the Scipion ``Plugin`` class lives here.  It is defined when pwem is importable, so that the
programs and the numeric core also work without Scipion installed.
"""

__version__ = "0.1.0"

try:  # Scipion is optional for the programs and the core
    import pwem
except ImportError:  # pragma: no cover - exercised by the layering test
    pwem = None

if pwem is not None:
    class Plugin(pwem.Plugin):
        """The Scipion plugin: its programs are the ``polishplugin`` console script of this package."""

        _url = "https://github.com/polishplugin/scipion-em-polishplugin"
        _supportedVersions = [__version__]

        @classmethod
        def _defineVariables(cls):
            pass

        @classmethod
        def getProgram(cls):
            """The console script Scipion's runJob calls (found on the environment's PATH)."""
            import shutil
            return shutil.which("polishplugin") or "polishplugin"

        @classmethod
        def defineBinaries(cls, env):
            pass  # everything comes from pip: nothing to build
