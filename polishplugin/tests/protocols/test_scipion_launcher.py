"""The plugin as the `scipion` launcher (scipion-app) and pyworkflow's lookups see it.

* "Analyze results": ``Domain.findViewers(run, DESKTOP_TKINTER)`` gives, for each of the seven
  protocols, one of the plugin's viewers first (no viewer class imported here);
* ``scipion inspect polishplugin info``: its protocol and viewer tables (the part that needs no PyPI
  access) show our short labels and non-empty viewer targets.
"""

import contextlib
import io

from polishplugin.testing.scipion import require_scipion

require_scipion()

from polishplugin.tests.protocols.base import PolishTestCase  # noqa: E402

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
