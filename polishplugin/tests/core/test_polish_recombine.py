"""Frame weights, shiny normalisation, output geometry and per-frame FCC accumulation."""

import numpy as np
import pytest

from polishplugin.core.fourier import irfft, rfft, shift_rfft
from polishplugin.core.polish.fcc import accumulate_fcc, fcc_from_tables, fcc_shells
from polishplugin.core.polish.recombine import frame_weights, normalize_shiny, output_geometry


def test_frame_weights_sum_to_one_and_favour_sharp_frames():
    sig = np.array([5.0, 20.0, 10.0, 1.0])
    amp = np.array([1.0, 1.0, 0.5, 1.0])
    w = frame_weights(sig, amp, 32, 2.0, 32, 2.0)
    assert w.shape == (4, 32, 17)
    np.testing.assert_allclose(w.sum(0), 1.0, atol=1e-6)
    # at high frequency the frame with the largest sigma dominates; at DC the amplitudes decide
    assert np.argmax(w[:, 0, 16]) == 1
    np.testing.assert_allclose(w[:, 0, 0], amp / amp.sum(), atol=1e-6)
    # every weight underflows at high k for tiny sigmas: still finite and normalised
    w2 = frame_weights(np.array([0.1, 0.2]), np.array([1.0, 1.0]), 32, 2.0, 32, 2.0)
    assert np.all(np.isfinite(w2)) and np.allclose(w2.sum(0), 1.0)


def test_frame_weights_rescale_sigma_for_other_box():
    sig, amp = np.array([5.0, 10.0]), np.ones(2)
    w64 = frame_weights(sig, amp, 64, 1.0, 32, 2.0)  # same physical box (64 A): same weights per 1/A
    w32 = frame_weights(sig, amp, 32, 2.0, 32, 2.0)
    np.testing.assert_allclose(w64[:, 0, 10], w32[:, 0, 10], atol=1e-6)


def test_normalize_shiny_unit_variance_zero_mean(rng):
    img = rng.normal(3.0, 5.0, (40, 40))
    out = irfft(normalize_shiny(rfft(img)), (40, 40))
    assert abs(out.mean()) < 1e-9
    assert out.std() == pytest.approx(1.0, rel=0.02)


def test_output_geometry_relion():
    assert output_geometry(256, 1.244, 0.885) == (360, 256, 1.244)
    s_mov, s_out, apix = output_geometry(256, 1.244, 0.885, window=400, scale=200)
    assert (s_mov, s_out) == (400, 200) and apix == pytest.approx(0.885 * 2)


def test_fcc_recovers_known_correlation(rng):
    n, n_p, n_f = 32, 6, 3
    pred = rfft(rng.normal(size=(n_p, n, n)), axes=(-2, -1))
    tracks = rng.uniform(-3, 3, (n_p, n_f, 2))
    amp = np.array([1.0, 0.5, 0.0])
    obs = np.stack([np.stack([shift_rfft(amp[f] * pred[p], tracks[p, f], (n, n)) for f in range(n_f)])
                    for p in range(n_p)])
    obs = obs + 0.5 * rfft(rng.normal(size=obs.shape[:2] + (n, n)), axes=(-2, -1)) * (amp[None, :, None, None] == 0)
    cc, w0, w1 = accumulate_fcc(obs, tracks, pred, n, 2.0, 2.0)
    fcc = fcc_from_tables(cc, w0, w1)
    np.testing.assert_allclose(fcc[0, 1:], 1.0, atol=1e-6)  # shifted back exactly: perfect correlation
    np.testing.assert_allclose(fcc[1, 1:], 1.0, atol=1e-6)  # FCC ignores the amplitude
    assert np.abs(fcc[2, 2:]).max() < 0.3                    # pure noise
    # wrong tracks destroy the correlation at high frequency
    cc2, w02, w12 = accumulate_fcc(obs, np.zeros_like(tracks), pred, n, 2.0, 2.0)
    assert fcc_from_tables(cc2, w02, w12)[0, 8:].mean() < 0.5


def test_fcc_shells_scale_to_reference():
    sh = fcc_shells(64, 1.0, 32, 2.0)  # same physical box -> same shell numbers per 1/A
    assert sh[0, 10] == 10
    sh2 = fcc_shells(32, 2.0, 64, 2.0)  # reference box twice as large -> twice the shell index
    assert sh2[0, 5] == 10


def test_separable_shift_matches_fourier_convention(rng):
    from polishplugin.core.fourier import centre_shift_phase
    from polishplugin.core.polish.shift import shift_phase_2d

    s = rng.uniform(-5, 5, (3, 4, 2))
    for n in (16, 17):
        np.testing.assert_allclose(shift_phase_2d(n, s, np.complex128), centre_shift_phase((n, n), s), atol=1e-12)
