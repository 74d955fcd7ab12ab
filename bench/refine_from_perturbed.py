"""3D auto-refine of a simulated project from perturbed poses: error against the truth per iteration.

Simulates ``--preset`` (default demo) at ``--contrast``, rotates every true pose by ``--perturb_deg``
about a random axis and moves its offset by up to ``--perturb_px`` in x and y, and runs ``polishplugin
refine3d`` with the tutorial's arguments (reference = the simulated previous refine low-passed to 50 Å,
D2, CTF, 7.5 deg global searches, local searches from 1.8 deg, solvent-corrected FSC, --norm --scale).
Prints, per iteration, the median angular error (symmetry-aware), the median offset error, the median
rlnMaxValueProbDistribution, the resolution and the sampling; and the real tutorial's posterior sharpness
(``$POLISHPLUGIN_TEST_DATA/relion-tutorial/particles_tutorial_polish_input.star``) for comparison.

    python bench/refine_from_perturbed.py --contrast 0.30 --out /tmp/rp30
    python bench/refine_from_perturbed.py --contrast 0.06 --out /tmp/rp06      # the demo preset as is
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polishplugin.tests.programs.refine_truth import (perturb_project_poses, project_truth,  # noqa: E402
                                                      pose_errors, refine_arguments)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder (the simulated project and the refine)")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--contrast", type=float, default=None, help="override the preset's contrast")
    ap.add_argument("--perturb_deg", type=float, default=3.0)
    ap.add_argument("--perturb_px", type=float, default=1.5)
    ap.add_argument("--iter", type=int, default=None, help="cap on the iterations (default: until converged)")
    ap.add_argument("--device", default=None, help="refine3d --device (cpu: numpy)")
    a = ap.parse_args()

    from polishplugin.io.particles import read_particles
    from polishplugin.io.star import read_star
    from polishplugin.programs import refine3d
    from polishplugin.programs._cli import build_parser
    from polishplugin.programs.simulate import simulate_project

    out = Path(a.out)
    over = {} if a.contrast is None else {"contrast": a.contrast}
    t0 = time.time()
    simulate_project(out, preset=a.preset, seed=1, **over)
    print(f"simulated {a.preset} (contrast {a.contrast or 'preset'}) in {time.time() - t0:.0f} s", flush=True)
    truth = project_truth(out)
    start = perturb_project_poses(out, truth, out / "perturbed.star", a.perturb_deg, a.perturb_px, seed=5)
    print("start: angle error median %.2f deg, offset error median %.2f px" % start, flush=True)
    argv = refine_arguments(out, out / "perturbed.star", out / "Refine3D" / "perturbed" / "run")
    if a.iter:
        argv += ["--iter", str(a.iter)]
    if a.device:
        argv += ["--device", a.device]
    t0 = time.time()
    rc = refine3d.main(build_parser("refine3d").parse_args(argv))
    seconds = time.time() - t0
    run = out / "Refine3D" / "perturbed"
    print(f"{'iteration':>9s} {'order':>5s} {'angle err':>9s} {'offset err':>10s} {'Pmax':>6s} {'res (A)':>7s}")
    for f in sorted(run.glob("run_it*_data.star")):
        err, oerr, pmax = pose_errors(read_particles(f), truth)
        g = read_star(str(f).replace("_data.star", "_model.star"))["model_general"].iloc[0]
        s = read_star(str(f).replace("_data.star", "_sampling.star"))["sampling_general"].iloc[0]
        print(f"{f.name[6:9]:>9s} {int(s['rlnHealpixOrder']):5d} {np.median(err):9.2f} {np.median(oerr):10.3f} "
              f"{np.median(pmax):6.3f} {float(g['rlnCurrentResolution']):7.2f}")
    err, oerr, pmax = pose_errors(read_particles(run / "run_data.star"), truth)
    g = read_star(run / "run_model.star")["model_general"].iloc[0]
    print(f"final: angle error median {np.median(err):.2f} deg (mean {err.mean():.2f}), offset error median "
          f"{np.median(oerr):.3f} px, Pmax median {np.median(pmax):.3f}, {float(g['rlnCurrentResolution']):.2f} A, "
          f"{seconds:.0f} s, exit {rc}")
    data = os.environ.get("POLISHPLUGIN_TEST_DATA")
    if data:
        real = read_particles(Path(data) / "relion-tutorial" / "particles_tutorial_polish_input.star")
        p = real.particles["rlnMaxValueProbDistribution"].to_numpy(float)
        print(f"real tutorial (RELION refine before polishing): Pmax median {np.median(p):.3f}, "
              f"quartiles {np.percentile(p, 25):.3f} {np.percentile(p, 75):.3f}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
