"""The plugin as the `scipion` launcher (scipion-app) and pyworkflow's lookups see it.

* "Analyze results": ``Domain.findViewers(run, DESKTOP_TKINTER)`` gives, for each of the seven
  protocols, one of the plugin's viewers first (no viewer class imported here);
* ``scipion inspect polishplugin info``: its protocol and viewer tables (the part that needs no PyPI
  access) show our short labels and non-empty viewer targets;
* ``scipion tests --grep polishplugin`` lists every protocol test class (it runs unittest classes
  only, one per process), and ``scipion test NAME`` reports a skipped test as skipped, not passed.
"""

import contextlib
import io
import os
import subprocess
import unittest
from pathlib import Path

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.tests.protocols.base import PolishTestCase, scipion_launcher  # noqa: E402

ALL_PROTOCOLS = ["ProtPolishImport", "ProtPolishMaskCreate", "ProtPolishTrain", "ProtPolishParticles",
                 "ProtPolishRefine3D", "ProtPolishPostprocess", "ProtPolishLocalRes"]


def _inspect(function, *args) -> str:
    from pwem import Domain

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert not function(False, Domain.getPluginModule("polishplugin"), "polishplugin", *args)
    return out.getvalue()


class TestScipionLookups(PolishTestCase):
    def test_analyze_results_finds_our_viewer_first(self):
        import pyworkflow as pw

        from polishplugin.tests.protocols.viewer_lookup import analyze_results_viewer

        for name in ALL_PROTOCOLS:
            with self.subTest(protocol=name):
                run = pw.Config.getDomain().getProtocols()[name]()
                viewer = analyze_results_viewer(run)
                self.assertTrue(viewer.__module__.startswith("polishplugin.viewers."), (name, viewer))
                self.assertTrue(viewer._targets, viewer)

    def test_scipion_inspect_lists_viewer_targets_and_labels(self):
        """What ``scipion inspect polishplugin info`` prints after its PyPI query (which needs a network)."""
        try:
            from scipion.install import inspect_plugins
        except ImportError as exc:
            self.skipTest(f"scipion-app (the scipion launcher) not installed: {exc}")
        viewers = [line for line in _inspect(inspect_plugins.showViewers).splitlines() if line.startswith("Polish")]
        self.assertGreaterEqual(len(viewers), 6, viewers)
        for line in viewers:
            targets = line.split("Targets", 1)[1].strip()
            self.assertTrue(targets and all(t.startswith("ProtPolish") for t in targets.split(", ")), line)
        covered = {t for line in viewers for t in line.split("Targets", 1)[1].strip().split(", ")}
        self.assertEqual(covered, set(ALL_PROTOCOLS))
        protocols = _inspect(inspect_plugins.showProtocols, False)
        self.assertIn("polishplugin - train polishing", protocols)
        self.assertNotIn("polish - ", protocols)


def _test_classes(folder: Path) -> set:
    """``module.Class`` of every unittest class in ``folder`` (unittest's discovery, as pw_run_tests uses)."""
    top = folder.parents[2]  # the folder above the polishplugin package
    found, todo = set(), [unittest.defaultTestLoader.discover(str(folder), pattern="test*.py", top_level_dir=str(top))]
    while todo:
        item = todo.pop()
        if isinstance(item, unittest.TestSuite):
            todo.extend(item)
        else:
            module, cls, _ = item.id().rsplit(".", 2)
            assert not module.startswith("unittest.loader"), item.id()  # a module that fails to import
            found.add(f"{module}.{cls}")
    return found


class TestScipionTestRunner(PolishTestCase):
    def _run(self, *args, env=None):
        result = subprocess.run([scipion_launcher(self), *args], capture_output=True, text=True, timeout=600,
                                env=env, stdin=subprocess.DEVNULL)
        return result.returncode, result.stdout + result.stderr

    def test_scipion_tests_lists_every_protocol_test_class(self):
        expected = _test_classes(Path(__file__).parent)
        self.assertGreaterEqual(len(expected), 12, expected)
        code, out = self._run("tests", "--grep", "polishplugin")
        self.assertEqual(code, 0, out[-2000:])
        listed = {line.split()[-1] for line in out.splitlines() if line.strip().startswith(("/", "scipion"))}
        self.assertFalse(expected - listed, out[-3000:])
        self.assertNotIn("Error loading the test", out)

    def test_scipion_test_reports_a_skip_as_a_skip(self):
        """The import test of the real tutorial particles skips without its data: pyworkflow's runner
        must not count it among the passed tests."""
        env = {k: v for k, v in os.environ.items() if k != "POLISHPLUGIN_TEST_DATA"}
        name = "polishplugin.tests.protocols.test_import.TestPolishImport.test_import_tutorial_particles"
        code, out = self._run("test", name, env=env)
        self.assertIn(f"[  SKIPPED ] {name}: POLISHPLUGIN_TEST_DATA unset", out)
        self.assertIn("run 0 tests", out)
        self.assertRegex(out, r"PASSED .*0 tests")
        self.assertEqual(code, 1, out[-2000:])  # nothing passed
