"""Run the whole polishing stage (tutorial steps 25-29) as a Scipion project, headless.

Pure helpers around the workflow template ``templates/polishing_stage.json.template``: load it, fill
its fields, create a Scipion project with pyworkflow's API (``Manager().createProject`` +
``project.loadProtocols``), launch the protocols one after the other in dependency order (each runs
in its own process, as in the GUI), and collect a summary (resolution before/after polishing, auto-B,
per-frame B-factors, trained sigmas, local-resolution range, time per protocol); :func:`add_truth` adds
the comparison with a simulated dataset's truth (:mod:`polishplugin.stage.truth`).  No GUI.

pyworkflow reads its configuration from the environment when first imported: call
:func:`polishplugin.stage.scipion_env.setup_scipion_env` (or source ``scripts/scipion_env.sh``)
before importing pyworkflow; :func:`run_stage_in_scipion` does it when pyworkflow is not loaded yet.

Example::

    from polishplugin.stage.workflow import run_stage_in_scipion, format_summary
    summary = run_stage_in_scipion("/tmp/stage", preset="tiny", threads=2)
    print(format_summary(summary))
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("polishplugin.stage.workflow")

__all__ = ["TEMPLATE_NAME", "template_path", "template_fields", "fill_template", "stage_protocols",
           "create_project", "open_project", "launch_in_order", "collect_summary", "format_summary",
           "run_stage_in_scipion", "write_plots", "WorkflowError", "PRESETS", "LogTail", "format_table",
           "autob_note", "truth_inputs", "add_truth", "write_summary_files", "FAIRNESS_NOTE"]

TEMPLATE_NAME = "polishing_stage.json.template"
PRESETS = ["tiny", "demo", "tutorial"]

#: template ``object.id`` of each protocol of the stage
IMPORT, MASK, POST_BEFORE, TRAIN, POLISH, REFINE, POST, LOCRES = "2", "3", "4", "5", "6", "7", "8", "9"
STEP_NAMES = {IMPORT: "import", MASK: "mask creation", POST_BEFORE: "post-process before polishing",
              TRAIN: "25 train", POLISH: "26 polish", REFINE: "27 refine", POST: "28 post-process",
              LOCRES: "29 local resolution"}


class WorkflowError(RuntimeError):
    """A protocol of the stage failed or the template could not be filled (one sentence)."""


# ------------------------------------------------------------------------------------- template
def template_path() -> Path:
    """The stage's template file inside the installed package."""
    return Path(__file__).parent.parent / "templates" / TEMPLATE_NAME


def _split_template(path: Path | None = None) -> tuple[str, list[str]]:
    """(description, content split at '~'): odd items are the fields ``Title|default|type|alias``."""
    text = (path or template_path()).read_text()
    start = text.index("\n[") + 1
    return text[:start].strip(), text[start:].split("~")


def template_fields(path: Path | None = None) -> list[dict]:
    """The template's fields in order: ``{"title", "default", "type", "alias"}`` (type as int)."""
    _, parts = _split_template(path)
    fields = []
    for raw in parts[1::2]:
        title, default, vtype, alias = (raw.split("|") + [None] * 4)[:4]
        fields.append({"title": title, "default": default, "type": int(vtype), "alias": alias})
    return fields


def fill_template(values: dict | None = None, path: Path | None = None) -> list[dict]:
    """The template's protocol list with fields replaced: ``values`` maps alias -> value (all fields
    with that alias), others keep their default.  Raises WorkflowError for an unknown alias or a value
    that is not of the field's type (0 string, 3 integer, 4 decimal, 1 boolean)."""
    values = dict(values or {})
    _, parts = _split_template(path)
    known = set()
    for i in range(1, len(parts), 2):
        title, default, vtype, alias = (parts[i].split("|") + [None] * 4)[:4]
        known.add(alias)
        value = values.get(alias, default)
        parts[i] = _check_value(title, "" if value is None else str(value), int(vtype))
    unknown = sorted(set(values) - known)
    if unknown:
        raise WorkflowError(f"template {TEMPLATE_NAME} has no field with alias {', '.join(unknown)}")
    return json.loads("".join(parts))


