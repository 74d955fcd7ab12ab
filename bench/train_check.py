"""Held-out TSC and track error at chosen sigmas on a simulated project (diagnostic for issue 7).

Prepares the training micrographs exactly as ``motion_refine --params3`` does, then for each parameter
set refits every micrograph (cold start) and reports the TSC and the RMS distance (px) of the fitted
tracks from the simulator's planted tracks (``ground_truth/truth.npz``), next to the initial tracks.

    python bench/train_check.py --project /tmp/tut24 --min_p 5000 --params 0.4,1155,2.7 0.2,5000,2 1.344,6525,2.655
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--min_p", type=int, default=5000)
    p.add_argument("--params", nargs="+", required=True, help="s_vel,s_div,s_acc ...")
    a = p.parse_args(argv)
    import os

    from polishplugin.core.motion import training as C
    from polishplugin.programs import motion_train as T
    from polishplugin.programs._cli import build_parser, no_hugepage_advice
    from polishplugin.programs._polish_project import choose_device, load_micrograph, load_project
    from polishplugin.io.simulation import read_truth as load_truth
    from polishplugin.core.motion.tsc import frequency_split

    no_hugepage_advice()
    os.chdir(a.project)
    args = build_parser("motion_refine").parse_args([
        "--i", "Refine3D/job021/run_data.star", "--f", "PostProcess/job023/postprocess.star",
        "--corr_mic", "MotionCorr/job002/corrected_micrographs.star", "--o", "/tmp/train_check/", "--params3"])
    project = load_project(args)
    truth = load_truth(a.project)
    counts, load, k_out, first, names = T._data_source(project, args, None)
    chosen, n_total = C.select_micrographs(counts, a.min_p, 23)
    kc, ke = frequency_split(k_out)
    t0 = time.time()
    mics, rows, angpix = [], [], None
    for i in chosen:
        md = load_micrograph(project, i, reuse_buffer=True)
        angpix = md.angpix
        rows.append(np.asarray(md.particle_rows))
        mics.append(C.prepare_micrograph(md, kc, ke, k_out, 100, first, True, inplace=True, window_px=24))
    print(f"prepared {len(mics)} micrographs, {n_total} particles in {time.time() - t0:.0f} s", flush=True)
    true = [truth["tracks_a"][r] / angpix for r in rows]
    init = [m.initial_tracks_px for m in mics]

    def rms(tracks):
        return float(np.sqrt(np.mean(np.concatenate([((t - u) ** 2).sum(-1).ravel() for t, u in zip(tracks, true)]))))

    print(f"initial tracks: RMS {rms(init):.3f} px from the planted tracks")
    backend = choose_device(types.SimpleNamespace(device=""))[0]
    tset = C.TrainingSet(mics, warm=False, backend=backend, groups=[g for g in C.fit_groups(
        [len(r) for r in rows], 2000)])
    for spec in a.params:
        params = tuple(float(v) for v in spec.split(","))
        t = time.time()
        tsc = tset.evaluate(params)
        print(f"s_vel {params[0]:g} s_div {params[1]:g} s_acc {params[2]:g}: TSC {tsc:.10f}, tracks RMS "
              f"{rms(tset.last_tracks):.4f} px ({time.time() - t:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
