"""The joint track fit of training: analytic gradient, same tracks as one fit per micrograph, grouping."""

import numpy as np
import pytest

from polishplugin.testing import motion_synthetic as synthetic
from polishplugin.core.motion.estimate import fit_tracks, sigmas_to_pixels
from polishplugin.core.motion.joint import JointFit, MicrographFit
from polishplugin.core.motion.tsc import frequency_split
from polishplugin.core.motion import training as T


@pytest.fixture(scope="module")
def prepared():
    mics = [synthetic.make_micrograph(seed=40 + i, n_p=12 + 5 * i, n_f=10, box=32, noise=2.0, name=f"m{i}")
            for i in range(3)]
    kc, ke = frequency_split(12)
    return mics, [T.prepare_micrograph(m, kc, ke, 12, 24) for m in mics]


def _joint(prep):
    maps = np.concatenate([m.cc.reshape(-1, *m.cc.shape[2:]) for m in prep])
    return JointFit([MicrographFit(m.positions_px, m.cc.shape[1]) for m in prep], maps, prep[0].cc_origin)


def _pixels(prep, params=(0.6, 2000.0, 3.0)):
    m = prep[0]
    return sigmas_to_pixels(*params, m.dose_per_frame, m.angpix, m.coords_angpix)


def test_joint_gradient_equals_finite_differences(prepared):
    _, prep = prepared
    jf = _joint(prep)
    sv, sd, sa = _pixels(prep)
    jf.fit(sv, sd, sa, [m.initial_tracks_px for m in prep], max_iters=1)  # sets the bases
    rng = np.random.default_rng(3)
    x = rng.normal(size=jf.n_m * jf.pmax * 2 + jf.n_m * (jf.n_f - 1) * jf.d * 2) * 0.3
    pos0, c = jf._split(x)
    pos0[~jf.valid] = 0
    _, g = jf.objective(x)
    for i in rng.choice(x.size, 25, replace=False):
        e = np.zeros_like(x)
        e[i] = 1e-6
        fd = (jf.objective(x + e)[0] - jf.objective(x - e)[0]) / 2e-6
        assert fd == pytest.approx(g[i], rel=1e-5, abs=1e-6)


def test_joint_fit_matches_one_fit_per_micrograph(prepared):
    mics, prep = prepared
    sv, sd, sa = _pixels(prep)
    alone = [fit_tracks(m.cc, m.initial_tracks_px, m.positions_px, sv, sd, sa, cc_origin=m.cc_origin,
                        ftol=1e-12).tracks_px for m in prep]
    joint = _joint(prep).fit(sv, sd, sa, [m.initial_tracks_px for m in prep], ftol=1e-12)
    for a, b, m in zip(alone, joint, mics):
        assert a.shape == b.shape == m.true_tracks_px.shape
        assert np.abs(a - b).max() < 0.02  # px; both stop on their own tolerance
    # and the fit is real: closer to the planted tracks than the start
    def err(tr):
        return np.sqrt(np.mean([((t - m.true_tracks_px) ** 2).sum(-1).mean() for t, m in zip(tr, mics)]))

    assert err(joint) < 0.8 * err([m.initial_tracks_px for m in prep])


def test_sigma_vel_change_reuses_the_eigenbasis(prepared):
    _, prep = prepared
    jf = _joint(prep)
    sv, sd, sa = _pixels(prep)
    inits = [m.initial_tracks_px for m in prep]
    jf.fit(sv, sd, sa, inits, max_iters=2)
    n = len(jf._eig)
    jf.fit(2 * sv, sd, sa, inits, max_iters=2)
    assert len(jf._eig) == n  # same s_div: no new decomposition
    jf.fit(sv, 2 * sd, sa, inits, max_iters=2)
    assert len(jf._eig) == 2 * n


def test_fit_groups_depend_on_particle_counts_only():
    assert T.fit_groups([5, 5, 5, 5], 10) == [[0, 1], [2, 3]]
    assert T.fit_groups([30, 2, 2], 10) == [[0], [1, 2]]  # a large micrograph is a group of its own
    assert T.fit_groups([], 10) == []


def test_joint_fit_rejects_single_particle_micrographs():
    with pytest.raises(ValueError, match="at least 2 particles"):
        JointFit([MicrographFit(np.zeros((1, 2)), 4)], np.zeros((4, 8, 8), np.float32), 4)


def test_maps_cut_around_each_track_start_give_the_same_tracks():
    """Training keeps +-window px around each particle-frame's start: same fit as the full maps."""
    mics = [synthetic.make_micrograph(seed=60 + i, n_p=10, n_f=8, box=48, noise=2.0, global_drift_px=9.0,
                                      name=f"w{i}") for i in range(2)]
    kc, ke = frequency_split(16)
    full = [T.prepare_micrograph(m, kc, ke, 16, None) for m in mics]
    cut = [T.prepare_micrograph(m, kc, ke, 16, 40, window_px=8) for m in mics]
    assert cut[0].cc.shape[2:] == (16, 16) and full[0].cc.shape[2:] == (48, 48)
    assert np.abs(cut[0].centres).max() >= 3  # the drift moves the windows away from zero shift
    # the window's centre sample is the full map's sample at the track start
    m, c = full[0], cut[0]
    p, f = 3, 7
    cy, cx = c.centres[p, f, 1] % 48, c.centres[p, f, 0] % 48
    assert c.cc[p, f, 8, 8] == pytest.approx(m.cc[p, f, cy, cx], rel=1e-5, abs=float(1e-5 * np.abs(m.cc).max()))
    sv, sd, sa = _pixels(full)
    args = dict(max_iters=10000, eps=1e-5, ftol=1e-12)
    ref = _joint(full).fit(sv, sd, sa, [x.initial_tracks_px for x in full], **args)
    maps = np.concatenate([x.cc.reshape(-1, 16, 16) for x in cut])
    centres = np.concatenate([x.centres.reshape(-1, 2) for x in cut])
    jf = JointFit([MicrographFit(x.positions_px, 8) for x in cut], maps, cut[0].cc_origin, map_centres=centres)
    got = jf.fit(sv, sd, sa, [x.initial_tracks_px for x in cut], **args)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b, a, atol=1e-6)


def test_window_transform_equals_full_transform_then_cut():
    from polishplugin.core.motion.cross_correlation import cc_maps, crop_windows
    from polishplugin.core.motion.tsc import alignment_lowpass

    rng = np.random.default_rng(5)
    n_p, n_f, n = 3, 4, 40
    obs = (rng.normal(size=(n_p, n_f, n, n // 2 + 1)) + 1j * rng.normal(size=(n_p, n_f, n, n // 2 + 1)))
    pred = (rng.normal(size=(n_p, n, n // 2 + 1)) + 1j * rng.normal(size=(n_p, n, n // 2 + 1)))
    w = np.broadcast_to(alignment_lowpass(n, 9), (n_f, n, n // 2 + 1)).copy()  # columns > 10 are zero
    centres = rng.integers(-30, 30, (n_p, n_f, 2))
    full = cc_maps(obs.astype(np.complex64), pred.astype(np.complex64), w)
    cut = cc_maps(obs.astype(np.complex64), pred.astype(np.complex64), w, crop_px=12, centres=centres)
    for p in range(n_p):
        np.testing.assert_allclose(cut[p], crop_windows(full[p], 12, centres[p]), rtol=1e-5,
                                   atol=1e-5 * np.abs(full).max())
