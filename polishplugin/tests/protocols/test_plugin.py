"""The plugin is found by pyworkflow's Domain (entry point) and its protocols are listed."""

import json
from configparser import ConfigParser
from pathlib import Path

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.tests.protocols.base import PolishTestCase  # noqa: E402

ALL_PROTOCOLS = ["ProtPolishImport", "ProtPolishMaskCreate", "ProtPolishTrain", "ProtPolishParticles",
                 "ProtPolishRefine3D", "ProtPolishPostprocess", "ProtPolishLocalRes"]


class TestPluginDiscovery(PolishTestCase):
    """The plugin, its protocols, viewers, templates and program as pyworkflow finds them."""

    def test_domain_discovers_plugin(self):
        import pyworkflow as pw
        domain = pw.Config.getDomain()
        plugins = domain.getPlugins()
        assert "polishplugin" in plugins
        plugin = domain.getPlugin("polishplugin")
        assert plugin.Plugin.getProgram().endswith("polishplugin")

    def test_domain_lists_import_protocol(self):
        import pyworkflow as pw
        protocols = pw.Config.getDomain().getProtocols()
        assert "ProtPolishImport" in protocols
        cls = protocols["ProtPolishImport"]
        assert cls.getClassPackageName() == "polishplugin"
        assert not cls.isBase() and cls._label == "import RELION project"
        assert protocols["ProtPolishBase"].isBase()  # the helper base is not offered in the GUI

    def test_protocols_conf_lists_all_seven_in_spa_tree(self):
        conf = Path(__import__("polishplugin").__file__).with_name("protocols.conf")
        cp = ConfigParser()
        cp.optionxform = str
        cp.read(conf)
        tree = json.loads(cp.get("PROTOCOLS", "Protocols SPA"))
        section = [node for node in tree if node.get("text") == "Polishing stage"]
        assert len(section) == 1
        names = [child["value"] for child in section[0]["children"]]
        assert names == ALL_PROTOCOLS

    def test_every_existing_protocol_class_is_unique_and_labelled(self):
        import pyworkflow as pw
        protocols = pw.Config.getDomain().getProtocols()
        ours = {k: v for k, v in protocols.items() if v.getClassPackageName() == "polishplugin" and not v.isBase()}
        assert "ProtPolishImport" in ours
        for name, cls in ours.items():
            assert name.startswith("ProtPolish"), name
            assert cls.__dict__.get("_label"), f"{name} has no _label"
        # short and distinct: Scipion already shows the plugin name ("polishplugin - <label>")
        labels = [cls.__dict__["_label"] for cls in ours.values()]
        assert len(set(labels)) == len(labels) == len(ALL_PROTOCOLS), labels
        assert all(len(label) <= 25 and "polish -" not in label for label in labels), labels
        assert ours["ProtPolishTrain"].getClassLabel() == "polishplugin - train polishing"

    def test_citations_parse(self):
        import pyworkflow as pw
        plugin = pw.Config.getDomain().getPlugin("polishplugin")
        assert "Zivanov2019" in plugin._bibtex

    def test_run_program_builds_token_list(self):
        from polishplugin import Plugin
        from polishplugin.protocols import ProtPolishImport
        from polishplugin.protocols._base import formatFloat

        prot = ProtPolishImport()
        calls = []
        prot.runJob = lambda program, args, **kwargs: calls.append((program, args, kwargs))
        prot._runProgram("postprocess", ["--i", "half 1.mrc", "--angpix", formatFloat(1.2440000)])
        assert calls == [(Plugin.getProgram(), ["postprocess", "--i", "half 1.mrc", "--angpix", "1.244"],
                          {"numberOfMpi": 1, "numberOfThreads": 1})]
        assert prot._deviceArgs() == []
        assert [formatFloat(v) for v in (0.5, 2.0, -0.0, 1e-7, 10000.0)] == ["0.5", "2", "0", "1e-07", "10000"]

    def test_domain_finds_registered_viewers(self):
        import pyworkflow as pw
        import polishplugin.viewers as viewers

        found = pw.Config.getDomain().getViewers()
        for name in viewers.__all__:
            assert name in found, name

    def test_hosts_conf_runs_program_under_mpi(self):
        """The headless hosts.conf's PARALLEL_COMMAND starts our program on 2 MPI ranks via runJob."""
        import os
        import shutil
        import subprocess

        import pyworkflow as pw
        from pyworkflow.protocol.hosts import HostConfig
        from pyworkflow.utils.process import buildRunCommand

        from polishplugin import Plugin

        if shutil.which("mpirun") is None:
            self.skipTest("mpirun not installed")
        host = HostConfig.load(pw.Config.SCIPION_HOSTS)["localhost"]
        log = self.tmp / "mpi.log"
        with open(log, "w") as out:
            # as Protocol.runJob does: the plugin's environment and the plugin-module context
            from pyworkflow.utils.process import PLUGIN_MODULE_VAR

            command = buildRunCommand(Plugin.getProgram(), ["--help"], numberOfMpi=2, hostConfig=host,
                                      env=Plugin.getEnviron(), context={PLUGIN_MODULE_VAR: "polishplugin"})
            result = subprocess.run(command, shell=True, stdout=out, stderr=subprocess.STDOUT, timeout=120,
                                    env=dict(os.environ))
        text = log.read_text()
        assert result.returncode == 0, text[-2000:]
        assert text.count("usage: polishplugin <command>") == 2, text[-2000:]

    def test_protocol_tree_shows_polishing_stage(self):
        """pyworkflow's own tree loader places our protocols (those importable now) under 'Polishing stage'."""
        import os

        import pwem
        import pyworkflow as pw

        try:
            import pyworkflow.gui.project.viewprotocols_extra as extra
        except ImportError as exc:
            self.skipTest(f"pyworkflow GUI modules (tkinter) not importable: {exc}")
        tree = extra.ProtocolTreeConfig.load(pw.Config.getDomain(),
                                             os.path.join(os.path.dirname(pwem.__file__), "protocols.conf"))

        def find(node):
            for child in node.childs:
                if getattr(child, "text", None) == "Polishing stage":
                    return child
                found = find(child)
                if found is not None:
                    return found
            return None

        section = find(tree["Protocols SPA"])
        assert section is not None and section.visible
        shown = [child.value for child in section.childs]
        protocols = pw.Config.getDomain().getProtocols()
        assert "ProtPolishImport" in shown
        assert shown == [name for name in ALL_PROTOCOLS if name in protocols]

    def test_plugin_templates_folder(self):
        import os

        import pyworkflow as pw

        plugin = pw.Config.getDomain().getPlugin("polishplugin")._pluginInstance
        assert os.path.samefile(plugin.getPluginTemplateDir(),
                                os.path.join(os.path.dirname(__import__("polishplugin").__file__), "templates"))
        templates = plugin.getTemplates()
        on_disk = [f for f in os.listdir(plugin.getPluginTemplateDir()) if f.endswith(".json.template")]
        assert len(templates) == len(on_disk)
