"""The stage's workflow template through scipion-app's own door, ``scipion template``.

* Shell safety: scipion-app hands the template's description to ``os.system`` inside single quotes
  and then, through ``scipion python``, to a second shell inside double quotes
  (``scipion/scripts/kickoff.py: createProjectFromWorkflow`` and ``scipion/__main__.py: runCmd``);
  pyworkflow also applies ``content % os.environ`` to the whole file.  No string of the template may
  change on that route: checked without running anything when a string has a shell character, and
  then for real in a restricted bash with an empty PATH.
* The whole stage, run headless as a user would: ``scipion template polishplugin-polishing_stage
  --nogui alias=value ...`` on the tiny simulated dataset, scheduled by Scipion itself; every run
  finishes, and each starts only after the runs it reads from have ended.
"""

import datetime
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.stage import workflow  # noqa: E402
from polishplugin.tests.protocols.base import PolishTestCase, readme_command, scipion_launcher, slow  # noqa: E402

TEMPLATE_ID = "polishplugin-polishing_stage"
#: characters a shell evaluates inside double quotes (and the single quote of the first shell)
SHELL_CHARS = set("`$\"'\\") | {"\n"}
#: every field for the tiny dataset: `--nogui` skips the form only when every alias is given
TINY_FIELDS = {"import_from": "1", "preset": "0", "seed": "1", "project_dir": "", "micrographs": "",
               "particles": "", "postprocess": "Runs/000002_ProtPolishImport/extra/simulated/"
                                               "PostProcess/job023/postprocess.star",
               "mask": "", "mtf": "Runs/000002_ProtPolishImport/extra/mtf_simulated.star",
               "mask_threshold": "0.005", "eval_frac": "0.5", "min_particles": "5000", "bfac_minfreq": "20",
               "bfac_maxfreq": "-1", "symmetry": "D2", "mask_diameter": "96", "refine_max_iter": "6",
               "angpix": "-1", "autob_lowres": "10", "locres_bfactor": "-100"}


def _template():
    import pyworkflow as pw

    plugin = pw.Config.getDomain().getPlugin("polishplugin")._pluginInstance
    templates = {t.getObjId(): t for t in plugin.getTemplates()}
    assert TEMPLATE_ID in templates, sorted(templates)
    return templates[TEMPLATE_ID]


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _all_template_strings() -> list:
    """The description, every field (title, default, alias) and every string of the filled JSON."""
    template = _template()
    strings = [template.description]
    for field in workflow.template_fields():
        strings += [field["title"], field["default"] or "", field["alias"]]
    strings += list(_strings(workflow.fill_template()))
    return strings


