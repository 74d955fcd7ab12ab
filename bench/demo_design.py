"""Design of the demo dataset: per-frame B-factor accuracy, track accuracy and polishing's fair gain
against the simulation's settings, without the 3D auto-refine (the refine is measured once, on the
chosen design, by the demo itself).

For each setting: ``polishplugin simulate`` (preset ``demo`` with the overrides), then optionally
``motion_train`` (``--train``), ``motion_refine --combine_frames`` with the trained (or the planted)
sigmas, and :func:`polishplugin.stage.truth.compare_with_truth` without a refine: fitted vs planted
per-frame B-factors, track RMS (used / planted sigmas / initial) and the FSC-0.143 resolution of the
particles before and after polishing at the same true poses.  One JSON line per setting, and the time
of each part.

    python bench/demo_design.py --o /tmp/design --set contrast=0.06 --set contrast=0.15,frames=16
    python bench/demo_design.py --o /tmp/design --train --set contrast=0.15
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _parse(spec: str) -> dict:
    out = {}
    for item in spec.split(","):
        key, value = item.split("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else float(value)
    return out


def run_setting(folder: Path, overrides: dict, train: bool, threads: int, seed: int = 1) -> dict:
    from polishplugin.programs.simulate import simulate_project
    from polishplugin.stage.truth import TruthInputs, compare_with_truth, polishplugin_command

    times = {}
    t = time.time()
    res = simulate_project(str(folder), preset="demo", seed=seed, **overrides)
    times["simulate"] = time.time() - t
    common = ["--i", "Refine3D/job021/run_data.star", "--f", "PostProcess/job023/postprocess.star",
              "--corr_mic", "MotionCorr/job002/corrected_micrographs.star", "--first_frame", "1",
              "--last_frame", "-1", "--j", str(threads)]
    p = res["params"]
    sigma_args = ["--s_vel", f"{p['s_vel']:g}", "--s_div", f"{p['s_div']:g}", "--s_acc", f"{p['s_acc']:g}"]
    opt = None
    if train:
        t = time.time()
        subprocess.run(polishplugin_command() + ["motion_train", *common, "--o", "Polish/train/", "--eval_frac", "0.5",
                                                 "--align_frac", "0.5", "--min_p", "5000"],
                       cwd=folder, check=True, capture_output=True)
        times["train"] = time.time() - t
        opt = folder / "Polish/train/opt_params_all_groups.txt"
        sigma_args = ["--params_file", str(opt)]
    t = time.time()
    subprocess.run(polishplugin_command() + ["motion_refine", *common, "--o", "Polish/polish/", *sigma_args,
                                             "--combine_frames", "--bfac_minfreq", "20", "--bfac_maxfreq", "-1"],
                   cwd=folder, check=True, capture_output=True)
    times["polish"] = time.time() - t
    t = time.time()
    c = compare_with_truth(TruthInputs(project=folder, polish_dir=folder / "Polish/polish", refine_root=None,
                                       refine_postprocess=None, work=folder / "truth", opt_params=opt,
                                       sigmas_used=None if train else (p["s_vel"], p["s_div"], p["s_acc"]),
                                       threads=threads))
    times["compare"] = time.time() - t
    b = c["bfactors"]
    return {"overrides": overrides, "train": train, "particles": int(p["n_movies"] * p["particles_per_movie"]),
            "simulated_resolution_A": round(float(res["final_resolution_a"]), 2),
            "resolution_before_A": round(c["resolution_before_A"], 2),
            "resolution_after_A": round(c["resolution_after_A"], 2), "gain_shells": c["polishing_gain_shells"],
            "bfactor_median_abs_diff_A2": round(b["median_abs_diff_A2"], 1),
            "bfactor_max_abs_diff_A2": round(b["max_abs_diff_A2"], 1),
            "bfactors_fitted_rel": [round(v) for v in b["fitted_rel_A2"]],
            "bfactors_planted_rel": [round(v) for v in b["planted_rel_A2"]],
            "sigmas_used": [round(v, 4) for v in c["sigmas_used"]] if c.get("sigmas_used") else None,
            "track_rms_used_A": round(c["track_rms_trained_A"], 3),
            "track_rms_planted_sigmas_A": round(c["track_rms_planted_sigmas_A"], 3),
            "track_rms_initial_A": round(c["track_rms_initial_A"], 3),
            "autob_shells_after": c["autob"]["after"]["fit_shells"],
            "seconds": {k: round(v, 1) for k, v in times.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--o", required=True, type=Path, help="work folder (one sub-folder per setting)")
    ap.add_argument("--set", action="append", default=[], help="overrides of the demo preset, k=v,k=v")
    ap.add_argument("--train", action="store_true", help="train the sigmas (else polish with the planted ones)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--j", type=int, default=2)
    a = ap.parse_args(argv)
    for spec in a.set or ["contrast=0.06"]:
        overrides = _parse(spec)
        folder = a.o / (spec.replace(",", "_").replace("=", "") + ("_train" if a.train else "") + f"_s{a.seed}")
        row = run_setting(folder, overrides, a.train, a.j, a.seed)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