def _check_value(title: str, value: str, vtype: int) -> str:
    try:
        if vtype == 3:
            int(value)
        elif vtype == 4:
            float(value)
        elif vtype == 1 and value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(value)
    except ValueError:
        raise WorkflowError(f"template {TEMPLATE_NAME}: field '{title}' does not accept {value!r}") from None
    if vtype == 1:
        return "true" if value.lower() in ("true", "1") else "false"
    if vtype in (0, 2, 5, 6):
        return json.dumps(value)[1:-1]  # inside the template's quotes
    return value


def stage_protocols(values: dict | None = None, make_mask: bool = False) -> list[dict]:
    """The filled protocol list.  ``make_mask``: run mask creation and point every mask input at its
    output; else mask creation is dropped and the imported mask is used (as the template says)."""
    protocols = fill_template(values)
    for prot in protocols:
        # the template's "_prerequisites" order a scheduled run (`scipion template`); here
        # launch_in_order runs one protocol after the other, and Project.launchProtocol would
        # schedule (not run) a protocol that has prerequisites
        prot.pop("_prerequisites", None)
    if not make_mask:
        return [p for p in protocols if p["object.id"] != MASK]
    for prot in protocols:
        for key, value in prot.items():
            if value == f"{IMPORT}.outputMask":
                prot[key] = f"{MASK}.outputMask"
    return protocols


# ------------------------------------------------------------------------------------- project
def _ensure_scipion_env() -> None:
    if "pyworkflow" not in sys.modules:
        from .scipion_env import setup_scipion_env
        setup_scipion_env()


def create_project(project_dir: str | os.PathLike, protocols: list[dict]):
    """A new Scipion project at ``project_dir`` (its parent must exist; the folder must not) holding
    ``protocols``; returns ``(project, {template id: protocol})``."""
    _ensure_scipion_env()
    from pyworkflow.project import Manager

    project_dir = Path(project_dir).resolve()
    if project_dir.exists() and any(project_dir.iterdir()):
        raise WorkflowError(f"project folder {project_dir} already exists and is not empty")
    project_dir.parent.mkdir(parents=True, exist_ok=True)
    if project_dir.exists():
        project_dir.rmdir()
    manager = Manager()
    link = Path(manager.getProjectPath(project_dir.name))
    link.parent.mkdir(parents=True, exist_ok=True)  # the user-data projects folder (links)
    if link.is_symlink() and link.resolve() != project_dir:
        link.unlink()  # a stale link to an earlier project of the same name elsewhere
    cwd = os.getcwd()
    try:
        project = manager.createProject(project_dir.name, location=str(project_dir.parent))
    finally:
        os.chdir(cwd)
    loaded = project.loadProtocols(jsonStr=json.dumps(protocols))
    missing = [p["object.className"] for p in protocols if p["object.id"] not in loaded]
    if missing:
        raise WorkflowError(f"the Scipion domain has no protocol class {', '.join(missing)} "
                            "(is the plugin installed and are its protocols importable?)")
    return project, loaded


def open_project(project_dir: str | os.PathLike, protocols: list[dict]):
    """The project an earlier run of the stage left at ``project_dir``, to resume: ``(project,
    {template id: run})`` with each run found by its template label.  WorkflowError (one sentence
    saying what to do) when the folder is not such a project, or was made with other import settings."""
    _ensure_scipion_env()
    import pyworkflow as pw
    from pyworkflow.project import Project

    project_dir = Path(project_dir).resolve()
    again = "remove it or choose another output folder"
    if not (project_dir / "project.sqlite").exists():
        raise WorkflowError(f"{project_dir} exists, is not empty and is not a Scipion project: {again}")
    cwd = os.getcwd()
    try:
        project = Project(pw.Config.getDomain(), str(project_dir))
        project.load()
        runs = {run.getObjLabel(): run for run in project.getRuns(refresh=True, checkPids=True)}
    finally:
        os.chdir(cwd)
    loaded = {}
    for prot in protocols:
        run = runs.get(prot["object.label"])
        if run is None or run.getClassName() != prot["object.className"]:
            raise WorkflowError(f"the Scipion project {project_dir} has no run '{prot['object.label']}' of "
                                f"the stage: {again}")
        loaded[prot["object.id"]] = run
    imp, wanted = loaded[IMPORT], next(p for p in protocols if p["object.id"] == IMPORT)
    for key in ("importFrom", "simPreset", "simSeed", "particlesStar", "micrographsStar", "postprocessStar"):
        attr = getattr(imp, key, None)
        if attr is not None and key in wanted and str(attr.get() or "") != str(wanted[key] or ""):
            raise WorkflowError(f"the Scipion project {project_dir} was made with another dataset ({key} "
                                f"{attr.get()!r}, now {wanted[key]!r}): {again}")
    active = [run.getObjLabel() for run in loaded.values() if run.isActive()]
    if active:
        raise WorkflowError(f"run(s) {', '.join(active)} of {project_dir} are still running: wait for them "
                            "to end, or stop them in the Scipion GUI")
    return project, loaded


