"""Benchmark: tutorial-scale data through post-processing, local resolution and polishing, per MPI rank.

Every step runs as ``mpirun -n R python bench/case_tutorial_scale.py --wrap OUT -- <command> <args>``:
the wrapper runs the ``polishplugin`` sub-command in-process and then writes, per rank, its wall time
and its peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) to ``OUT.rank<r>.json``.
The table reports the wall time of the step (slowest rank) and the largest per-rank peak RSS.

The project is ``polishplugin simulate --preset tutorial`` (24 frames, box 256 at 1.244 Å, 2640x2730 px
movies) with ``--n_movies`` / ``--particles_per_movie`` chosen by the caller; the polishing step is run
on the first 1/2 of the movies and on all of them (a particle STAR file restricted to those movies),
so the table shows how time and peak memory per rank scale with the number of micrographs.

Usage (repository root, venv python)::

    python bench/case_tutorial_scale.py --project /tmp/tut4 --simulate --n_movies 4 --particles_per_movie 120
    python bench/case_tutorial_scale.py --project /tmp/tut4 --movies 2 4 --ranks 1 2 --json out.json

``python -m bench --only tutorial_scale`` runs the same driver on the ``tiny`` preset (1 and 2 ranks).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench.cases import register
except ImportError:  # run as a script
    def register(*_a, **_k):
        return lambda f: f

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _mpirun() -> str | None:
    beside = VENV_BIN / "mpirun"
    return shutil.which("mpirun") or (str(beside) if beside.exists() else None)


# ------------------------------------------------------------------------------------ per-rank wrapper
def _wrap(prefix: str, argv: list[str]) -> int:
    """Run ``polishplugin argv`` in this process; write this rank's wall time and peak RSS."""
    from polishplugin.programs._cli import run

    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")))
    t0 = time.time()
    code = 0
    try:
        run(argv)
    except SystemExit as exc:  # run() always exits
        code = int(exc.code or 0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    info = {"rank": rank, "wall_s": time.time() - t0, "max_rss_mb": usage.ru_maxrss / 1024.0,
            "cpu_s": usage.ru_utime + usage.ru_stime, "rc": code}
    Path(f"{prefix}.rank{rank}.json").write_text(json.dumps(info))
    return code


def run_step(name: str, command: list[str], ranks: int, cwd: Path, work: Path, env_extra: dict | None = None) -> dict:
    """One step under ``mpirun -n ranks`` (or a plain process for 1 rank); returns the table row."""
    prefix = work / f"{name}_r{ranks}"
    for old in work.glob(f"{prefix.name}.rank*.json"):
        old.unlink()
    wrapper = [sys.executable, str(Path(__file__).resolve()), "--wrap", str(prefix), "--"] + command
    cmd = wrapper if ranks == 1 else [_mpirun(), "--allow-run-as-root", "--oversubscribe", "-n", str(ranks)] + wrapper
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg", **(env_extra or {}))
    t0 = time.time()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    log = work / f"{prefix.name}.log"
    log.write_text(res.stdout + res.stderr)
    per_rank = [json.loads(p.read_text()) for p in sorted(work.glob(f"{prefix.name}.rank*.json"))]
    if res.returncode != 0 or len(per_rank) != ranks or any(r["rc"] for r in per_rank):
        raise RuntimeError(f"{name} with {ranks} ranks failed (see {log}):\n{(res.stdout + res.stderr)[-2000:]}")
    return {"step": name, "ranks": ranks, "wall_s": round(wall, 1),
            "max_rss_mb_per_rank": [round(r["max_rss_mb"]) for r in sorted(per_rank, key=lambda r: r["rank"])],
            "cpu_s": round(sum(r["cpu_s"] for r in per_rank), 1)}


# ----------------------------------------------------------------------------------------- the steps
def restrict_particles(project: Path, n_movies: int, dest: Path) -> Path:
    """A copy of the particle STAR file with the particles of the first ``n_movies`` micrographs only."""
    import pandas as pd

    from polishplugin.io import labels as L
    from polishplugin.io.star import read_star, write_star

    blocks = read_star(project / "Refine3D/job021/run_data.star")
    parts = blocks["particles"]
    mics = list(pd.unique(parts[L.MICROGRAPH_NAME]))[:n_movies]
    blocks["particles"] = parts[parts[L.MICROGRAPH_NAME].isin(mics)].reset_index(drop=True)
    write_star(dest, {k: (v if len(v) != 1 or k != "general" else v.iloc[0].to_dict()) for k, v in blocks.items()})
    return dest


def benchmark(project: Path, movies: list[int], ranks: list[int], steps: list[str], work: Path,
              locres_sampling: float = 25.0, train_min_p: int = 5000) -> list[dict]:
    project = project.resolve()
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    r = "Refine3D/job021"
    half1, mask = f"{r}/run_half1_class001_unfil.mrc", "MaskCreate/job022/mask.mrc"
    post = "PostProcess/job023/postprocess.star"
    mics = "MotionCorr/job002/corrected_micrographs.star"
    env1 = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    for n in (ranks if "postprocess" in steps else []):
        rows.append(run_step("postprocess", ["postprocess", "--i", half1, "--mask", mask, "--o",
                                             str(work / f"pp_r{n}" / "postprocess"), "--auto_bfac",
                                             "--autob_lowres", "10"], n, project, work))
    for n in (ranks if "local_resolution" in steps else []):
        rows.append(run_step("local_resolution", ["local_resolution", "--i", half1, "--mask", mask, "--o",
                                                  str(work / f"lr_r{n}" / "relion"), "--locres_sampling",
                                                  str(locres_sampling), "--adhoc_bfac", "-100"], n, project, work))
    for m in (movies if "polish" in steps else []):
        star = restrict_particles(project, m, work / f"particles_{m}mov.star")
        for n in ranks:
            row = run_step(f"polish_{m}mov", ["motion_refine", "--i", str(star), "--f", post, "--corr_mic", mics,
                                              "--o", str(work / f"polish_{m}mov_r{n}") + "/", "--combine_frames",
                                              "--s_vel", "0.4", "--s_div", "1155", "--s_acc", "2.7"],
                           n, project, work, env1)
            row["movies"] = m
            rows.append(row)
    for m in (movies[-1:] if "train" in steps else []):  # the seed's step 25: --min_p 5000, default search
        star = restrict_particles(project, m, work / f"particles_{m}mov.star")
        for n in ranks:
            row = run_step(f"train_{m}mov", ["motion_refine", "--i", str(star), "--f", post, "--corr_mic", mics,
                                             "--o", str(work / f"train_{m}mov_r{n}") + "/", "--params3", "--min_p",
                                             str(train_min_p), "--eval_frac", "0.5", "--align_frac", "0.5"],
                           n, project, work, env1 if n > 1 else None)
            row["movies"] = m
            params = work / f"train_{m}mov_r{n}" / "opt_params.txt"
            row["trained"] = params.read_text().strip() if params.exists() else ""
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| step | movies | ranks | wall (s) | peak RSS per rank (MB) | CPU all ranks (s) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        step = row["step"] + (f" (trained: {row['trained']})" if row.get("trained") else "")
        lines.append(f"| {step} | {row.get('movies', '')} | {row['ranks']} | {row['wall_s']} | "
                     f"{', '.join(str(x) for x in row['max_rss_mb_per_rank'])} | {row['cpu_s']} |")
    return "\n".join(lines)


@register("tutorial_scale", sizes=("tiny",), backends=("numpy",), warmup=False, repeats=1)
def tutorial_scale(size, backend):
    """postprocess, local resolution, polishing on 1 and 2 ranks (tiny preset); peak RSS per rank."""
    from polishplugin.programs.simulate import simulate_project

    folder = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    simulate_project(folder / "p", preset="tiny", seed=1)

    def run():
        rows = benchmark(folder / "p", [1, 3], [1, 2], ["postprocess", "local_resolution", "polish"],
                         folder / "work", locres_sampling=12.0)
        return {r["step"] + f"_r{r['ranks']}_MB": max(r["max_rss_mb_per_rank"]) for r in rows}
    return run


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--wrap":
        sep = argv.index("--")
        return _wrap(argv[1], argv[sep + 1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", required=True, type=Path)
    p.add_argument("--simulate", action="store_true", help="simulate the tutorial preset into --project first")
    p.add_argument("--n_movies", type=int, default=4)
    p.add_argument("--particles_per_movie", type=int, default=120)
    p.add_argument("--movies", type=int, nargs="+", default=[2, 4], help="polish the first M movies")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", nargs="+", default=["postprocess", "local_resolution", "polish"],
                   choices=["postprocess", "local_resolution", "polish", "train"])
    p.add_argument("--work", type=Path, default=None, help="output folder (default: PROJECT/../scale_work)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--train_min_p", type=int, default=5000, help="training: --min_p (the seed: 5000)")
    a = p.parse_args(argv)
    if a.simulate:
        subprocess.run([str(VENV_BIN / "polishplugin"), "simulate", "--preset", "tutorial", "--o", str(a.project),
                        "--n_movies", str(a.n_movies), "--particles_per_movie", str(a.particles_per_movie)],
                       check=True)
    work = a.work or a.project.resolve().parent / "scale_work"
    rows = benchmark(a.project, a.movies, a.ranks, a.steps, work, train_min_p=a.train_min_p)
    print(markdown(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
