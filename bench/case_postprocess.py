"""Benchmark: ``polishplugin postprocess`` end to end (half maps + mask + MTF + auto-B), planted maps.

Target (issue 4): 256^3 under 10 s on the 2-core machine.  Run alone:
``.venv/bin/python -m bench --only postprocess`` or ``.venv/bin/python bench/case_postprocess.py 256``.
This times ``main`` inside one process; ``bench/whole_command_times.py`` times the whole console command
(start-up and imports included) on the same inputs (issue 21: 160^3 <= 1.2 s, 256^3 <= 4 s).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

try:
    from bench.cases import register
except ImportError:  # run as a script
    def register(*_a, **_k):
        return lambda f: f

K_CROSS_FRACTION = 0.38      # true FSC crosses 0.143 at this fraction of the box (shells)
BFACTOR = 80.0
ANGPIX = 1.0


def make_inputs(size: int, folder: str) -> dict:
    """Planted half maps (B-factor ``BFACTOR``, noise so the FSC crosses 0.143 at
    ``K_CROSS_FRACTION * size``), a soft spherical mask and a linear MTF, written under ``folder``."""
    from polishplugin.io.mrc import write_mrc
    from polishplugin.core.filters import raised_cosine_sphere
    from polishplugin.testing.planted_maps import sphere_half_maps

    rng = np.random.default_rng(7)
    shape = (size,) * 3
    k_cross = K_CROSS_FRACTION * size
    _, half1, half2 = sphere_half_maps(rng, size, ANGPIX, BFACTOR, k_cross, 0.3 * size, 0.06 * size)
    files = {"half1": os.path.join(folder, "run_half1_class001_unfil.mrc"),
             "half2": os.path.join(folder, "run_half2_class001_unfil.mrc"),
             "mask": os.path.join(folder, "mask.mrc"), "mtf": os.path.join(folder, "mtf.star")}
    write_mrc(files["half1"], half1, ANGPIX)
    write_mrc(files["half2"], half2, ANGPIX)
    write_mrc(files["mask"], raised_cosine_sphere(shape, 0.38 * size, 0.05 * size), ANGPIX)
    rows = "".join(f"{x:.5f} {1.0 - 0.6 * x:.6f}\n" for x in np.linspace(0, 0.5, 201))
    with open(files["mtf"], "w") as fh:
        fh.write("data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n" + rows)
    files["k_cross"] = k_cross
    return files


def _argv(files: dict, out: str) -> list[str]:
    return ["--i", files["half1"], "--o", out, "--mask", files["mask"], "--mtf", files["mtf"],
            "--mtf_angpix", "1.0", "--auto_bfac", "--autob_lowres", "10"]


@register("postprocess", sizes=(64,), full_sizes=(128, 256), backends=("numpy",), warmup=False, repeats=1)
def postprocess(size, backend):
    """polishplugin postprocess end to end: half maps + mask + MTF + auto-B (planted maps)."""
    from polishplugin.programs import postprocess as prog
    from polishplugin.programs._cli import build_parser

    folder = tempfile.mkdtemp(prefix="bench_pp_")
    files = make_inputs(size, folder)
    args = build_parser("postprocess").parse_args(_argv(files, os.path.join(folder, "out", "postprocess")))

    def run():
        prog.main(args)
        from polishplugin.io.postprocess import read_postprocess
        result = read_postprocess(os.path.join(folder, "out", "postprocess.star"))
        return {"res_A": round(result.final_resolution_a, 3), "B": round(result.bfactor_a2, 1),
                "unmasked_planted_res_A": round(size * ANGPIX / files["k_cross"], 3)}
    return run


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    box = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    runner = postprocess(box, "numpy")
    t0 = time.time()
    notes = runner()
    print(f"postprocess {box}^3: {time.time() - t0:.2f} s {notes}")
