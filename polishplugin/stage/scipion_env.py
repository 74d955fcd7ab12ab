"""A headless Scipion environment for the stage, the demo and the tests (no GUI, no downloads, no prior state).

pyworkflow reads its configuration from environment variables *when it is first imported*, so
:func:`setup_scipion_env` must run before anything imports ``pyworkflow`` or ``pwem``.  The
``conftest.py`` beside this file calls it at collection time; ``.ci/run`` and ``scripts/test.sh``
export the same variables for the shell.

What pyworkflow 3.11.7 / pwem 3.11.1 need, headless:

* ``SCIPION_HOME``: a folder with ``config/hosts.conf`` (the "localhost" host that runs protocols as
  sub-processes) and ``config/scipion.conf`` (may be empty).  We make a temporary one unless the
  caller already points ``SCIPION_HOME`` at a folder that has ``config/hosts.conf``.
* ``SCIPION_DOMAIN=pwem``: the domain whose plugins (entry points ``pyworkflow.plugin``) are loaded.
* ``SCIPION_USER_DATA`` (projects, logs) and ``SCIPION_TESTS_OUTPUT``: kept inside the temporary home
  so tests never write into ``~/ScipionUserData``.
* ``SCIPION_TESTS``: test data sets folder (unused: our tests make their own data).
* ``SCIPION_TEST_NOSYNC=1``: never try to download test data sets.
* ``MPLBACKEND=Agg``: viewers and plots must not need a display.
* The venv's ``bin`` first on ``PATH``: protocols run ``python -m pyworkflow.apps.pw_protocol_run``
  and our ``polishplugin`` console script in child processes.

How to test a protocol (file ``polishplugin/tests/protocols/test_<step>.py``)::

    import pytest
    from polishplugin.testing.scipion import require_scipion
    require_scipion()                         # skips the module when pyworkflow/pwem are missing
    from pyworkflow.tests import BaseTest, setupTestProject
    from polishplugin.protocols import ProtPolishImport, ProtPolishPostprocess

    class TestPostprocess(BaseTest):
        @classmethod
        def setUpClass(cls):
            setupTestProject(cls)             # a fresh project under SCIPION_TESTS_OUTPUT

        def test_runs(self):
            imp = self.newProtocol(ProtPolishImport, particlesStar=..., halfMap1=..., halfMap2=...)
            self.launchProtocol(imp)          # runs in a child process; raises if it failed
            prot = self.newProtocol(ProtPolishPostprocess, inputVolume=imp.outputVolume)
            self.launchProtocol(prot)
            self.assertIsNotNone(prot.outputVolume)

``python -m pytest polishplugin/tests/protocols`` then works from a plain shell.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["setup_scipion_env", "HOSTS_CONF"]

#: hosts.conf for a single machine: protocols run as local sub-processes; MPI through mpirun.
HOSTS_CONF = """[localhost]
PARALLEL_COMMAND = mpirun --allow-run-as-root --oversubscribe -np %_(JOB_NODES)d %_(COMMAND)s
ADDRESS = localhost
"""


def _write_home(home: Path) -> None:
    config = home / "config"
    config.mkdir(parents=True, exist_ok=True)
    if not (config / "hosts.conf").exists():
        (config / "hosts.conf").write_text(HOSTS_CONF)
    if not (config / "scipion.conf").exists():
        (config / "scipion.conf").write_text("[PYWORKFLOW]\n\n[PLUGINS]\n")
    for sub in ("data/tests", "user_data", "software/em", "software/lib", "software/bindings"):
        (home / sub).mkdir(parents=True, exist_ok=True)


def setup_scipion_env(home: str | os.PathLike | None = None) -> Path:
    """Export the variables above (keeping those the caller already set) and return SCIPION_HOME.

    Call before the first ``import pyworkflow``.  ``home`` defaults to ``$SCIPION_HOME`` when that
    folder has ``config/hosts.conf``, else a new temporary folder.
    """
    current = os.environ.get("SCIPION_HOME")
    if home is None and current and (Path(current) / "config" / "hosts.conf").exists():
        home_path = Path(current)
    else:
        if home is not None:
            home_path = Path(home)
        else:
            home_path = Path(tempfile.mkdtemp(prefix="polish_scipion_"))
            atexit.register(remove_home, home_path)  # a throw-away home: gone when the run ends
        _write_home(home_path)
    os.environ["SCIPION_HOME"] = str(home_path)
    defaults = {
        "SCIPION_DOMAIN": "pwem",
        "SCIPION_TEST_NOSYNC": "1",
        "SCIPION_USER_DATA": str(home_path / "user_data"),
        "SCIPION_TESTS": str(home_path / "data" / "tests"),
        "SCIPION_TESTS_OUTPUT": str(home_path / "user_data" / "Tests"),
        "SCIPION_SOFTWARE": str(home_path / "software"),
        "MPLBACKEND": "Agg",
        "SCIPION_NOGUI": "1",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    bindir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    _sync_loaded_config(home_path)
    return home_path


def _sync_loaded_config(home: Path) -> None:
    """If pyworkflow was imported before the variables were set, update its ``Config`` in place."""
    config_module = sys.modules.get("pyworkflow.config")
    if config_module is None:
        return
    config = config_module.Config
    if getattr(config, "SCIPION_HOME", None) == str(home) and config.SCIPION_DOMAIN:
        return
    values = {
        "SCIPION_HOME": str(home), "SCIPION_HOME_DEFINED": True,
        "SCIPION_DOMAIN": os.environ["SCIPION_DOMAIN"],
        "SCIPION_USER_DATA": os.environ["SCIPION_USER_DATA"],
        "SCIPION_LOGS": os.path.join(os.environ["SCIPION_USER_DATA"], "logs"),
        "SCIPION_TESTS": os.environ["SCIPION_TESTS"],
        "SCIPION_TESTS_OUTPUT": os.environ["SCIPION_TESTS_OUTPUT"],
        "SCIPION_SOFTWARE": os.environ["SCIPION_SOFTWARE"],
        "SCIPION_TEST_NOSYNC": True,
        "SCIPION_CONFIG": str(home / "config" / "scipion.conf"),
        "SCIPION_LOCAL_CONFIG": str(home / "config" / "scipion.conf"),
        "SCIPION_HOSTS": str(home / "config" / "hosts.conf"),
        "SCIPION_PROTOCOLS": str(home / "config" / "protocols.conf"),
    }
    for name, value in values.items():
        if hasattr(config, name):
            setattr(config, name, value)


def remove_home(home: Path) -> None:
    """Delete a temporary SCIPION_HOME made by :func:`setup_scipion_env` (best effort)."""
    shutil.rmtree(home, ignore_errors=True)
