"""Base classes of the protocol tests, so that both pytest and Scipion's own runner run them.

``scipion tests`` (pyworkflow's ``pw_run_tests``) runs unittest classes only, one class per process,
and its ``GTestResult`` counts a skipped test as passed (it has no ``addSkip``).  Every test here is
therefore a ``unittest.TestCase``; :class:`PolishTestCase` reports a skip under that runner as
``[  SKIPPED ] Class.test: reason`` and leaves it out of the number of tests run, so the runner's
``[  PASSED  ] N tests`` never counts it (a class whose tests all skip ends with exit status 1).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import unittest
from pathlib import Path

from pyworkflow.tests import BaseTest, setupTestProject

__all__ = ["PolishTestCase", "PolishProjectTestCase", "setupTestProject"]

log = logging.getLogger("polishplugin.tests")


def _report_skips(result) -> None:
    """Make pyworkflow's GTestResult (``numberTests``, no ``addSkip``) report skips as skips."""
    if getattr(result, "_polishSkips", False) or not hasattr(result, "numberTests"):
        return
    if type(result).addSkip is not unittest.TestResult.addSkip:
        return  # a runner that reports skips itself (pytest, unittest's TextTestResult)
    original = result.addSkip

    def addSkip(test, reason):
        result.numberTests -= 1  # not run, hence not "passed"
        log.warning("[  SKIPPED ] %s: %s", test.id(), reason)
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
