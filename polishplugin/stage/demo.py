"""Run the whole polishing stage (tutorial steps 25-29) on the embedded simulated dataset.

Simulates the dataset (``polishplugin simulate``), then runs, as a user would, each step with the
tutorial's values (by default as a headless Scipion project made from the workflow template; with
``--no_scipion`` by calling the programs directly): train (25), polish (26), refine the polished
particles (27), post-process (28) and local resolution (29).  Then compares every estimate with the
simulation's truth (:mod:`polishplugin.stage.truth`, in ``<o>/truth_comparison``): polishing's gain with
the particles before and after it reconstructed at the same true poses, fitted vs planted per-frame
B-factors, trained vs planted sigmas with the track RMS each gives, the refine's pose errors and its
resolution beside the true-pose one.  Prints the summary table and writes it to ``<o>/summary.txt``
(numbers in ``<o>/summary.json``); plots land in ``<o>/plots``.  Re-running skips
steps whose outputs exist (with Scipion: the runs of ``<o>/scipion_project`` that finished; the others
run again).  While a protocol runs, its program's progress lines (micrographs done and ETA, refine
iterations with resolution and ETA) are printed as ``[step] line``.

Example:
    polishplugin demo --o demo_output                  # as a Scipion project from the workflow template
    polishplugin demo --o demo_output --preset tiny
    polishplugin demo --o demo_output --no_scipion     # the same chain, calling the programs directly
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.particles import read_particles
from ..io.polish import read_bfactors
from ..io.postprocess import read_postprocess
from ..programs._cli import ProgramError
from .report import write_report
from .truth import TruthInputs, compare_with_truth, polishplugin_command

log = logging.getLogger("polishplugin.demo")

#: the GUI's default sigmas (s_vel, s_div, s_acc), used with --skip_train
DEFAULT_SIGMAS = (0.2, 5000.0, 2.0)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--o", default="demo_output", help="output folder (the project)")
    parser.add_argument("--preset", default="demo", choices=["tiny", "demo", "tutorial"],
                        help="simulated dataset preset")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the simulation")
    parser.add_argument("--j", type=int, default=max(1, os.cpu_count() or 1), help="threads per step")
    parser.add_argument("--skip_train", action="store_true",
                        help="with --no_scipion: polish with the GUI default sigmas (0.2, 5000, 2) instead of training")
    parser.add_argument("--no_scipion", dest="scipion", action="store_false",
                        help="call the programs directly instead of running the stage as a Scipion "
                             "project made from the workflow template (templates/polishing_stage.json.template)")
    parser.add_argument("--scipion", dest="scipion", action="store_true", default=True,
                        help="run the stage as a headless Scipion project from the workflow template (default)")
    parser.add_argument("--mpi", type=int, default=1, help="MPI processes per protocol (with --scipion)")
    parser.add_argument("--max_iterations", type=int, default=None,
                        help="cap on the 3D auto-refine's iterations (default: until convergence, as 999)")


#: the refine's iteration cap per preset (absent: until convergence).  The demo preset's refine was capped at 12
#: iterations while it took 5 min to converge; with the global pre-pass it converges in about 2 min
#: (bench/README.md, "Whole 3D auto-refine"), so no preset is capped.
REFINE_ITERATIONS: dict[str, int] = {}


def refine_iterations(args: argparse.Namespace) -> int | None:
    """The refine's iteration cap: ``--max_iterations``, else the preset's (None: until convergence)."""
    return args.max_iterations if args.max_iterations is not None else REFINE_ITERATIONS.get(args.preset)


@dataclass
class StepRecord:
    """One step of the stage: its label, output folder and wall time."""

    label: str
    outdir: str
    seconds: float = 0.0
    skipped: bool = False
    notes: dict = field(default_factory=dict)


def _run_step(record: StepRecord, args: list[str], done_file: Path, cwd: Path) -> None:
    if done_file.exists():
        record.skipped = True
        log.info("[%s] outputs exist (%s): skipped", record.label, done_file)
        return
    log.info("[%s] polishplugin %s", record.label, " ".join(args))
    start = time.time()
    proc = subprocess.run(polishplugin_command() + args, cwd=cwd)
    record.seconds = time.time() - start
    if proc.returncode != 0:
        raise ProgramError(f"step '{record.label}' failed (exit code {proc.returncode}); see its log above")
    if not done_file.exists():
        raise ProgramError(f"step '{record.label}' finished but did not write {done_file}")
    log.info("[%s] done in %.1f s", record.label, record.seconds)


def _optics_angpix(star: Path) -> tuple[float, int]:
    """Pixel size (Å) and box (px) of the first optics group of a particle STAR file."""
    table = read_particles(star)
    return float(table.pixel_sizes_a()[0]), int(table.box_sizes_px()[0])


def _main_scipion(args: argparse.Namespace, out: Path, start: float) -> int:
    from .workflow import (WorkflowError, add_truth, format_summary, run_stage_in_scipion, write_plots,
                           write_summary_files)

    try:
        # a second run resumes the project: finished runs are kept, the others run again
        summary = run_stage_in_scipion(out / "scipion_project", preset=args.preset, seed=args.seed,
                                       threads=args.j, mpi=args.mpi, max_iterations=refine_iterations(args))
    except WorkflowError as exc:
        raise ProgramError(str(exc)) from None
    add_truth(summary, out / "truth_comparison", args.j)
    summary["refine_max_iterations"] = refine_iterations(args)
    summary["seconds_total"] = time.time() - start
    text = format_summary(summary)
    print(text)
    write_summary_files(summary, out, text)
    written = write_plots(summary, out / "plots")
    log.info("%d plots and logfiles written to %s", len(written), out / "plots")
    log.info("report page (open it in a browser): %s", write_report(out, text, out / "plots"))
    return 0


def main(args: argparse.Namespace) -> int:
    start = time.time()
    out = Path(args.o).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.scipion:
        return _main_scipion(args, out, start)
    steps: list[StepRecord] = []
    j = str(args.j)

    sim = StepRecord("simulate", ".")
    steps.append(sim)
    _run_step(sim, ["simulate", "--preset", args.preset, "--seed", str(args.seed), "--o", "."],
              out / "PostProcess/job023/postprocess.star", out)
    particles = "Refine3D/job021/run_data.star"
    angpix, box = _optics_angpix(out / particles)
    mtf = "mtf_simulated.star"
    mask = "MaskCreate/job022/mask.mrc"
    common = ["--i", particles, "--f", "PostProcess/job023/postprocess.star",
              "--corr_mic", "MotionCorr/job002/corrected_micrographs.star",
              "--first_frame", "1", "--last_frame", "-1", "--j", j]

    if args.skip_train:
        sigma_args = ["--s_vel", f"{DEFAULT_SIGMAS[0]:g}", "--s_div", f"{DEFAULT_SIGMAS[1]:g}",
                      "--s_acc", f"{DEFAULT_SIGMAS[2]:g}"]
    else:
        train = StepRecord("25 train", "Polish/job025")
        steps.append(train)
        _run_step(train, ["motion_train", *common, "--o", "Polish/job025/",
                          "--eval_frac", "0.5", "--align_frac", "0.5", "--min_p", "5000"],
                  out / "Polish/job025/opt_params_all_groups.txt", out)
        sigma_args = ["--params_file", "Polish/job025/opt_params_all_groups.txt"]

    polish = StepRecord("26 polish", "Polish/job026")
    steps.append(polish)
    _run_step(polish, ["motion_refine", *common, "--o", "Polish/job026/", *sigma_args,
                       "--combine_frames", "--bfac_minfreq", "20", "--bfac_maxfreq", "-1"],
              out / "Polish/job026/shiny.star", out)

    diameter = f"{0.8 * box * angpix:.0f}"
    iters = refine_iterations(args)
    refine = StepRecord("27 refine", "Refine3D/job027")
    steps.append(refine)
    _run_step(refine, ["refine3d", "--i", "Polish/job026/shiny.star", "--o", "Refine3D/job027/run",
                       "--ref", "Refine3D/job021/run_class001.mrc", "--solvent_mask", mask,
                       "--ini_high", "50", "--sym", "D2", "--ctf", "--ctf_corrected_ref",
                       "--particle_diameter", diameter, "--zero_mask", "--flatten_solvent",
                       "--solvent_correct_fsc", "--healpix_order", "2", "--auto_local_healpix_order", "4",
                       "--offset_range", "5", "--offset_step", "2", "--low_resol_join_halves", "40",
                       "--norm", "--scale", "--random_seed", str(args.seed), "--j", j,
                       *(["--iter", str(iters)] if iters else [])],
              out / "Refine3D/job027/run_half1_class001_unfil.mrc", out)

    for label, refine_job, post_job in (
            ("28 post-process (before polishing)", "Refine3D/job021", "PostProcess/job023b"),
            ("28 post-process", "Refine3D/job027", "PostProcess/job028")):
        post = StepRecord(label, post_job)
        steps.append(post)
        _run_step(post, ["postprocess", "--i", f"{refine_job}/run_half1_class001_unfil.mrc",
                         "--mask", mask, "--angpix", f"{angpix}", "--mtf", mtf, "--auto_bfac",
                         "--autob_lowres", "10", "--o", f"{post_job}/postprocess"],
                  out / post_job / "postprocess.star", out)

    locres = StepRecord("29 local resolution", "LocalRes/job029")
    steps.append(locres)
    _run_step(locres, ["local_resolution", "--i", "Refine3D/job027/run_half1_class001_unfil.mrc",
                       "--o", "LocalRes/job029/relion", "--angpix", f"{angpix}", "--adhoc_bfac", "-100",
                       "--mtf", mtf, "--mask", mask, "--j", j],
              out / "LocalRes/job029/relion_locres.mrc", out)

    summary = _summary(out, steps, args.skip_train, int(args.j))
    summary["refine_max_iterations"] = iters
    summary["seconds_total"] = time.time() - start
    from .workflow import format_summary, write_summary_files

    text = format_summary(summary, "polishplugin demo: summary")
    print(text)
    write_summary_files(summary, out, text)
    _collect_plots(out, summary)
    log.info("report page (open it in a browser): %s", write_report(out, text, out / "plots"))
    return 0


def _summary(out: Path, steps: list[StepRecord], skip_train: bool, threads: int) -> dict:
    """The numbers of the finished chain (the keys of :func:`polishplugin.stage.workflow.collect_summary`)
    and ``truth``: the comparison with the simulated truth."""
    from ..io import labels as L
    from ..io.mrc import read_mrc
    from ..io.polish import read_opt_params

    before = read_postprocess(out / "PostProcess/job023b/postprocess.star")
    after = read_postprocess(out / "PostProcess/job028/postprocess.star")
    shells = after.general.get(L.POLISH_AUTOB_FIT_SHELLS)
    params = out / "Polish/job025/opt_params_all_groups.txt"
    sigmas = DEFAULT_SIGMAS if skip_train else read_opt_params(params)
    summary: dict = {
        "resolution_before_a": before.final_resolution_a, "resolution_after_a": after.final_resolution_a,
        "bfactor_after_a2": float(after.bfactor_a2 or 0.0),
        "autob_fit_shells_after": None if shells is None else int(shells),
        "frame_bfactors_a2": [float(b) for b in read_bfactors(out / "Polish/job026/bfactors.star").bfactor_a2],
        "sigmas": tuple(float(v) for v in (sigmas if skip_train else (sigmas.s_vel, sigmas.s_div, sigmas.s_acc))),
        "times_s": {s.label: ("skipped (done before)" if s.skipped else s.seconds) for s in steps}}
    locres, _ = read_mrc(out / "LocalRes/job029/relion_locres.mrc")
    mask, _ = read_mrc(out / "MaskCreate/job022/mask.mrc")
    inside = locres[(mask > 0.5) & (locres > 0)]
    if inside.size:
        summary["locres_percentiles_a"] = tuple(float(np.percentile(inside, q)) for q in (5, 50, 95))
    t0 = time.time()
    summary["truth"] = compare_with_truth(TruthInputs(
        project=out, polish_dir=out / "Polish/job026", refine_root=str(out / "Refine3D/job027/run"),
        refine_postprocess=out / "PostProcess/job028/postprocess.star", work=out / "truth_comparison",
        opt_params=None if skip_train else params, sigmas_used=DEFAULT_SIGMAS if skip_train else None,
        threads=threads))
    summary["truth_seconds"] = time.time() - t0
    return summary


def _collect_plots(out: Path, summary: dict) -> None:
    from .truth import write_truth_plots

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    from ..plots.postprocess import save_postprocess_pngs

    write_truth_plots(summary["truth"], out / "PostProcess/job028/postprocess.star", plots)
    for job, title in (("job023b", "before polishing (previous refine)"),
                       ("job028", "after polishing + 3D auto-refine")):
        for png in save_postprocess_pngs(out / "PostProcess" / job / "postprocess.star", plots / job, title=title):
            os.replace(png, plots / f"PostProcess_{job}_postprocess_{Path(png).name}")
        (plots / job).rmdir()
    for pattern in ("PostProcess/job028/logfile.pdf", "Polish/job026/*.png",
                    "Polish/job026/logfile.pdf", "Polish/job025/*.png", "Refine3D/job027/*.png",
                    "LocalRes/job029/*.png", "LocalRes/job029/*.pdf"):
        for f in out.glob(pattern):
            target = plots / f"{f.parent.parent.name}_{f.parent.name}_{f.name}"
            shutil.copyfile(f, target)
    log.info("plots and logfiles collected in %s", plots)