class LogTail(threading.Thread):
    """Print, while a protocol runs, the progress lines of its program (``HH:MM:SS ...`` lines of the
    run's ``logs/run.stdout``) as ``[step] line``; for the 3D auto-refine's iteration lines it adds
    the time per iteration and an ETA when the iterations are capped."""

    PROGRAM_LINE = re.compile(r"^\d\d:\d\d:\d\d ")
    ANSI = re.compile(r"\x1b\[[0-9;]*m")
    ITERATION = re.compile(r"iteration (\d+)")

    def __init__(self, path, label: str, max_iterations: int | None = None, out=None, interval: float = 1.0):
        super().__init__(daemon=True)
        self.path, self.label, self.max_iterations = Path(path), label, max_iterations
        self.out, self.interval = out, interval
        self._stop_event = threading.Event()
        self._partial, self._start = "", time.time()
        # a resumed run appends to its log: show only what this launch adds
        self._offset = self.path.stat().st_size if self.path.exists() else 0

    def run(self):
        while not self._stop_event.wait(self.interval):
            self._read()
        self._read()

    def stop(self):
        self._stop_event.set()
        self.join(timeout=10)

    def _read(self):
        try:
            if self.path.stat().st_size < self._offset:  # the log was started anew
                self._offset = 0
            with open(self.path, errors="replace") as fh:
                fh.seek(self._offset)
                text = fh.read()
                self._offset = fh.tell()
        except OSError:
            return
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            line = self.ANSI.sub("", line).rstrip()
            if self.PROGRAM_LINE.match(line):
                self.emit(line)

    def emit(self, line: str):
        m = self.ITERATION.search(line)
        if m and "final" not in line and "resolution" in line:
            it = int(m.group(1))
            per_it = (time.time() - self._start) / max(it, 1)
            if self.max_iterations and self.max_iterations < 999:
                left = per_it * max(self.max_iterations - it, 0)
                eta = f"ETA <= {left:.0f} s (at most {self.max_iterations} iterations)"
            else:
                eta = "ETA: until convergence"
            line = f"{line}  [{per_it:.0f} s/iteration, {eta}]"
        print(f"[{self.label}] {line}", file=self.out or sys.stdout, flush=True)


def _launch(project, prot, label: str, max_iterations: int | None = None) -> float:
    errors = prot.validate()
    if errors:
        raise WorkflowError(f"protocol '{label}' is not valid: {' '.join(errors)}")
    log.info("[%s] launching %s", label, prot.getClassName())
    start = time.time()
    tail = LogTail(prot.getLogPaths()[0], label, max_iterations)
    tail.start()
    try:
        project.launchProtocol(prot, wait=True)
    finally:
        tail.stop()
    seconds = time.time() - start
    if not prot.isFinished():
        raise WorkflowError(f"protocol '{label}' ({prot.getRunName()}) ended {prot.getStatus()}: "
                            f"{_failure_reason(project, prot)}")
    log.info("[%s] finished in %.1f s", label, seconds)
    return seconds


def _failure_reason(project, prot) -> str:
    """The program's own ERROR sentence from the run's stderr log, else pyworkflow's message; and where
    the logs are."""
    logs = [Path(project.getPath(path)).resolve() for path in prot.getLogPaths()]
    reason = LogTail.ANSI.sub("", prot.getErrorMessage() or "").strip() or "see its log"
    try:
        errors = [line for line in logs[1].read_text(errors="replace").splitlines() if ": ERROR: " in line]
        reason = errors[-1] if errors else reason
    except (OSError, IndexError):
        pass
    return f"{reason} (logs: {logs[0].parent})"