def _restricted_bash(script: str) -> str:
    """Run ``script`` in bash -r (no redirection, no cd, no exec) with an empty PATH; its stdout."""
    result = subprocess.run([shutil.which("bash"), "-r", "-c", script], env={"PATH": "/nonexistent"},
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    return result.stdout


class TestTemplateStrings(PolishTestCase):
    def test_no_template_string_is_altered_by_a_shell(self):
        strings = _all_template_strings()
        bad = {s: sorted(SHELL_CHARS & set(s)) for s in strings if SHELL_CHARS & set(s)}
        self.assertFalse(bad, "template strings with shell characters")
        raw = workflow.template_path().read_text()
        self.assertNotIn("%", raw, "pyworkflow applies `content % os.environ` to the template")
        description = _template().description
        self.assertIn("steps 25-29", description)
        self.assertIn(TEMPLATE_ID, description)
        for text in strings:
            # scipion-app: os.system("... '%s'" % comment.replace("'", "'\"'\"'")), then `scipion python`
            # joins its arguments as "%s" and runs them through subprocess.call(shell=True)
            first = _restricted_bash("printf %s '" + text.replace("'", "'\"'\"'") + "'")
            second = _restricted_bash('printf %s "' + first + '"')
            self.assertEqual(second, text)

    def test_tiny_fields_name_every_alias(self):
        aliases = {f["alias"] for f in workflow.template_fields()}
        self.assertEqual(set(TINY_FIELDS), aliases)

    def test_readme_command_is_the_tested_one(self):
        """README.rst's headless `scipion template` command gives exactly these fields."""
        tokens = readme_command(self, ".venv/bin/scipion template")
        self.assertEqual(tokens[1:4], ["template", TEMPLATE_ID, "--nogui"])
        fields = dict(token.split("=", 1) for token in tokens[4:])
        self.assertEqual(fields.pop("project_name"), "stage_tiny")
        self.assertEqual(fields, TINY_FIELDS)


# ------------------------------------------------------------------ the stage through `scipion template`
def _when(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(str(value))


def _wait_for_runs(test, project_path: Path, expected: int, timeout_s: float) -> list:
    """Poll the project (as the GUI does: Project.getRuns updates each run from its run.db) until
    every run has ended; returns the runs."""
    import pyworkflow as pw
    from pyworkflow.project import Project

    deadline = time.time() + timeout_s
    cwd = os.getcwd()
    try:
        while True:
            project = Project(pw.Config.getDomain(), str(project_path))
            project.load()
            runs = list(project.getRuns(refresh=True))
            ended = [r for r in runs if r.getStatus() in ("finished", "failed", "aborted")]
            if len(runs) == expected and len(ended) == expected:
                return runs
            failed = [r for r in runs if r.isFailed()]
            if failed or time.time() > deadline:
                logs = []
                for r in runs:
                    for path in list(r.getLogPaths()) + [r.getScheduleLog()]:
                        full = project_path / path
                        if full.exists():
                            tail = full.read_text(errors="replace").splitlines()[-25:]
                            logs.append(f"--- {path}\n" + "\n".join(tail))
                states = [(r.getObjLabel(), r.getStatus()) for r in runs]
                test.fail(f"scheduled stage did not finish ({states})\n" + "\n".join(logs))
            time.sleep(20)
    finally:
        os.chdir(cwd)


class TestScipionTemplate(PolishTestCase):
    @slow
    def test_scipion_template_nogui_runs_the_whole_stage_in_dependency_order(self):
        """`scipion template polishplugin-polishing_stage --nogui alias=value...`: the project is made and
        scheduled by scipion-app itself; all eight runs finish, each after the runs it depends on."""
        scipion = scipion_launcher(self)
        tmp_path = self.tmp
        user_data = tmp_path / "user_data"
        env = dict(os.environ, SCIPION_USER_DATA=str(user_data), SCIPION_LOGS=str(user_data / "logs"))
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]  # scipion-app calls `python`
        args = [scipion] + readme_command(self, ".venv/bin/scipion template")[1:]  # as README.rst writes it
        name = "stage_tiny"
        self.assertIn(f"project_name={name}", args)
        result = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                                stdin=subprocess.DEVNULL)
        out = result.stdout + result.stderr
        assert result.returncode == 0, out[-3000:]
        assert "Scheduling project" in out, out[-3000:]
        project_path = user_data / "projects" / name
        assert (project_path / "project.sqlite").exists(), out[-3000:]
        assert not (tmp_path / "demo_output").exists()  # nothing of the description was executed

        template = {p["object.id"]: p for p in workflow.fill_template(TINY_FIELDS)}
        runs = _wait_for_runs(self, project_path, len(template), timeout_s=2400)
        by_label = {r.getObjLabel(): r for r in runs}
        assert sorted(by_label) == sorted(p["object.label"] for p in template.values()), sorted(by_label)
        assert all(r.isFinished() for r in runs), [(r.getObjLabel(), r.getStatus()) for r in runs]
        run_of = {tid: by_label[p["object.label"]] for tid, p in template.items()}
        for tid, p in template.items():
            sources = {v.split(".")[0] for v in p.values() if isinstance(v, str) and v.split(".")[0] in template
                       and v != p["object.id"]}
            sources |= set(p.get("_prerequisites", "").split(",")) - {""}
            start = _when(run_of[tid].initTime.get())
            for src in sources:
                assert start >= _when(run_of[src].endTime.get()), \
                    (p["object.label"], "started before", template[src]["object.label"], "ended")
        # local resolution coloured the sharpened map of the post-processing after polishing
        locres, post = run_of[workflow.LOCRES], run_of[workflow.POST]
        assert locres.sharpenedMap.get() is not None
        assert os.path.samefile(project_path / locres.sharpenedMap.get().getFileName(),
                                project_path / post.outputVolume.getFileName())
        script = project_path / locres._getExtraPath("relion_chimerax.cxc")
        assert "postprocess.mrc" in script.read_text()
