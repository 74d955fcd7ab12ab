"""Local refinement from the input poses against the full refine, on the perturbed-pose set of the tests.

The D2 set of ``test_refine3d``'s accuracy test (80 particles, box 32 at 3 Å/px, SNR 1, CTF, every true pose
rotated by 3 deg, offsets moved by up to 1 px) refined twice in this process: the full refine (7.5 deg global
searches down to local ones, solvent-corrected FSC) and the local-only refine (``--healpix_order 5
--auto_local_healpix_order 5 --sigma_ang 1.5``: local searches at 0.94 deg around the input poses from the first
iteration).  Prints one row per run: wall and CPU seconds, iterations (global ones), median angle error against
the truth, the FSC = 0.143 shell of the unmasked unfiltered half maps and the reported resolution.

    .venv/bin/python bench/refine_local.py --out /tmp/refine_local      # about 75 s on the 2-core VM
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polishplugin.tests.programs.test_refine3d_local import LOCAL_OPTIONS, local_and_full_refines  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="working folder (the simulated set and both refines)")
    ap.add_argument("--n", type=int, default=80, help="particles (default 80)")
    ap.add_argument("--sym", default="D2", help="point group of the phantom and both refines (default D2)")
    a = ap.parse_args()
    r = local_and_full_refines(Path(a.out), a.n, a.sym)
    print(f"machine: {platform.node()} ({platform.processor() or platform.machine()}); local options: "
          f"{' '.join(LOCAL_OPTIONS)}")
    print("| run | wall (s) | CPU (s) | iterations (global) | angle error | FSC 0.143 shell (unfil) | reported |")
    print("|---|---|---|---|---|---|---|")
    for name, v in r.items():
        print(f"| {name} | {v['wall_s']:.1f} | {v['cpu_s']:.1f} | {v['iterations']} ({v['global_iterations']}) | "
              f"{v['angle_err_deg']:.2f}° | {v['shell']} | {v['resolution_a']:.2f} Å |")
    f, lo = r["full"], r["local"]
    print(f"local / full: wall {lo['wall_s'] / f['wall_s']:.0%}, CPU {lo['cpu_s'] / f['cpu_s']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
