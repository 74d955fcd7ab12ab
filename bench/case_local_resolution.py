"""Benchmark cases of local resolution (RELION --locres): fast mode at 256^3, fast vs exact agreement.

``python -m bench --only local_resolution.fast`` times the issue's target (256^3 map, 1.244 Å/px,
25 Å sampling, RELION defaults; target < 60 s on the 2-core machine); the notes give the number of
points, the window sizes and the recovered medians of the planted 4 Å / 8 Å halves.
``local_resolution.agreement`` runs the exact (RELION full-box) and fast modes on the same map and
reports the median |difference| of the local-resolution maps (target < 0.1 Å), the share of points
with identical resolution and the relative RMS difference of the locally filtered maps.
"""

from __future__ import annotations

import numpy as np

from bench.cases import register

ANGPIX = 1.244


def _maps(size):
    from polishplugin.testing.planted_maps import two_resolution_half_maps as planted_half_maps

    return planted_half_maps(int(size), ANGPIX, (4.0, 8.0), noise=0.3, seed=1)


def _region_medians(locres, size):
    x = np.arange(size)[None, None, :] - size / 2 + 0.5
    inside = locres > 0
    margin = size // 8
    return (float(np.median(locres[inside & (x < -margin)])), float(np.median(locres[inside & (x > margin)])))


@register("local_resolution.fast", sizes=(64,), full_sizes=(256,), backends=("numpy",), warmup=False,
          repeats=1)
def locres_fast(size, backend):
    """Local resolution, fast mode, size^3 map at 1.244 Å/px, 25 Å sampling, B -100 (setup + all points)."""
    from polishplugin.core.local_resolution import LocalResolution, LocresSettings, finalize_maps

    half1, half2, _ = _maps(size)
    settings = LocresSettings(sampling_a=25.0 if size >= 128 else 15.0, adhoc_bfac=-100.0)

    def run():
        engine = LocalResolution(half1, half2, ANGPIX, settings, mode="fast", workers=2)
        locres, _ = finalize_maps(engine.run())
        med_a, med_b = _region_medians(locres, size)
        return {"points": int(engine.points.shape[0]), "window": f"{engine.win}/{engine.winf}",
                "median_4A": round(med_a, 2), "median_8A": round(med_b, 2)}
    return run


@register("local_resolution.agreement", sizes=(64,), full_sizes=(128,), backends=("numpy",), warmup=False,
          repeats=1)
def locres_agreement(size, backend):
    """Exact (RELION full-box) vs fast mode on the same planted map: timed = both modes."""
    from polishplugin.core.local_resolution import LocalResolution, LocresSettings, finalize_maps

    half1, half2, _ = _maps(size)
    settings = LocresSettings(sampling_a=25.0 if size >= 128 else 15.0, adhoc_bfac=-100.0)

    def run():
        import time

        out = {}
        for mode in ("exact", "fast"):
            t0 = time.time()
            acc = LocalResolution(half1, half2, ANGPIX, settings, mode=mode, workers=2).run()
            out[mode] = finalize_maps(acc) + (acc.points, time.time() - t0)
        (le, fe, pe, te), (lf, ff, pf, tf) = out["exact"], out["fast"]
        inside = le > 0
        same = np.mean([a.resolution_a == b.resolution_a for a, b in zip(pe, pf)])
        rel = np.sqrt(np.mean((fe - ff)[inside] ** 2) / np.mean(fe[inside] ** 2))
        return {"median_abs_diff_A": round(float(np.median(np.abs(le - lf)[inside])), 4),
                "same_point_res": round(float(same), 3), "filtered_rel_rms": round(float(rel), 4),
                "exact_s": round(te, 1), "fast_s": round(tf, 1)}
    return run
