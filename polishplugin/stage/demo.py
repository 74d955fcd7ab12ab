"""Run the whole polishing stage (tutorial steps 25-29) on the embedded simulated dataset.

Simulates the dataset (``polishplugin simulate``), then runs, as a user would, each step with the
tutorial's values (by default as a headless Scipion project made from the workflow template; with
``--no_scipion`` by calling the programs directly): train (25), polish (26), refine the polished
particles (27), post-process (28) and local resolution (29).  Prints a summary table (resolution
before and after polishing, auto-B, per-frame B-factor range, trained sigmas, local-resolution range,
time per step) and writes it to ``<o>/summary.txt``; plots land in ``<o>/plots``.  Re-running skips
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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.particles import read_particles
from ..io.polish import read_bfactors
from ..io.postprocess import read_postprocess
from ..programs._cli import ProgramError

log = logging.getLogger("polishplugin.demo")


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
                        help="cap on the refine's iterations (with --scipion; default: until convergence)")


@dataclass
class StepRecord:
    """One step of the stage: its label, output folder and wall time."""

    label: str
    outdir: str
    seconds: float = 0.0
    skipped: bool = False
    notes: dict = field(default_factory=dict)


def _program() -> list[str]:
    exe = shutil.which("polishplugin")
    return [exe] if exe else [sys.executable, "-m", "polishplugin"]


def _run_step(record: StepRecord, args: list[str], done_file: Path, cwd: Path) -> None:
    if done_file.exists():
        record.skipped = True
        log.info("[%s] outputs exist (%s): skipped", record.label, done_file)
        return
    log.info("[%s] polishplugin %s", record.label, " ".join(args))
    start = time.time()
    proc = subprocess.run(_program() + args, cwd=cwd)
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


def _main_scipion(args: argparse.Namespace, out: Path) -> int:
    from .workflow import WorkflowError, format_summary, run_stage_in_scipion, write_plots

    try:
        # a second run resumes the project: finished runs are kept, the others run again
        summary = run_stage_in_scipion(out / "scipion_project", preset=args.preset, seed=args.seed,
                                       threads=args.j, mpi=args.mpi, max_iterations=args.max_iterations)
    except WorkflowError as exc:
        raise ProgramError(str(exc)) from None
    text = format_summary(summary)
    print(text)
    (out / "summary.txt").write_text(text + "\n")
    written = write_plots(summary, out / "plots")
    log.info("%d plots and logfiles written to %s", len(written), out / "plots")
    return 0


def main(args: argparse.Namespace) -> int:
    out = Path(args.o).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.scipion:
        return _main_scipion(args, out)
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
        sigma_args = ["--s_vel", "0.2", "--s_div", "5000", "--s_acc", "2"]
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
    refine = StepRecord("27 refine", "Refine3D/job027")
    steps.append(refine)
    _run_step(refine, ["refine3d", "--i", "Polish/job026/shiny.star", "--o", "Refine3D/job027/run",
                       "--ref", "Refine3D/job021/run_class001.mrc", "--solvent_mask", mask,
                       "--ini_high", "50", "--sym", "D2", "--ctf", "--ctf_corrected_ref",
                       "--particle_diameter", diameter, "--zero_mask", "--flatten_solvent",
                       "--solvent_correct_fsc", "--healpix_order", "2", "--auto_local_healpix_order", "4",
                       "--offset_range", "5", "--offset_step", "2", "--low_resol_join_halves", "40",
                       "--norm", "--scale", "--random_seed", str(args.seed), "--j", j],
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

    summary = _summary(out, steps, args.skip_train)
    print(summary)
    (out / "summary.txt").write_text(summary + "\n")
    _collect_plots(out)
    return 0


def _summary(out: Path, steps: list[StepRecord], skip_train: bool) -> str:
    from ..io.mrc import read_mrc

    rows: list[tuple[str, str]] = []
    before = read_postprocess(out / "PostProcess/job023b/postprocess.star")
    after = read_postprocess(out / "PostProcess/job028/postprocess.star")
    rows.append(("resolution before polishing (A; previous refine's half maps)", f"{before.final_resolution_a:.2f}"))
    rows.append(("resolution after polishing + 3D auto-refine (A)", f"{after.final_resolution_a:.2f}"))
    rows.append(("auto B-factor after polishing (A^2)", f"{after.bfactor_a2:.1f}"))
    b = read_bfactors(out / "Polish/job026/bfactors.star").bfactor_a2
    rows.append(("per-frame B-factors (A^2, min .. max)", f"{b.min():.1f} .. {b.max():.1f}"))
    if skip_train:
        rows.append(("sigmas (s_vel s_div s_acc)", "0.2 5000 2 (GUI defaults, not trained)"))
    else:
        rows.append(("trained sigmas (s_vel s_div s_acc)",
                     (out / "Polish/job025/opt_params_all_groups.txt").read_text().strip()))
    locres, _ = read_mrc(out / "LocalRes/job029/relion_locres.mrc")
    mask, _ = read_mrc(out / "MaskCreate/job022/mask.mrc")
    inside = locres[(mask > 0.5) & (locres > 0)]
    if inside.size:
        rows.append(("local resolution in mask (A, 5th .. 95th pct)",
                     f"{np.percentile(inside, 5):.2f} .. {np.percentile(inside, 95):.2f}"))
    for s in steps:
        rows.append((f"time: {s.label} (s)", "skipped (done before)" if s.skipped else f"{s.seconds:.1f}"))
    width = max(len(k) for k, _ in rows)
    lines = ["", "polishplugin demo: summary", "=" * (width + 24)]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("=" * (width + 24))
    return "\n".join(lines)


def _collect_plots(out: Path) -> None:
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for pattern in ("PostProcess/job028/*.png", "PostProcess/job028/logfile.pdf", "Polish/job026/*.png",
                    "Polish/job026/logfile.pdf", "Polish/job025/*.png", "Refine3D/job027/*.png",
                    "LocalRes/job029/*.png", "LocalRes/job029/*.pdf"):
        for f in out.glob(pattern):
            target = plots / f"{f.parent.parent.name}_{f.parent.name}_{f.name}"
            shutil.copyfile(f, target)
    log.info("plots and logfiles collected in %s", plots)