def launch_in_order(project, protocols: dict, before_each=None) -> dict:
    """Launch ``protocols`` ({template id: protocol}) in template-id order (call with the project
    folder as the current directory, as pyworkflow expects), each waiting for the previous (every
    input comes from an earlier id); a run that finished before (a resumed project) is kept.
    ``before_each(tid, prot)`` may set params from the outputs of earlier runs.  Returns {template id:
    seconds}; the seconds of a kept run are those it took then."""
    times = {}
    for tid in sorted(protocols, key=int):
        prot, label = protocols[tid], STEP_NAMES.get(tid, tid)
        if prot.isFinished():
            times[tid] = max(prot.getElapsedTime().total_seconds(), 1e-3)
            log.info("[%s] finished before: kept (%s)", label, prot.getWorkingDir())
            continue
        if before_each is not None:
            before_each(tid, prot)
            project.saveProtocol(prot)
        max_iterations = prot.maxIterations.get() if hasattr(prot, "maxIterations") else None
        times[tid] = _launch(project, prot, label, max_iterations)
    return times


# ------------------------------------------------------------------------------------- summary
def _extra(prot, *parts) -> Path:
    return Path(prot._getExtraPath(*parts)).resolve()


def collect_summary(protocols: dict, times: dict | None = None) -> dict:
    """Numbers of a finished stage, read from the runs' output files.

    Keys: resolution_before_a, resolution_after_a, bfactor_after_a2, bfactor_before_a2,
    frame_bfactors_a2 (list), sigmas (s_vel, s_div, s_acc), locres_percentiles_a (5th, 50th, 95th
    inside the mask), locres_range_a (min, max inside the mask), times_s ({step name: seconds}),
    run_dirs ({step name: folder}), outputs ({name: path}).
    """
    from ..io import labels as L
    from ..io.mrc import read_mrc
    from ..io.postprocess import read_postprocess
    from ..io.polish import read_bfactors, read_opt_params

    summary: dict = {"times_s": {}, "run_dirs": {}, "outputs": {}}
    for tid, prot in protocols.items():
        name = STEP_NAMES.get(tid, tid)
        summary["run_dirs"][name] = str(Path(prot.getWorkingDir()).resolve())
        if times and tid in times:
            summary["times_s"][name] = float(times[tid])
    before = read_postprocess(_extra(protocols[POST_BEFORE], "postprocess.star"))
    after = read_postprocess(_extra(protocols[POST], "postprocess.star"))
    summary["resolution_before_a"] = float(before.final_resolution_a)
    summary["resolution_after_a"] = float(after.final_resolution_a)
    summary["bfactor_before_a2"] = float(before.bfactor_a2)
    summary["bfactor_after_a2"] = float(after.bfactor_a2)
    shells = after.general.get(L.POLISH_AUTOB_FIT_SHELLS)
    summary["autob_fit_shells_after"] = None if shells is None else int(shells)
    bfac = read_bfactors(_extra(protocols[POLISH], "Polish", "bfactors.star")).bfactor_a2
    summary["frame_bfactors_a2"] = [float(b) for b in bfac]
    params = _extra(protocols[TRAIN], "Train", "opt_params.txt")
    sigmas = read_opt_params(params)
    summary["sigmas"] = (float(sigmas.s_vel), float(sigmas.s_div), float(sigmas.s_acc))
    locres_path = _extra(protocols[LOCRES], "relion_locres.mrc")
    locres, _ = read_mrc(locres_path)
    mask_prot = protocols.get(MASK) or protocols[IMPORT]
    mask_obj = getattr(mask_prot, "outputMask", None)
    sel = locres > 0
    mask_path = ""
    if mask_obj is not None:
        from ..convert.scipion_objects import mrc_path as _mrc_path
        mask_path = _mrc_path(mask_obj)
        mask, _ = read_mrc(mask_path)
        sel &= mask > 0.5
    values = locres[sel]
    if values.size:
        summary["locres_percentiles_a"] = tuple(float(np.percentile(values, q)) for q in (5, 50, 95))
        summary["locres_range_a"] = (float(values.min()), float(values.max()))
    summary["outputs"] = {
        "postprocess_before": str(_extra(protocols[POST_BEFORE], "postprocess.star")),
        "postprocess_after": str(_extra(protocols[POST], "postprocess.star")),
        "postprocess_map": str(_extra(protocols[POST], "postprocess.mrc")),
        "opt_params": str(params),
        "tsc_trace": str(_extra(protocols[TRAIN], "Train", "tsc_trace.star")),
        "shiny_star": str(_extra(protocols[POLISH], "Polish", "shiny.star")),
        "bfactors_star": str(_extra(protocols[POLISH], "Polish", "bfactors.star")),
        "refine_model": str(_extra(protocols[REFINE], "run_model.star")),
        "locres_map": str(locres_path),
        "mask": mask_path,
    }
    return summary


