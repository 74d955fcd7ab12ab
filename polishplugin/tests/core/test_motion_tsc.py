"""Held-out ring and the TSC score against a brute-force evaluation of RELION's definition.

The fast paths (row-separated numpy tables, the OpenCL row kernel) are checked against a float64
evaluation of ``num = sum Re(x exp(-2 pi i k.t / N))`` on the same ring: to rtol 1e-5 where the tracks
match the planted shifts (coherent sums), and to 1e-6 of ``sum |x|`` elsewhere (incoherent sums, where
``num`` itself is a small random remainder; measured errors are ~1e-9..2e-7 of ``sum |x|``).
"""

import numpy as np
import pytest

from polishplugin.core.dose import dose_weights
from polishplugin.core.fourier import frequency_grid, round_half_away
from polishplugin.testing import motion_synthetic as synthetic
from polishplugin.core.motion.tsc import (EvalRing, alignment_lowpass, make_eval_ring, phase_table, ring_rows,
                                          rows_from_pixels, tsc_from_terms, tsc_terms, tsc_terms_reference)
from polishplugin.tests.kernels.cl_devices import device_params  # skips with "no OpenCL: ..." without a device


def _old_selection(box, k_eval, k_out):
    """The ring as first written: ``np.nonzero`` of the shell mask, (ky, kx) per pixel."""
    ky, kx = frequency_grid((box, box))
    shell = round_half_away(np.sqrt((kx * kx + ky * ky).astype(np.float64)))
    sel = (shell >= k_eval + 2) & (shell < k_out)
    iy, ix = np.nonzero(sel)
    return iy, ix, np.broadcast_to(ky, sel.shape)[iy, ix]


def _expand(rows):
    lens = rows[:, 3].astype(np.intp)
    ky = np.repeat(rows[:, 0], lens)
    kx = np.arange(lens.sum()) - np.repeat(rows[:, 2] - rows[:, 1], lens)
    return ky, kx


def _exact_num(ring, tracks):
    """float64 ``sum Re(x exp(-2 pi i (kx tx + ky ty) / N))``."""
    t = np.asarray(tracks, np.float64)
    phi = 2 * np.pi / ring.box * (t[..., 0, None] * ring.kx + t[..., 1, None] * ring.ky)
    x = ring.x.astype(np.complex128)
    return float((x.real * np.cos(phi) + x.imag * np.sin(phi)).sum())


def _planted(seed=0, n_p=9, n_f=4, box=64, k_eval=10, k_out=30, noise=0.3):
    """Ring whose ``x`` is coherent for ``tracks`` (obs = pred moved by the track + noise); tracks up to +-30 px,
    two particles at +-250 px and some half-integer shifts."""
    rng = np.random.default_rng(seed)
    half = box // 2 + 1
    tracks = rng.uniform(-30, 30, (n_p, n_f, 2))
    tracks[0] = [250.3, -249.6]
    tracks[1] = [-251.5, 30.0]
    tracks[2, :, 0] = 0.5
    tracks[2, :, 1] = -29.5
    pred = (rng.normal(size=(n_p, box, half)) + 1j * rng.normal(size=(n_p, box, half))).astype(np.complex64)
    ky, kx = frequency_grid((box, box))
    phase = np.exp(-2j * np.pi * (tracks[..., 0, None, None] * kx + tracks[..., 1, None, None] * ky) / box)
    obs = pred[:, None] * phase + noise * (rng.normal(size=phase.shape) + 1j * rng.normal(size=phase.shape))
    dw = rng.uniform(0.1, 1.0, (n_f, box, half))
    return make_eval_ring(obs.astype(np.complex64), pred, dw, k_eval, k_out), tracks


def _check(num, ring, tracks, coherent, incoherent_tol=1e-6):
    exact = _exact_num(ring, tracks)
    if coherent:
        assert exact > 0.5 * np.abs(ring.x).sum()  # the planted shifts really are coherent
        np.testing.assert_allclose(num, exact, rtol=1e-5)
    else:
        assert abs(num - exact) <= incoherent_tol * np.abs(ring.x).sum(), (num, exact)


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
    for terms in (tsc_terms, tsc_terms_reference):
        np.testing.assert_allclose(terms(ring, t), [num, d1, d2], rtol=1e-5)
    assert tsc_from_terms(tsc_terms(ring, t)) > tsc_from_terms(tsc_terms(ring, t + 1.0)) + 0.02
    assert tsc_from_terms(np.array([1.0, 0.0, 1.0])) == 0.0


@pytest.mark.parametrize("box,k_eval,k_out", [(64, 10, 30), (32, 6, 14), (63, 4, 20), (64, -2, 33), (48, 0, 60),
                                              (64, 40, 30)])
