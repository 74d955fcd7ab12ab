"""The stage's workflow template: found by the plugin, well formed, and run end to end on the simulated
``tiny`` dataset in a Scipion project (import -> before post-process -> 25 train -> 26 polish ->
27 refine -> 28 post-process -> 29 local resolution), with every output checked against what the
simulation planted; then every viewer renders its plots from those outputs."""

import contextlib
import io
import json
import math
import os
import time

import numpy as np

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.stage import workflow  # noqa: E402
from polishplugin.tests.protocols.base import PolishTestCase  # noqa: E402

#: 3D auto-refine iterations in the test (the last one joins the halves); 6 took 135 s under load
REFINE_ITERATIONS = 6



class TestWorkflowTemplate(PolishTestCase):
    """The template file: found by the plugin, the seed's values, labels, wiring (fast, nothing runs)."""

    def test_plugin_get_templates_finds_the_stage(self):
        import pyworkflow as pw

        plugin = pw.Config.getDomain().getPlugin("polishplugin")._pluginInstance
        templates = {t.name: t for t in plugin.getTemplates()}
        assert "polishing_stage" in templates
        t = templates["polishing_stage"]
        assert os.path.samefile(t.templatePath, workflow.template_path())
        assert "steps 25-29" in t.description
        # pyworkflow's own parser (the GUI's and `scipion template`'s) reads every field
        t.replaceEnvVariables()
        t.parseContent()
        params = t.getParams()
        assert len(params) == len(workflow.template_fields())  # titles are unique (the GUI keys by title)
        for p in params.values():
            assert p.validate() is None or p.getType() in (0, 2), (p.getTitle(), p.getValue())
        t._replaceFields()
        assert [d["object.className"] for d in json.loads("".join(t.getContent()))][:2] == \
            ["ProtPolishImport", "ProtPolishMaskCreate"]


    def test_template_has_the_seed_values_and_dependency_order(self):
        prots = {p["object.id"]: p for p in workflow.fill_template()}
        by_class = {}
        for p in prots.values():
            by_class.setdefault(p["object.className"], []).append(p)
        assert sorted(by_class) == sorted(["ProtPolishImport", "ProtPolishMaskCreate", "ProtPolishPostprocess",
                                           "ProtPolishTrain", "ProtPolishParticles", "ProtPolishRefine3D",
                                           "ProtPolishLocalRes"])
        train, polish = by_class["ProtPolishTrain"][0], by_class["ProtPolishParticles"][0]
        refine, locres = by_class["ProtPolishRefine3D"][0], by_class["ProtPolishLocalRes"][0]
        # step 25
        assert (train["firstFrame"], train["lastFrame"], train["evalFrac"], train["minParticles"]) == (1, -1, 0.5, 5000)
        # step 26: parameters from the training run, B-factor fit 20 / -1
        assert polish["paramsSource"] == 0 and polish["trainingRun"] == train["object.id"]
        assert (polish["bfacMinFreq"], polish["bfacMaxFreq"]) == (20, -1)
        # step 27: 50 Å, D2, CTF yes/yes/no/no, zeros, solvent FSC, 7.5°, 5, 1, 1.8°; the mask diameter fits
        # the embedded demo dataset (0.8 x its 128 Å box, what run_stage_in_scipion sets), not the tutorial's 200 Å
        assert refine["inputParticles"] == f"{polish['object.id']}.outputParticles"
        from polishplugin.programs.simulate import PRESETS
        demo = PRESETS["demo"]
        assert (refine["initialLowPassFilterA"], refine["symmetryGroup"], refine["maskDiameterA"]) == \
            (50.0, "D2", round(0.8 * demo["box"] * demo["angpix"]))
        assert refine["isMapAbsoluteGreyScale"] and refine["doCTF"] and refine["refCtfCorrected"]
        assert not refine["haveDataBeenPhaseFlipped"] and not refine["ignoreCTFUntilFirstPeak"]
        assert refine["maskZero"] and refine["solventFscMask"]
        from polishplugin.protocols.protocol_refine3d import ANGULAR_SAMPLING_CHOICES as A
        assert A[refine["angularSamplingDeg"]] == "7.5 degrees"
        assert A[refine["localSearchAutoSamplingDeg"]] == "1.8 degrees"
        assert (refine["offsetSearchRangePix"], refine["offsetSearchStepPix"]) == (5.0, 1.0)
        # step 28: auto-B from 10 Å, FSC weighting; the 'before' run has the same settings on the old refine
        posts = by_class["ProtPolishPostprocess"]
        after = [p for p in posts if p["inputVolume"] == f"{refine['object.id']}.outputVolume"]
        before = [p for p in posts if p["inputVolume"] == "2.outputVolume"]
        assert len(after) == 1 and len(before) == 1
        for p in posts:
            assert p["autoBfactor"] and p["autobLowres"] == 10 and not p["skipFscWeighting"]
        # step 29: the polished refine's half maps, B -100, coloured on the sharpened map
        assert locres["inputVolume"] == f"{refine['object.id']}.outputVolume" and locres["bfactor"] == -100
        assert locres["sharpenedMap"] == f"{after[0]['object.id']}.outputVolume"
        # every pointer names an earlier protocol (launch order = id order), and a scheduled run
        # (`scipion template`) waits for it: each source is among the protocol's "_prerequisites"
        for pid, p in prots.items():
            waits_for = set(p.get("_prerequisites", "").split(",")) - {""}
            for key, value in p.items():
                if isinstance(value, str) and value.split(".")[0] in prots and key not in ("object.id",):
                    assert int(value.split(".")[0]) < int(pid), (pid, key, value)
                    assert value.split(".")[0] in waits_for, (pid, key, value, waits_for)
        assert "8" in prots["9"]["_prerequisites"].split(",")  # local resolution waits for the sharpened map


    def test_template_labels_are_short_and_name_each_role(self):
        labels = [p["object.label"] for p in workflow.fill_template()]
        assert len(set(labels)) == len(labels), labels
        assert "post-processing before polishing" in labels and "post-processing after polishing" in labels
        assert not any(label.startswith(("polish -", "polishplugin")) for label in labels), labels


    def test_template_defaults_wire_the_simulated_files_of_the_import_run(self):
        """The raw template (no run_stage_in_scipion) reads the simulated MTF and postprocess.star from the
        import run's folder, which is Runs/000002_ProtPolishImport in a new project."""
        from polishplugin.protocols.protocol_import import ProtPolishImport

        prots = {p["object.id"]: p for p in workflow.fill_template()}
        run = "Runs/000002_ProtPolishImport/extra/"
        sim = ProtPolishImport.SIMULATED_FILES
        assert prots["2"]["importFrom"] == 1 and prots["2"]["simPreset"] == 1  # the demo dataset
        for tid in ("4", "8", "9"):
            assert prots[tid]["mtfFile"] == run + sim["mtfStar"], tid  # importStep copies it to extra/
        for tid in ("5", "6"):
            assert prots[tid]["postprocessStar"] == run + "simulated/" + sim["postprocessStar"], tid
        # run_stage_in_scipion launches in order itself: no prerequisites (they would schedule the runs)
        assert not any("_prerequisites" in p for p in workflow.stage_protocols())


    def test_template_project_keeps_labels_and_import_run_folder(self):
        """Loaded as `scipion template` loads it (Project.loadProtocols): the runs keep the template's labels
        and the import run's folder is the one the defaults name."""
        prots = workflow.fill_template()
        project, loaded = workflow.create_project(self.tmp / "labels", prots)
        assert [loaded[p["object.id"]].getObjLabel() for p in prots] == [p["object.label"] for p in prots]
        assert loaded["2"].getWorkingDir() == "Runs/000002_ProtPolishImport"
        assert [int(x) for x in loaded["9"].getPrerequisites()] == [loaded[t].getObjId() for t in ("2", "7", "8")]


    def test_fill_template_checks_values_and_mask_wiring(self):
        prots = workflow.fill_template({"preset": 0, "symmetry": "C1", "particles": 'a "quoted" path.star'})
        imp = prots[0]
        assert imp["simPreset"] == 0 and imp["particlesStar"] == 'a "quoted" path.star'
        assert [p for p in prots if p["object.className"] == "ProtPolishRefine3D"][0]["symmetryGroup"] == "C1"
        with self.assertRaisesRegex(workflow.WorkflowError, "no field with alias"):
            workflow.fill_template({"no_such_field": 1})
        with self.assertRaisesRegex(workflow.WorkflowError, "does not accept"):
            workflow.fill_template({"min_particles": "many"})
        dropped = workflow.stage_protocols(make_mask=False)
        assert "ProtPolishMaskCreate" not in [p["object.className"] for p in dropped]
        made = workflow.stage_protocols(make_mask=True)
        masks = [v for p in made for k, v in p.items() if isinstance(v, str) and v.endswith(".outputMask")]
        assert masks and set(masks) == {"3.outputMask"}


