"""Benchmark: training of the polishing sigmas (``motion_refine --params3`` core) on synthetic micrographs.

Micrographs with planted GP motion (``testing.motion_synthetic``: 24 frames, box 48, 48 particles each,
planted s_vel 0.6 / s_div 2000 / s_acc 3).  Size = number of particles.  The timed call prepares every
micrograph (normalise, whiten, CC maps, held-out ring) and runs the whole search (``run_training``); the
notes give the trained parameters, the number of evaluations, the preparation time and the TSC of the
trained vs RELION's default parameters.  Issue 7 target: 5000 tutorial-preset particles in < 10 min.
Run alone: ``.venv/bin/python -m bench --only motion_train`` or
``.venv/bin/python bench/case_motion_train.py 480 opencl`` (the objective's interpolation backend).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import types

try:
    from bench.cases import register
except ImportError:  # run as a script
    def register(*_a, **_k):
        return lambda f: f

PER_MIC = 48


@register("motion_train", sizes=(96,), full_sizes=(480, 1920), backends=("numpy", "opencl"), warmup=False, repeats=1)
def motion_train(size, backend):
    """Polishing-parameter training (prepare + search) on synthetic planted-motion micrographs."""
    from polishplugin.testing import motion_synthetic as synthetic
    from polishplugin.core.motion.tsc import frequency_split
    from polishplugin.core.motion import training as C
    from polishplugin.io.polish import read_tsc_trace
    from polishplugin.programs import motion_train as T

    n_mics = max(2, int(size) // PER_MIC)
    mics = [synthetic.make_micrograph(seed=100 + i, n_p=PER_MIC, n_f=24, box=48, field_px=4000.0,
                                      name=f"mic{i}") for i in range(n_mics)]
    out = tempfile.mkdtemp(prefix="bench_train_")

    def run():
        logging.getLogger("polishplugin").setLevel(logging.WARNING)
        t0 = time.time()
        T.run_training(types.SimpleNamespace(o=out, min_p=10 ** 9, params3=True,
                                             device="cpu" if backend == "numpy" else ""), mics, k_out=20)
        elapsed = time.time() - t0
        trained = tuple(float(v) for v in open(f"{out}/opt_params.txt").read().split())
        trace = read_tsc_trace(f"{out}/tsc_trace.star").evaluations
        kc, ke = frequency_split(20)
        tset = C.TrainingSet([C.prepare_micrograph(m, kc, ke, 20, 100) for m in mics], warm=False)
        tsc_def = tset.evaluate((0.2, 5000.0, 2.0))
        return {"particles": n_mics * PER_MIC, "trained": " ".join(f"{v:g}" for v in trained),
                "evals": len(trace), "s_per_eval": round(elapsed / max(len(trace), 1), 2),
                "tsc": round(float(trace.tsc.max()), 6), "tsc_defaults": round(tsc_def, 6)}

    return run


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    t = time.time()
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 96
    print(motion_train(size, sys.argv[2] if len(sys.argv) > 2 else "opencl")(), f"{time.time() - t:.1f} s")
