"""The fast local-resolution mode randomises the phases in single precision (its windows are float32):
against the same run on phase-randomised halves made in double precision, every point keeps its
resolution and the maps agree to float32 rounding."""

from __future__ import annotations

import numpy as np

from polishplugin.core.fsc import ShellGrid, irfft_fast, randomize_phases_rfft, rfft_fast
from polishplugin.core.local_resolution import LocalResolution, LocresSettings, finalize_maps
from polishplugin.testing.planted_maps import two_resolution_half_maps


def test_single_precision_phase_randomisation_keeps_every_point():
    h1, h2, _ = two_resolution_half_maps(64, 1.244, (4.0, 8.0), noise=0.3, seed=1)
    settings = LocresSettings(sampling_a=15.0, adhoc_bfac=-100.0, random_seed=3)
    fast = LocalResolution(h1, h2, 1.244, settings, mode="fast")
    ref = LocalResolution(h1, h2, 1.244, settings, mode="fast")
    grid = ShellGrid(h1.shape)
    f1, f2 = rfft_fast(h1.astype(np.float64)), rfft_fast(h2.astype(np.float64))
    p1, p2 = randomize_phases_rfft([f1, f2], grid, ref.geom.randomize_at, settings.random_seed)
    ref.half1p = irfft_fast(p1, h1.shape).astype(np.float32)
    ref.half2p = irfft_fast(p2, h1.shape).astype(np.float32)
    assert np.abs(ref.half1p - fast.half1p).max() < 1e-5 * np.abs(ref.half1p).max()
    assert not np.array_equal(ref.half1p, fast.half1p)               # the two paths do differ (rounding)
    acc_fast, acc_ref = fast.run(), ref.run()
    res_fast = [p.resolution_a for p in fast.in_sampling_order(acc_fast.points)]
    res_ref = [p.resolution_a for p in ref.in_sampling_order(acc_ref.points)]
    assert res_fast == res_ref and len(set(res_ref)) > 3                # every point, several resolutions
    (lf, ff), (lr, fr) = finalize_maps(acc_fast), finalize_maps(acc_ref)
    assert np.array_equal(lf, lr)
    assert np.abs(ff - fr).max() < 1e-5 * np.abs(fr).max()
    np.testing.assert_array_equal(fast.fsc_unmasked, ref.fsc_unmasked)  # still from double-precision halves
