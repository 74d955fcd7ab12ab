"""The auto-sampling stop rule against the truth: the D2 set of the refine tests (80 particles, box 32 at 3 Å/px,
perturbed start poses) refined with each given log-likelihood drop of the accuracy estimate
(``core.refine.schedule.ACCURACY_LOG_DROP``) at each given SNR; prints the last HEALPix order, the iterations, the
median angle error against the truth and the time of each run.

    .venv/bin/python bench/stop_rule.py --out /tmp/stop_rule --drops 1,2,4.60517 --snr 1,10
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polishplugin.core.refine import schedule  # noqa: E402
from polishplugin.io import labels as L  # noqa: E402
from polishplugin.io.star import read_star  # noqa: E402
from polishplugin.testing.refine_synthetic import blob_phantom  # noqa: E402
from polishplugin.tests.programs.test_refine3d import _angle_errors, run_refine, write_synthetic_project  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="working folder")
    ap.add_argument("--drops", default="1,2,4.60517", help="log-likelihood drops to compare (comma-separated)")
    ap.add_argument("--snr", default="1,10", help="signal-to-noise ratios of the set (comma-separated)")
    a = ap.parse_args()
    logging.disable(logging.INFO)
    vol = blob_phantom(32, "D2", n_blobs=40, blob_sigma_px=0.9, seed=0)
    print("| SNR | drop | last order | iterations | median angle error | wall (s) | CPU (s) |")
    print("|---|---|---|---|---|---|---|")
    for snr in (float(x) for x in a.snr.split(",")):
        proj = write_synthetic_project(Path(a.out) / f"p{snr:g}", box=32, n=80, sym="D2", snr=snr, angpix=3.0,
                                       volume=vol)
        for drop in (float(x) for x in a.drops.split(",")):
            schedule.ACCURACY_LOG_DROP = drop
            out = Path(a.out) / f"r{snr:g}_{drop:g}" / "run"
            extra = ["--iter", "25", "--solvent_mask", str(proj["mask"]), "--flatten_solvent", "--solvent_correct_fsc",
                     "--low_resol_join_halves", "40"] + (["--norm", "--scale"] if snr > 5 else [])
            t0, c0 = time.perf_counter(), time.process_time()
            if run_refine(proj, out, extra) != 0:
                raise SystemExit(f"refine3d failed for SNR {snr:g}, drop {drop:g}")
            order = int(read_star(f"{out}_model.star")["model_general"].iloc[0][L.HEALPIX_ORDER])
            err = float(np.median(_angle_errors(Path(f"{out}_data.star"), proj)))
            n_it = len(list(out.parent.glob("run_it*_model.star")))
            print(f"| {snr:g} | {drop:g} | {order} | {n_it} | {err:.2f}° | {time.perf_counter() - t0:.0f} | "
                  f"{time.process_time() - c0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