def test_ring_rows_reproduce_the_old_selection(box, k_eval, k_out):
    iy, ix, ky = _old_selection(box, k_eval, k_out)
    rows = ring_rows(box, k_eval, k_out)
    rky, rkx = _expand(rows)
    np.testing.assert_array_equal(rky, ky)
    np.testing.assert_array_equal(rkx, ix)
    assert np.all(rows[:, 3] > 0) and np.all(np.diff(rows[:, 2]) == rows[:-1, 3])
    np.testing.assert_array_equal(rows_from_pixels(ix, ky), rows)  # maximal runs: one per ky
    assert len(np.unique(rows[:, 0])) == len(rows)
    if iy.size:
        obs = np.zeros((1, 1, box, box // 2 + 1), np.complex64)
        ring = make_eval_ring(obs, obs[:, 0], np.ones((1, box, box // 2 + 1)), k_eval, k_out)
        np.testing.assert_array_equal(ring.kx, ix)
        np.testing.assert_array_equal(ring.ky, ky)
        np.testing.assert_array_equal(ring.rows, rows)


def test_make_eval_ring_matches_float64():
    rng = np.random.default_rng(5)
    n_p, n_f, box = 7, 5, 64
    half = box // 2 + 1
    obs = (rng.normal(size=(n_p, n_f, box, half)) + 1j * rng.normal(size=(n_p, n_f, box, half))).astype(np.complex64)
    pred = (rng.normal(size=(n_p, box, half)) + 1j * rng.normal(size=(n_p, box, half))).astype(np.complex64)
    dw = rng.uniform(0, 1, (n_f, box, half))
    iy, ix, _ = _old_selection(box, 10, 30)
    o = obs[..., iy, ix].astype(np.complex128)
    p = pred[..., iy, ix].astype(np.complex128)
    d = dw[..., iy, ix]
    x = d[None] * p[:, None] * np.conj(o)
    d1 = (d[None] * np.abs(o) ** 2).sum()
    d2 = (d[None] * np.abs(p[:, None]) ** 2).sum()
    for batch in (3, 16):  # uneven last batch / one batch
        ring = make_eval_ring(obs, pred, dw, 10, 30, batch=batch)
        assert ring.x.dtype == np.complex64 and ring.x.shape == x.shape
        np.testing.assert_allclose(ring.x, x, rtol=1e-6, atol=1e-6 * np.abs(x).max())
        np.testing.assert_allclose([ring.d1, ring.d2], [d1, d2], rtol=1e-9)
    ring128 = make_eval_ring(obs.astype(np.complex128), pred.astype(np.complex128), dw, 10, 30)
    np.testing.assert_allclose(ring128.x, x, rtol=1e-6, atol=1e-6 * np.abs(x).max())


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_numpy_matches_reference_and_float64(seed):
    ring, tracks = _planted(seed)
    rng = np.random.default_rng(100 + seed)
    for t, coherent in ((tracks, True), (tracks + rng.uniform(-3, 3, tracks.shape), False),
                        (rng.uniform(-30, 30, tracks.shape), False)):
        fast = tsc_terms(ring, t)
        ref = tsc_terms_reference(ring, t)
        _check(fast[0], ring, t, coherent, 2e-8)  # measured ~1e-9
        _check(ref[0], ring, t, coherent, 1e-5)  # float32 phases of up to ~700 rad: ~7e-7 here
        assert fast[1] == ring.d1 and fast[2] == ring.d2
        for batch in (1, 4):
            np.testing.assert_allclose(tsc_terms(ring, t, batch=batch)[0], fast[0], rtol=1e-9, atol=1e-9)
    # a ring whose pixels are not in row order (rows derived from kx/ky: many short runs)
    perm = rng.permutation(ring.kx.size)
    shuffled = EvalRing(ring.kx[perm], ring.ky[perm], ring.x[..., perm], ring.box, ring.d1, ring.d2)
    assert len(shuffled.rows) > len(ring.rows)
    np.testing.assert_allclose(tsc_terms(shuffled, tracks)[0], _exact_num(ring, tracks), rtol=1e-5)


def test_phase_table_is_accurate_at_large_shifts():
    rng = np.random.default_rng(2)
    t = np.r_[rng.uniform(-300, 300, 500), [0.5, -0.5, 255.5, 1e4 + 0.25]]
    k = np.arange(-40, 41)
    want = np.exp(-2j * np.pi * np.multiply.outer(t, k) / 64)
    got = phase_table(t, k, 64)
    assert got.dtype == np.complex64 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-7)


def test_fast_numpy_long_rows():
    """The whole half plane (rows of N/2+1 pixels) at box 128."""
    ring, tracks = _planted(seed=7, n_p=3, n_f=2, box=128, k_eval=-2, k_out=200)
    assert ring.rows[:, 3].max() == 65
    _check(tsc_terms(ring, tracks)[0], ring, tracks, True)
    _check(tsc_terms(ring, tracks + 0.37)[0], ring, tracks + 0.37, False)


def test_empty_ring():
    obs = np.ones((2, 3, 32, 17), np.complex64)
    ring = make_eval_ring(obs, obs[:, 0], np.ones((3, 32, 17)), 40, 20)
    assert ring.x.shape == (2, 3, 0) and ring.rows.shape == (0, 4)
    np.testing.assert_array_equal(tsc_terms(ring, np.zeros((2, 3, 2))), [0.0, 0.0, 0.0])


def test_alignment_lowpass_edges():
    lp = alignment_lowpass(32, 10)
    ky, kx = frequency_grid((32, 32))
    r = np.sqrt(kx * kx + ky * ky + 0.0)
    assert np.all(lp[r <= 9] == 1) and np.all(lp[r >= 11] == 0)
    assert np.all((lp >= 0) & (lp <= 1)) and abs(lp[0, 10] - 0.5) < 1e-12


@pytest.mark.opencl
@pytest.mark.parametrize("device", device_params())
def test_tsc_opencl_matches_float64(device):
    from polishplugin.core.motion.tsc_cl import TscCL

    rng = np.random.default_rng(11)
    for seed in (0, 1):
        ring, tracks = _planted(seed)
        cl_terms = TscCL(ring, device)
        for t, coherent in ((tracks, True), (tracks + rng.uniform(-3, 3, tracks.shape), False),
                            (rng.uniform(-30, 30, tracks.shape), False)):
            got = cl_terms(t)
            _check(got[0], ring, t, coherent, 1e-7)  # measured ~5e-9 on PoCL
            assert got[1] == ring.d1 and got[2] == ring.d2
            if coherent:
                np.testing.assert_allclose(got[0], tsc_terms_reference(ring, t)[0], rtol=1e-5)
    ring, tracks = _planted(seed=7, n_p=3, n_f=2, box=128, k_eval=-2, k_out=200)  # rows of 65 pixels
    _check(TscCL(ring, device)(tracks)[0], ring, tracks, True)
    _check(TscCL(ring, device)(tracks + 0.37)[0], ring, tracks + 0.37, False, 1e-7)
    perm = rng.permutation(ring.kx.size)
    shuffled = EvalRing(ring.kx[perm], ring.ky[perm], ring.x[..., perm], ring.box, ring.d1, ring.d2)
    _check(TscCL(shuffled, device)(tracks)[0], ring, tracks, True)


@pytest.mark.opencl
@pytest.mark.parametrize("device", device_params())
def test_tsc_opencl_per_pixel_phases(device):
    """Every particle-frame sees one pixel of a 9-pixel row or of a 1-pixel row: its partial sum is one
    ``cos`` or ``-sin`` of the phase, to float32 precision (checks the device's cis(), the 4-lane recurrence and
    the tail loop), for shifts up to +-300 px."""
    from polishplugin.core.motion.tsc_cl import TscCL

    box, n_p, n_f = 64, 40, 20
    kx = np.r_[np.arange(3, 12), 32].astype(np.float64)
    ky = np.r_[np.full(9, -7), 32].astype(np.float64)
    x = np.zeros((n_p, n_f, kx.size), np.complex64)
    j = np.arange(n_f) % kx.size
    x[:, np.arange(n_f), j] = np.where(np.arange(n_f) < kx.size, 1, -1j)
    ring = EvalRing(kx, ky, x, box, 1.0, 1.0)
    np.testing.assert_array_equal(ring.rows, [[-7, 3, 0, 9], [32, 32, 9, 1]])
    rng = np.random.default_rng(9)
    for scale in (0.7, 30.0, 300.0):
        t = rng.uniform(-scale, scale, (n_p, n_f, 2))
        c = TscCL(ring, device)
        c(t)
        phi = 2 * np.pi / box * (t[..., 0] * kx[j] + t[..., 1] * ky[j])
        want = np.where(np.arange(n_f) < kx.size, np.cos(phi), -np.sin(phi))
        np.testing.assert_allclose(c.num.reshape(n_p, n_f), want, rtol=0, atol=5e-7)


@pytest.mark.opencl
@pytest.mark.parametrize("device", device_params())
def test_tsc_opencl_synthetic_micrograph(device):
    from polishplugin.core.motion.tsc_cl import TscCL

    m = synthetic.make_micrograph(seed=4, n_p=5, n_f=4, box=32)
    ring = make_eval_ring(m.frames_rfft, m.pred_opposite_rfft, dose_weights(4, 32, 1.5, 1.5), 6, 14)
    for t in (m.true_tracks_px, m.true_tracks_px + 3.3):
        np.testing.assert_allclose(TscCL(ring, device)(t), tsc_terms(ring, t), rtol=1e-5)
