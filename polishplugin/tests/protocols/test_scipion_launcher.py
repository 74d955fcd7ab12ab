"""The plugin as the `scipion` launcher (scipion-app) and pyworkflow's lookups see it.

* "Analyze results": ``Domain.findViewers(run, DESKTOP_TKINTER)`` gives, for each of the seven
  protocols, one of the plugin's viewers first (no viewer class imported here);
* ``scipion inspect polishplugin info``: its protocol and viewer tables (the part that needs no PyPI
  access) show our short labels and non-empty viewer targets.
"""

import contextlib
import io

import pytest

from polishplugin.testing.scipion import require_scipion

require_scipion()

ALL_PROTOCOLS = ["ProtPolishImport", "ProtPolishMaskCreate", "ProtPolishTrain", "ProtPolishParticles",
                 "ProtPolishRefine3D", "ProtPolishPostprocess", "ProtPolishLocalRes"]


@pytest.mark.parametrize("name", ALL_PROTOCOLS)
def test_analyze_results_finds_our_viewer_first(name):
    import pyworkflow as pw

    from polishplugin.tests.protocols.viewer_lookup import analyze_results_viewer

    run = pw.Config.getDomain().getProtocols()[name]()
    viewer = analyze_results_viewer(run)
    assert viewer.__module__.startswith("polishplugin.viewers."), (name, viewer)
    assert viewer._targets, viewer


def _inspect(function, *args) -> str:
    from pwem import Domain

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert not function(False, Domain.getPluginModule("polishplugin"), "polishplugin", *args)
    return out.getvalue()


def test_scipion_inspect_lists_viewer_targets_and_labels():
    """What ``scipion inspect polishplugin info`` prints after its PyPI query (which needs a network)."""
    inspect_plugins = pytest.importorskip("scipion.install.inspect_plugins",
                                          reason="scipion-app (the scipion launcher) not installed")
    viewers = [line for line in _inspect(inspect_plugins.showViewers).splitlines() if line.startswith("Polish")]
    assert len(viewers) >= 6, viewers
    for line in viewers:
        targets = line.split("Targets", 1)[1].strip()
        assert targets and all(t.startswith("ProtPolish") for t in targets.split(", ")), line
    covered = {t for line in viewers for t in line.split("Targets", 1)[1].strip().split(", ")}
    assert covered == set(ALL_PROTOCOLS), covered
    protocols = _inspect(inspect_plugins.showProtocols, False)
    assert "polishplugin - train polishing" in protocols and "polish - " not in protocols, protocols