class TestStageInScipion(PolishTestCase):
    """The whole stage on the simulated `tiny` dataset, run once for the class (as `polishplugin demo --scipion`)."""

    @classmethod
    def setUpClass(cls):
        import shutil
        import tempfile
        from pathlib import Path

        cls.root = Path(tempfile.mkdtemp(prefix="polish_stage_"))
        cls.addClassCleanup(shutil.rmtree, cls.root, True)
        cls.terminal = io.StringIO()  # what `polishplugin demo` shows while the protocols run
        with contextlib.redirect_stdout(cls.terminal):
            cls.stage = workflow.run_stage_in_scipion(cls.root / "polishing_stage_tiny", preset="tiny", seed=1,
                                                      threads=2, mpi=1, max_iterations=REFINE_ITERATIONS)
        print(cls.terminal.getvalue())
        print(workflow.format_summary(cls.stage))

    def test_progress_of_each_step_reaches_the_terminal(self):
        lines = self.terminal.getvalue().splitlines()
        refine = [line for line in lines if line.startswith("[27 refine]") and "iteration" in line]
        self.assertGreaterEqual(len(refine), REFINE_ITERATIONS - 1, lines[-40:])
        self.assertTrue(all("resolution" in line for line in refine), refine)
        self.assertTrue(any("ETA <=" in line and f"at most {REFINE_ITERATIONS} iterations" in line
                            for line in refine), refine)
        self.assertTrue(any(line.startswith("[26 polish]") and "ETA" in line for line in lines), lines[-40:])

    def test_a_second_run_keeps_the_finished_runs(self):
        """`polishplugin demo` run again on the same folder resumes: nothing runs again, same numbers."""
        from pyworkflow.project import Manager

        start = time.time()
        again = workflow.run_stage_in_scipion(self.root / "polishing_stage_tiny", preset="tiny", seed=1,
                                              threads=2, mpi=1, max_iterations=REFINE_ITERATIONS)
        self.assertLess(time.time() - start, 60)
        for key in ("resolution_before_a", "resolution_after_a", "bfactor_after_a2", "sigmas"):
            self.assertEqual(again[key], self.stage[key], key)
        self.assertEqual(list(again["times_s"]), list(self.stage["times_s"]))
        # the project is registered under its folder's name: `scipion project polishing_stage_tiny` opens it
        self.assertTrue(Manager().hasProject("polishing_stage_tiny"))

    def test_a_second_run_with_other_data_or_folder_says_what_to_do(self):
        with self.assertRaisesRegex(workflow.WorkflowError, "another dataset .*remove it or choose another"):
            workflow.run_stage_in_scipion(self.root / "polishing_stage_tiny", preset="demo", seed=1)
        other = self.tmp / "not_a_project"
        other.mkdir()
        (other / "notes.txt").write_text("mine")
        with self.assertRaisesRegex(workflow.WorkflowError, "is not a Scipion project: remove it or choose"):
            workflow.run_stage_in_scipion(other, preset="tiny")

    def test_stage_runs_every_protocol_and_writes_every_output(self):
        assert list(self.stage["times_s"]) == ["import", "post-process before polishing", "25 train", "26 polish",
                                          "27 refine", "28 post-process", "29 local resolution"]
        assert all(t > 0 for t in self.stage["times_s"].values())
        for name, path in self.stage["outputs"].items():
            assert os.path.getsize(path) > 0, name
        assert os.path.exists(os.path.join(self.stage["project_path"], "project.sqlite"))


    def test_stage_numbers_are_sensible(self):
        from polishplugin.io.mrc import read_mrc_header

        before, after = self.stage["resolution_before_a"], self.stage["resolution_after_a"]
        assert math.isfinite(before) and math.isfinite(after)
        # polishing recovers the planted motion and dose damage: the polished refine reaches higher resolution
        assert after < before, (before, after)
        assert self.stage["bfactor_after_a2"] < 0
        b = np.asarray(self.stage["frame_bfactors_a2"])
        assert b.size > 1 and np.all(np.isfinite(b)) and b.max() <= 1e-6 and b.min() < -10  # damage grows
        s_vel, s_div, s_acc = self.stage["sigmas"]
        assert s_vel > 0 and s_div > 0 and (s_acc > 0 or s_acc == -1)
        shape, angpix = read_mrc_header(self.stage["outputs"]["locres_map"])
        p5, p50, p95 = self.stage["locres_percentiles_a"]
        lo, hi = self.stage["locres_range_a"]
        # local resolutions lie between Nyquist and the lowest allowed (50 Å), around the global value
        assert 2 * angpix - 1e-3 <= lo <= p5 <= p50 <= p95 <= hi <= 50.0
        assert after / 1.6 <= p50 <= after * 1.6, (p50, after)
        assert "polishplugin stage in Scipion" in workflow.format_summary(self.stage)


    def test_estimates_stand_beside_the_simulated_truth(self):
        """The comparison with the truth reads the Scipion project's runs: summary table, summary.json, plots."""
        import copy
        import json

        from polishplugin.stage.truth import JSON_KEYS

        summary = workflow.add_truth(copy.deepcopy(self.stage), self.tmp / "truth", threads=2)
        truth = summary["truth"]
        for key in ("resolution_before_A", "resolution_after_A", "track_rms_trained_A", "track_rms_planted_sigmas_A",
                    "track_rms_initial_A", "refine_angle_error_deg", "refine_resolution_A", "true_pose_resolution_A"):
            self.assertTrue(math.isfinite(truth[key]), key)
        self.assertEqual(len(truth["bfactors"]["fitted_rel_A2"]), len(self.stage["frame_bfactors_a2"]))
        self.assertLess(truth["refine_angle_error_deg"], 20.0)
        text = workflow.format_summary(summary)
        for words in ("same true poses", "planted", "track RMS", "How the numbers were obtained"):
            self.assertIn(words, text)
        workflow.write_summary_files(summary, self.tmp, text)
        data = json.loads((self.tmp / "summary.json").read_text())
        self.assertTrue(set(JSON_KEYS) <= set(data))
        paths = workflow.write_plots(summary, self.tmp / "plots_truth")
        self.assertTrue(any(p.endswith("truth_fsc_before_after.png") for p in paths))

    def test_viewers_render_the_stage_outputs(self):
        """Each viewer's PNG functions on the stage's outputs give non-blank images (workflow.write_plots)."""
        from PIL import Image

        paths = workflow.write_plots(self.stage, self.tmp / "plots")
        names = [os.path.basename(p) for p in paths]
        for expected in ("postprocess_fsc.png", "postprocess_guinier.png", "postprocess_before_fsc.png",
                         "viewer_bfactors.png", "viewer_scalefactors.png", "train_tsc.png", "run_fsc.png",
                         "locres_histogram.png", "locres_slices.png"):
            assert expected in names, (expected, names)
        assert any(n.endswith("_tracks.png") for n in names)
        assert any(n.endswith("logfile.pdf") for n in names)  # the polishing run's logfile.pdf
        for path in paths:
            assert os.path.getsize(path) > 1000, path
            if path.endswith(".png"):
                img = np.asarray(Image.open(path).convert("L"), np.float64)
                assert img.shape[0] > 100 and img.shape[1] > 100, path
                assert img.std() > 5 and len(np.unique(img)) > 16, f"{path} looks blank"

    def test_analyze_results_opens_every_run_of_the_stage(self):
        """Each run of the stage project: the viewer Scipion's lookup finds, every button, non-blank figures."""
        import pyworkflow as pw
        from pyworkflow.project import Project

        from polishplugin.tests.protocols.viewer_lookup import open_every_view

        cwd = os.getcwd()
        try:
            project = Project(pw.Config.getDomain(), self.stage["project_path"])
            project.load()
            runs = list(project.getRuns())
            self.assertEqual(len(runs), 7)
            for run in runs:
                with self.subTest(run=run.getObjLabel()):
                    open_every_view(project, run)
        finally:
            os.chdir(cwd)
