"""Base classes of the protocol tests, so that both pytest and Scipion's own runner run them.

``scipion tests`` (pyworkflow's ``pw_run_tests``) runs unittest classes only, one class per process,
and its ``GTestResult`` counts a skipped test as passed (it has no ``addSkip``).  Every test here is
therefore a ``unittest.TestCase``; :class:`PolishTestCase` reports a skip under that runner as
``[  SKIPPED ] Class.test: reason`` and leaves it out of the number of tests run, so the runner's
``[  PASSED  ] N tests`` never counts it (a class whose tests all skip ends with exit status 1).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

from polishplugin.stage.scipion_env import setup_scipion_env

setup_scipion_env()  # before the first pyworkflow import
try:
    import pwem  # noqa: F401
    from pyworkflow.tests import BaseTest, setupTestProject
except ImportError as _exc:  # without Scipion these tests skip (pytest) or are skipped (unittest)
    _reason = f"Scipion (pyworkflow, pwem) not importable: {_exc}"
    try:
        import pytest
    except ImportError:
        raise unittest.SkipTest(_reason) from None
    pytest.skip(_reason, allow_module_level=True)

__all__ = ["PolishTestCase", "PolishProjectTestCase", "setupTestProject", "scipion_launcher", "slow"]


def slow(test):
    """pytest's ``slow`` mark (deselect with -m 'not slow'); a no-op where pytest is not installed
    (``scipion tests`` in a Scipion installed without it)."""
    try:
        import pytest
    except ImportError:
        return test
    return pytest.mark.slow(test)

def _report_skips(result) -> None:
    """Make pyworkflow's GTestResult (``numberTests``, no ``addSkip``) report skips as skips."""
    if getattr(result, "_polishSkips", False) or not hasattr(result, "numberTests"):
        return
    if type(result).addSkip is not unittest.TestResult.addSkip:
        return  # a runner that reports skips itself (pytest, unittest's TextTestResult)
    original = result.addSkip

    def addSkip(test, reason):
        result.numberTests -= 1  # not run, hence not "passed"
        print(f"[  SKIPPED ] {test.id()}: {reason}", flush=True)
        original(test, reason)

    result.addSkip = addSkip
    result._polishSkips = True


def _run(self, result=None):
    if result is not None:
        _report_skips(result)
    return unittest.TestCase.run(self, result)


class PolishTestCase(unittest.TestCase):
    """A test without a Scipion project; ``self.tmp``: a fresh folder per test."""

    run = _run

    def setUp(self):
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"polish_{self._testMethodName}_"))
        self.addCleanup(shutil.rmtree, self.tmp, True)


class PolishProjectTestCase(BaseTest):
    """pyworkflow's BaseTest (``setupTestProject(cls)`` in ``setUpClass``) that reports skips as skips."""

    run = _run


def scipion_launcher(test: unittest.TestCase) -> str:
    """The ``scipion`` console script of scipion-app beside this Python (or on PATH); skips without it."""
    path = shutil.which("scipion", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if path is None:
        test.skipTest("scipion-app (the scipion launcher) not installed")
    return path


def readme_command(test: unittest.TestCase, start: str) -> list:
    """The tokens of README.rst's shell command that begins with ``start`` (``\\`` continuations
    joined), so that a test runs a command exactly as the README writes it; skips without README."""
    import shlex

    readme = Path(__file__).resolve().parents[3] / "README.rst"
    if not readme.exists():
        test.skipTest(f"no README.rst beside the package ({readme}): not a checkout")
    lines = readme.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(start):
            text = line.strip()
            while text.endswith("\\"):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            return shlex.split(text, comments=True)
    raise AssertionError(f"README.rst has no command starting with {start!r}")
