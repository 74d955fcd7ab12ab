"""The joint track fit of training: analytic gradient, same tracks as one fit per micrograph, grouping."""

import numpy as np
import pytest

from polishplugin.core.motion import synthetic
from polishplugin.core.motion.estimate import fit_tracks, sigmas_to_pixels
from polishplugin.core.motion.joint import JointFit, MicrographFit
from polishplugin.core.motion.tsc import frequency_split
from polishplugin.programs import _motion_train as T


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
    err = lambda tr: np.sqrt(np.mean([((t - m.true_tracks_px) ** 2).sum(-1).mean() for t, m in zip(tr, mics)]))
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