def autob_note(fit_shells: int | None) -> str:
    """How many shells the auto-B fit used, with a warning below :data:`AUTOB_MIN_SHELLS`."""
    from ..core.postprocess import AUTOB_MIN_SHELLS

    if fit_shells is None:
        return ""
    if fit_shells < AUTOB_MIN_SHELLS:
        return f" (fit over {fit_shells} shells: WARNING, fewer than {AUTOB_MIN_SHELLS}, poorly determined)"
    return f" (fit over {fit_shells} shells)"


def format_table(title: str, rows: list[tuple[str, str]], notes: list[str] = ()) -> str:
    """``rows`` as the demo's table (a label starting with ``--`` is a section heading) and ``notes`` below."""
    width = max(len(k) for k, _ in rows)
    rule = "=" * (width + 24)
    lines = ["", title, rule]
    lines += [(f"{k[3:]}" if k.startswith("-- ") else f"  {k:<{width}}  {v}").rstrip() for k, v in rows]
    lines.append(rule)
    lines += notes
    return "\n".join(lines)


def format_summary(summary: dict, title: str = "polishplugin stage in Scipion: summary") -> str:
    """The summary as the table ``polishplugin demo`` prints: with a simulated dataset's truth
    (``summary["truth"]``, :func:`polishplugin.stage.truth.compare_with_truth`) each estimate stands
    beside it and polishing's gain is the fair before/after comparison."""
    from .truth import gain_sentence, summary_rows

    truth = summary.get("truth")
    notes: list[str] = []
    if truth is not None:
        rows = summary_rows(truth)
        notes = ["", *textwrap.wrap(gain_sentence(truth) + ".", 110), "", *textwrap.wrap(FAIRNESS_NOTE, 110)]
    else:
        rows = [("resolution before polishing (A; previous refine's half maps)",
                 f"{summary['resolution_before_a']:.2f}"),
                ("resolution after polishing + 3D auto-refine (A; its own poses, not comparable)",
                 f"{summary['resolution_after_a']:.2f}")]
        b = summary["frame_bfactors_a2"]
        rows.append(("per-frame B-factors (A^2, min .. max)", f"{min(b):.1f} .. {max(b):.1f}"))
        rows.append(("trained sigmas (s_vel s_div s_acc)", " ".join(f"{v:.4g}" for v in summary["sigmas"])))
    rows.append(("-- stage outputs", ""))
    cap = summary.get("refine_max_iterations")
    if cap and cap < 999:
        rows.append(("3D auto-refine iterations", f"at most {cap} (the demo's cap; 999: until convergence)"))
    rows.append(("auto B-factor after polishing (A^2)",
                 f"{summary['bfactor_after_a2']:.1f}{autob_note(summary.get('autob_fit_shells_after'))}"))
    if "locres_percentiles_a" in summary:
        p5, p50, p95 = summary["locres_percentiles_a"]
        rows.append(("local resolution in mask (A, 5th / 50th / 95th pct)", f"{p5:.2f} / {p50:.2f} / {p95:.2f}"))
    for name, seconds in summary["times_s"].items():
        rows.append((f"time: {name} (s)", f"{seconds:.1f}" if isinstance(seconds, (int, float)) else str(seconds)))
    if "truth_seconds" in summary:
        rows.append(("time: comparison with the truth (s)", f"{summary['truth_seconds']:.1f}"))
    if "seconds_total" in summary:
        rows.append(("time: total (s)", f"{summary['seconds_total']:.1f}"))
    return format_table(title, rows, notes)


def truth_inputs(summary: dict, work: str | os.PathLike, threads: int = 1):
    """What :func:`polishplugin.stage.truth.compare_with_truth` reads of a finished stage (None when the
    stage did not run on a simulated dataset)."""
    from .truth import TruthInputs

    out = summary["outputs"]
    if not summary.get("simulated_project"):
        return None
    return TruthInputs(project=Path(summary["simulated_project"]), polish_dir=Path(out["bfactors_star"]).parent,
                       refine_root=out["refine_model"][: -len("_model.star")],
                       refine_postprocess=Path(out["postprocess_after"]),
                       work=Path(work), opt_params=Path(out["opt_params"]), threads=threads)


