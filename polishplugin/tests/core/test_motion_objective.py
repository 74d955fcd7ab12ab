"""Catmull-Rom interpolation, GP basis round trip and the analytic gradient of the motion objective."""

import numpy as np
import pytest

from polishplugin.core.motion.gp_basis import gp_basis, params_to_tracks, tracks_to_params, n_params
from polishplugin.core.motion.objective import MotionObjective, catmull_rom


def _fd(fun, x, h=1e-6):
    g = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (fun(x + e) - fun(x - e)) / (2 * h)
    return g


def test_catmull_rom_reproduces_integer_samples_with_wrap():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(5, 9, 11))
    xy = np.array([[0, 0], [3, 4], [10, 8], [-1, -1], [12, 9]], float)  # last two wrap
    v, _ = catmull_rom(maps, xy)
    expect = [maps[0, 0, 0], maps[1, 4, 3], maps[2, 8, 10], maps[3, 8, 10], maps[4, 0, 1]]
    np.testing.assert_allclose(v, expect, rtol=0, atol=1e-12)
    v2, _ = catmull_rom(maps, xy - 2, origin=2)
    np.testing.assert_allclose(v2, v, atol=1e-12)


def test_catmull_rom_reproduces_linear_and_quadratic_ramps():
    y, x = np.mgrid[0:16, 0:16].astype(float)
    ramp = (2 * x + 3 * y + 0.5 * x * x)[None]
    v, g = catmull_rom(ramp, np.array([[5.3, 7.6]]))
    assert v[0] == pytest.approx(2 * 5.3 + 3 * 7.6 + 0.5 * 5.3 ** 2, abs=1e-9)
    np.testing.assert_allclose(g[0], [2 + 5.3, 3], atol=1e-9)


def test_catmull_rom_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(6, 12, 12))
    xy = rng.uniform(-20, 20, (6, 2))
    _, g = catmull_rom(maps, xy)
    for k in range(2):
        e = np.zeros_like(xy)
        e[:, k] = 1e-6
        fd = (catmull_rom(maps, xy + e)[0] - catmull_rom(maps, xy - e)[0]) / 2e-6
        np.testing.assert_allclose(g[:, k], fd, rtol=1e-5, atol=1e-7)


def test_tracks_params_round_trip():
    rng = np.random.default_rng(2)
    pos = rng.uniform(0, 1000, (7, 2))
    basis, lam = gp_basis(pos, 0.8, 300.0)
    n_f = 5
    x = rng.normal(size=n_params(7, n_f, basis.shape[1]))
    tracks = params_to_tracks(x, 7, n_f, basis)
    np.testing.assert_allclose(tracks_to_params(tracks, basis, lam), x, atol=1e-9)
    np.testing.assert_allclose(params_to_tracks(tracks_to_params(tracks, basis, lam), 7, n_f, basis),
                               tracks, atol=1e-9)
    # the basis spans the velocity covariance
    d = np.sqrt(((pos[:, None] - pos[None]) ** 2).sum(-1))
    np.testing.assert_allclose(basis @ basis.T, 0.64 * np.exp(-d / 300.0), atol=1e-9)


@pytest.mark.parametrize("sig_acc", [2.0, -1.0])
def test_objective_gradient_matches_finite_differences(sig_acc):
    rng = np.random.default_rng(3)
    n_p, n_f, m = 5, 6, 16
    cc = rng.normal(size=(n_p, n_f, m, m))
    pos = rng.uniform(0, 500, (n_p, 2))
    basis, lam = gp_basis(pos, 1.3, 200.0)
    glob = rng.normal(size=(n_f, 2))
    obj = MotionObjective(cc, basis, lam, sig_acc, glob, cc_origin=m // 2)
    x = rng.normal(size=n_params(n_p, n_f, basis.shape[1])) * 2
    _, g = obj(x)
    fd = _fd(lambda z: obj(z)[0], x)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6 * np.abs(g).max())
