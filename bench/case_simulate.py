"""Benchmark of ``polishplugin simulate``: whole presets, and one full-size tutorial movie.

Measured 2026-11-23 on the shared 2-core VM (load 5-8, so wall times are pessimistic):
tiny 4.5-8 s, demo 35-60 s (288 particles, half-map FSC-0.143 6.4 A); full tutorial preset
(``polishplugin simulate --preset tutorial --float16``): 4560 particles, 24 movies, 31.6 min wall at
nice 19 but 17 min CPU (about 38 s per movie when the machine was quieter), max RSS 2.9 GB, 9.9 GB on disk.
"""

from __future__ import annotations

import shutil
import tempfile
import time

from bench.cases import register

#: size name -> (preset, overrides)
RUNS = {
    "tiny": ("tiny", {}),
    "demo": ("demo", {}),
    # one tutorial-sized movie (190 particles, 24 frames, 2640x2730 px, box 256): the per-movie cost;
    # the full preset is 24 of these plus the fixed cost (phantom, projector, half maps, post-process)
    "tutorial_1movie": ("tutorial", {"n_movies": 1}),
}


@register("simulate", sizes=("tiny",), full_sizes=("tiny", "demo", "tutorial_1movie"), backends=("numpy",),
          warmup=False, repeats=1)
def simulate(size, backend):
    """polishplugin simulate --preset <size> (whole project written to a temporary folder)."""
    from polishplugin.programs.simulate import simulate_project
    preset, overrides = RUNS[size]

    def run():
        out = tempfile.mkdtemp(prefix=f"bench_sim_{size}_")
        try:
            t0 = time.time()
            res = simulate_project(out, preset=preset, seed=1, **overrides)
            p = res["params"]
            return {"movies": p["n_movies"], "particles": p["n_movies"] * p["particles_per_movie"],
                    "frames": p["frames"], "box": p["box"], "halfmap_res_A": round(res["final_resolution_a"], 2),
                    "s": round(time.time() - t0, 1)}
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return run
