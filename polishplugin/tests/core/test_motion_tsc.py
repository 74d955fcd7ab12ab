"""Held-out ring and the TSC score against a brute-force evaluation of RELION's definition."""

import numpy as np
import pytest

from polishplugin.core.dose import dose_weights
from polishplugin.core.fourier import frequency_grid, round_half_away
from polishplugin.core.motion import synthetic
from polishplugin.core.motion.tsc import (alignment_lowpass, make_eval_ring, tsc_from_terms, tsc_terms)


def test_tsc_matches_brute_force_and_peaks_at_true_tracks():
    m = synthetic.make_micrograph(seed=3, n_p=6, n_f=5, box=32)
    n = 32
    dw = dose_weights(5, n, m.angpix, m.dose_per_frame)
    ring = make_eval_ring(m.frames_rfft, m.pred_opposite_rfft, dw, 6, 14)
    t = m.true_tracks_px
    ky, kx = frequency_grid((n, n))
    shell = round_half_away(np.sqrt(kx * kx + ky * ky + 0.0))
    sel = (shell >= 8) & (shell < 14)
    assert ring.x.shape == (6, 5, int(sel.sum()))
    phase = np.exp(2j * np.pi * (t[..., 0, None, None] * kx + t[..., 1, None, None] * ky) / n)
    obs = m.frames_rfft.astype(np.complex128)
    num = (dw[None] * np.real(m.pred_opposite_rfft[:, None] * np.conj(obs * phase)))[..., sel].sum()
    d1 = (dw[None] * np.abs(obs) ** 2)[..., sel].sum()
    d2 = (dw[None] * np.abs(m.pred_opposite_rfft[:, None]) ** 2)[..., sel].sum()
    np.testing.assert_allclose(tsc_terms(ring, t), [num, d1, d2], rtol=1e-5)
    assert tsc_from_terms(tsc_terms(ring, t)) > tsc_from_terms(tsc_terms(ring, t + 1.0)) + 0.02
    assert tsc_from_terms(np.array([1.0, 0.0, 1.0])) == 0.0


def test_alignment_lowpass_edges():
    lp = alignment_lowpass(32, 10)
    ky, kx = frequency_grid((32, 32))
    r = np.sqrt(kx * kx + ky * ky + 0.0)
    assert np.all(lp[r <= 9] == 1) and np.all(lp[r >= 11] == 0)
    assert np.all((lp >= 0) & (lp <= 1)) and abs(lp[0, 10] - 0.5) < 1e-12


@pytest.mark.opencl
def test_tsc_opencl_matches_numpy():
    from polishplugin.core.opencl import opencl_available

    if not opencl_available():
        pytest.skip("no OpenCL platform")
    from polishplugin.core.motion.tsc_cl import TscCL

    m = synthetic.make_micrograph(seed=4, n_p=5, n_f=4, box=32)
    ring = make_eval_ring(m.frames_rfft, m.pred_opposite_rfft, dose_weights(4, 32, 1.5, 1.5), 6, 14)
    for t in (m.true_tracks_px, m.true_tracks_px + 3.3):
        np.testing.assert_allclose(TscCL(ring)(t), tsc_terms(ring, t), rtol=1e-5)