def add_truth(summary: dict, work: str | os.PathLike, threads: int = 1) -> dict:
    """``summary["truth"]``: the comparison with the simulated truth (nothing for real data)."""
    from .truth import compare_with_truth

    inputs = truth_inputs(summary, work, threads)
    if inputs is not None:
        start = time.time()
        summary["truth"] = compare_with_truth(inputs)
        summary["truth_seconds"] = time.time() - start
    return summary


def write_summary_files(summary: dict, out_dir: str | os.PathLike, text: str) -> None:
    """``summary.txt`` (the table) and ``summary.json`` (its numbers) in ``out_dir``, atomically."""
    from .truth import summary_json, write_json

    out_dir = Path(out_dir)
    tmp = out_dir / f".summary.txt.tmp{os.getpid()}"
    tmp.write_text(text + "\n")
    os.replace(tmp, out_dir / "summary.txt")
    data = summary_json(summary["truth"], summary.get("seconds_total")) if "truth" in summary else {
        "resolution_before_A": summary["resolution_before_a"], "resolution_after_A": summary["resolution_after_a"],
        "seconds_total": summary.get("seconds_total")}
    data.update({"bfactor_after_A2": summary["bfactor_after_a2"],
                 "autob_fit_shells_after": summary.get("autob_fit_shells_after"),
                 "frame_bfactors_A2": summary["frame_bfactors_a2"], "sigmas": list(summary["sigmas"]),
                 "locres_percentiles_A": list(summary.get("locres_percentiles_a", [])),
                 "times_s": summary["times_s"]})
    write_json(out_dir / "summary.json", data)


#: how the before/after numbers of the summary were obtained (printed under the table)
FAIRNESS_NOTE = (
    "How the numbers were obtained: 'before' and 'after' are the particles before polishing (extracted from the "
    "motion-corrected micrographs) and after it (shiny particles), each reconstructed at the simulator's true "
    "poses into the same half sets and post-processed with the same mask, MTF and auto-B: only the particle "
    "images differ.  The 3D auto-refine of the polished particles finds its own poses; its own half maps give "
    "its resolution, and its poses, reconstructed exactly as the true poses were, give the number comparable "
    "with the true-pose resolution.  B-factors are relative to each curve's maximum (the planted ones on "
    "RELION's ((s/2+1)/(s/2))^2 scale); track RMS is over all particles and frames.")


def write_plots(summary: dict, dest: str | os.PathLike) -> list[str]:
    """Render every viewer's plots of a finished stage as PNG files in ``dest`` and copy each run's
    logfile.pdf there (``<step>_logfile.pdf``); returns the paths written.

    FSC and Guinier plots before/after polishing, per-frame B-factors and scales, tracks of two
    micrographs, the training TSC trace, the refine's FSC/progress/angular distribution/slices and
    the local-resolution histogram and slices.
    """
    import shutil

    from ..io.mrc import read_mrc
    from ..plots import local_resolution as vl
    from ..plots import polish as plots_polish
    from ..plots import postprocess as plots_postprocess
    from ..plots import refine3d as plots_refine3d
    from ..plots import train as plots_train

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = summary["outputs"]
    paths = []
    for key, sub, title in (("postprocess_after", "postprocess", "after polishing + 3D auto-refine"),
                            ("postprocess_before", "postprocess_before", "before polishing (previous refine)")):
        for path in plots_postprocess.save_postprocess_pngs(out[key], dest / sub, title=title):
            target = dest / f"{sub}_{Path(path).name}"
            os.replace(path, target)
            paths.append(str(target))
        shutil.rmtree(dest / sub, ignore_errors=True)
    paths += plots_polish.write_viewer_pngs(Path(out["bfactors_star"]).parent, dest, 2)
    paths.append(plots_train.write_train_png(out["tsc_trace"], dest / "train_tsc.png"))
    paths += plots_refine3d.save_all_plots(out["refine_model"][: -len("_model.star")], str(dest),
                                           title="3D auto-refine of the polished particles")
    locres, _ = read_mrc(out["locres_map"])
    density, _ = read_mrc(out["postprocess_map"])
    mask = None
    if out.get("mask"):
        mask, _ = read_mrc(out["mask"])
    for name, fig in (("histogram", vl.histogram_figure(vl.histogram_values(locres, mask))),
                      ("slices", vl.slices_figure(density, locres, mask))):
        vl.save_png(fig, dest / f"locres_{name}.png")
        paths.append(str(dest / f"locres_{name}.png"))
    if "truth" in summary:
        from .truth import write_truth_plots

        paths += write_truth_plots(summary["truth"], out["postprocess_after"], dest)
    for step, run_dir in summary["run_dirs"].items():
        for pdf in sorted(Path(run_dir).rglob("logfile.pdf")):
            target = dest / f"{step.replace(' ', '_')}_logfile.pdf"
            shutil.copyfile(pdf, target)
            paths.append(str(target))
    return paths


