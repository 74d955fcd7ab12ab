"""Per-frame B-factor / scale fit (RELION fitBkFactors) on FCC tables with known answers."""

import numpy as np
import pytest

from polishplugin.core.polish.bfactors import (bfactors_to_sigmas, bk_to_bfactors, find_sigma_k, fit_bk_factors,
                                               fit_range)

BOX, APIX = 64, 1.5
SH = BOX // 2 + 1
PLANTED_B = np.array([-60.0, 0.0, -24.0, -73.0, -140.0, -223.0, -318.0, -426.0])
PLANTED_LNK = -0.02 * np.arange(8)


def _model_fcc(noise=0.0, seed=0):
    k = np.arange(SH)
    sig, amp = bfactors_to_sigmas(PLANTED_B, PLANTED_LNK, BOX, APIX)
    env = 0.8 * np.exp(-k / 20.0)
    fcc = amp[:, None] * np.exp(-0.5 * k[None] ** 2 / sig[:, None] ** 2) * env[None]
    return fcc + np.random.default_rng(seed).normal(0, noise, fcc.shape)


def test_exact_model_recovered():
    sig, amp, env = fit_bk_factors(_model_fcc(), 3, 30)
    b, lk = bk_to_bfactors(sig, amp, BOX, APIX)
    rel = b - b.max()
    assert np.abs(rel - (PLANTED_B - PLANTED_B.max())).max() < 2.0  # the grid's finest step
    np.testing.assert_allclose(lk - lk.max(), PLANTED_LNK - PLANTED_LNK.max(), atol=0.01)


def test_noisy_model_within_15():
    sig, amp, _ = fit_bk_factors(_model_fcc(noise=0.005, seed=3), 3, 30)
    b, _ = bk_to_bfactors(sig, amp, BOX, APIX)
    assert np.abs((b - b.max()) - (PLANTED_B - PLANTED_B.max())).max() < 15.0


def test_best_frame_at_top_of_grid():
    """RELION: the best frame's sigma ends at the top of the grid, so its B is ~0 and all B <= 0."""
    sig, amp, _ = fit_bk_factors(_model_fcc(), 3, 30)
    b, _ = bk_to_bfactors(sig, amp, BOX, APIX)
    assert np.all(b <= 0)
    assert np.argmax(b) == 1
    assert b[1] > -1.0


def test_b_formula_uses_s_half_plus_one():
    b, lk = bk_to_bfactors(np.array([10.0]), np.array([1.0]), 64, 2.0)
    assert b[0] == pytest.approx(-8 * 4.0 * 33 ** 2 / 100.0)
    assert lk[0] == 0.0


def test_find_sigma_k_single_frame():
    k = np.arange(SH)
    env = np.ones(SH)
    p = 0.7 * np.exp(-0.5 * k ** 2 / 12.3 ** 2)
    s, a = find_sigma_k(p, env, 2, 30, 1.0, 10.0 * SH)
    assert s == pytest.approx(12.3, abs=0.05)
    assert a == pytest.approx(0.7, abs=0.005)


def test_fit_range_relion_quirk():
    # k0 = (int)(s*a/20); k1 from the FSC=0.143 shell via a double round trip (may lose one shell)
    assert fit_range(256, 1.244, 60, 20.0, -1.0) == (15, 60) or fit_range(256, 1.244, 60, 20.0, -1.0) == (15, 59)
    assert fit_range(64, 2.0, 20, 20.0, 8.0) == (6, 16)


def test_fsc_cutoff_shell_is_first_shell_below_0143():
    from polishplugin.core.polish.bfactors import fsc_cutoff_shell

    fsc = np.array([1.0, 0.99, 0.9, 0.5, 0.2, 0.14, 0.3, 0.01])
    assert fsc_cutoff_shell(fsc, 14) == 5            # shell 5 is the first below 0.143 (shell 0 never counts)
    assert fsc_cutoff_shell(np.r_[0.0, fsc[1:]], 14) == 5
    assert fsc_cutoff_shell(np.ones(20), 14) == 8    # all pass: box//2 + 1
    assert fsc_cutoff_shell(None, 14) == 8           # no FSC: every frequency up to Nyquist