# ------------------------------------------------------------------------------------- the stage
def _find(root: Path, name: str) -> str:
    hits = sorted(root.rglob(name))
    return str(hits[0]) if hits else ""


def run_stage_in_scipion(project_dir, preset: str = "demo", seed: int = 1, threads: int = 2, mpi: int = 1,
                         max_iterations: int | None = None, values: dict | None = None) -> dict:
    """Simulate the ``preset`` dataset and run the whole stage in a new Scipion project at
    ``project_dir``; returns :func:`collect_summary`'s dict (plus ``project_path``).

    ``max_iterations`` caps the 3D auto-refine (None: until converged).  ``values`` overrides template
    fields by alias (e.g. ``{"import_from": 0, "particles": ".../run_data.star", "micrographs": ...,
    "postprocess": ..., "mtf": ...}`` runs the stage on RELION files instead of a simulation).
    """
    fields = {"import_from": 1, "preset": PRESETS.index(preset), "seed": seed}
    if max_iterations is not None:
        fields["refine_max_iter"] = int(max_iterations)
    fields.update(values or {})
    simulated = int(fields["import_from"]) == 1
    if not simulated:
        # the template's defaults of these fields are the simulated dataset's files in the import run
        fields.setdefault("postprocess", "")
        fields.setdefault("mtf", "")
    has_mask = simulated or bool(fields.get("mask")) or bool(fields.get("postprocess"))
    protocols_json = stage_protocols(fields, make_mask=not has_mask)
    folder = Path(project_dir)
    if folder.exists() and any(folder.iterdir()):
        project, prots = open_project(folder, protocols_json)  # a second run: resume
        log.info("resuming the Scipion project %s (finished runs are kept)", folder.resolve())
    else:
        project, prots = create_project(project_dir, protocols_json)
    imp = prots[IMPORT]
    user_diameter = "mask_diameter" in (values or {})

    def before_each(tid, prot):
        # compute settings of every run, then the file paths only known once the import ran
        if hasattr(prot, "numberOfThreads"):
            prot.numberOfThreads.set(threads)
        if hasattr(prot, "numberOfMpi"):
            prot.numberOfMpi.set(mpi)
        if tid == IMPORT:
            return
        root = _extra(imp, "simulated") if simulated else None
        postprocess = (_find(root / "PostProcess", "postprocess.star") if simulated
                       else fields.get("postprocess", ""))
        mtf = _find(_extra(imp), "mtf*.star") if (simulated or fields.get("mtf")) else ""
        if tid in (TRAIN, POLISH) and postprocess:
            prot.postprocessStar.set(str(Path(postprocess).resolve()))  # the tutorial's FSC cut-off
        if tid in (POST_BEFORE, POST, LOCRES) and mtf:
            prot.mtfFile.set(mtf)
        if tid == REFINE and not user_diameter:
            parts = imp.outputParticles
            prot.maskDiameterA.set(round(0.8 * parts.getXDim() * parts.getSamplingRate()))

    cwd = os.getcwd()
    os.chdir(project.getPath())  # pyworkflow's paths (project.sqlite, Runs/...) are project-relative
    try:
        times = launch_in_order(project, prots, before_each)
        summary = collect_summary(prots, times)
        if simulated:
            summary["simulated_project"] = str(_extra(imp, "simulated"))
    finally:
        os.chdir(cwd)
    summary["project_path"] = str(Path(project.getPath()).resolve())
    return summary
