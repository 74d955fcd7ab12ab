"""Fourier-grid projection/back-projection and the E-step on synthetic particles (core/refine)."""

import numpy as np
import pytest
from scipy import ndimage

from polishplugin.core.ctf import ctf_2d
from polishplugin.core.fsc import fsc
from polishplugin.core.geometry import euler_to_matrix, symmetry_matrices
from polishplugin.core.refine.estep import (EStepSettings, NoiseAccumulator, expectation, posterior_weights,
                                            prepare_images, significant_mask, squared_differences)
from polishplugin.core.refine.fourier3d import (Backprojector, grid_to_map, halfgrid_fsc, image_rfft, map_to_grid,
                                                pixel_list, project_pixels, regularised_grid)
from polishplugin.core.refine.sampling import OrientationGrid, rotation_angle_deg
from polishplugin.core.refine.schedule import (AutoSampling, resolution_shell_from_ssnr, ssnr_from_fsc,
                                               symmetry_aware_angle_deg)
from polishplugin.testing.refine_synthetic import blob_phantom, simulate_particles

N = 24


@pytest.fixture(scope="module")
def phantom():
    return blob_phantom(N, "C1", n_blobs=10, seed=3)


def test_projection_of_identity_is_the_z_sum(phantom):
    iy, ix, k = pixel_list(N, N / 2)
    p = project_pixels(map_to_grid(phantom), np.eye(3)[None], k)[0]
    ref = image_rfft(phantom.sum(0))[iy, ix]
    assert np.abs(p - ref).max() < 1e-5 * np.abs(ref).max()


def test_projection_of_rotated_map(phantom):
    """Projection with A equals the z-sum of the map rotated by A (real-space interpolation)."""
    a = euler_to_matrix(30.0, 40.0, 50.0)
    c = N // 2
    z, y, x = np.meshgrid(*[np.arange(N) - c] * 3, indexing="ij")
    src = np.stack([x, y, z], -1).reshape(-1, 3) @ a  # A^T r
    rotated = ndimage.map_coordinates(phantom, [src[:, 2] + c, src[:, 1] + c, src[:, 0] + c], order=3)
    ref = image_rfft(rotated.reshape(N, N, N).sum(0))
    iy, ix, k = pixel_list(N, N / 2 - 2)
    p = project_pixels(map_to_grid(phantom), a[None], k)[0]
    corr = np.abs(np.vdot(p, ref[iy, ix])) / np.linalg.norm(p) / np.linalg.norm(ref[iy, ix])
    assert corr > 0.999


def test_backprojection_round_trip(phantom):
    g = map_to_grid(phantom)
    og = OrientationGrid(2)
    ang = og.angles()
    mats = euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2])
    iy, ix, k = pixel_list(N, N / 2)
    bp = Backprojector(N)
    proj = project_pixels(g, mats, k)
    bp.insert(proj, np.ones(proj.shape, np.float32), mats, k)
    d, w = bp.finalised()
    rec = grid_to_map(regularised_grid(d, w, None, 2, N), N)
    f = fsc(rec, phantom)
    assert f[:N // 2 - 2].min() > 0.95


def test_squared_differences_equal_direct_sum():
    rng = np.random.default_rng(0)
    n_pix = 50
    k = rng.integers(-5, 6, (n_pix, 2)).astype(float)
    x = (rng.normal(size=(2, n_pix)) + 1j * rng.normal(size=(2, n_pix))).astype(np.complex64)
    proj = (rng.normal(size=(3, n_pix)) + 1j * rng.normal(size=(3, n_pix))).astype(np.complex64)
    ctf = rng.normal(size=(2, n_pix)).astype(np.float32)
    w = rng.uniform(0.5, 2, (2, n_pix)).astype(np.float32)
    shifts = rng.normal(size=(2, 4, 2))
    d2 = squared_differences(x, ctf, w, proj, shifts, k, N)
    for p in range(2):
        for t in range(4):
            xt = x[p] * np.exp(-2j * np.pi * (k @ shifts[p, t]) / N)
            for r in range(3):
                direct = (w[p] * np.abs(xt - ctf[p] * proj[r]) ** 2).sum()
                assert d2[p, t, r] == pytest.approx(direct, rel=1e-4)


def test_significant_mask_keeps_smallest_set():
    w = np.array([0.5, 0.3, 0.15, 0.05])
    assert significant_mask(w, 0.79).tolist() == [True, True, False, False]
    assert significant_mask(w, 0.999).sum() == 4
    p = posterior_weights(np.array([0.0, -np.inf, np.log(3.0)]))
    assert np.allclose(p, [0.25, 0, 0.75])


@pytest.mark.parametrize("spread", [0.3, 3.0, 30.0, 300.0])
def test_significant_mask_equals_the_full_sort(spread):
    """The partial sort (only entries that can matter) gives the same set as sorting all entries, for
    posteriors from flat to peaked, with and without the --maxsig limit."""
    rng = np.random.default_rng(int(spread))
    for _ in range(20):
        w = posterior_weights(-spread * rng.exponential(size=(21, 3000)))
        flat = w.ravel()
        order = np.argsort(flat, kind="stable")[::-1]
        n_keep = int(np.searchsorted(np.cumsum(flat[order]), 0.999 * flat.sum()) + 1)
        for limit in (0, 200):
            ref = np.zeros(flat.size, bool)
            ref[order[:min(n_keep, limit) if limit else n_keep]] = True
            assert np.array_equal(significant_mask(w, 0.999, limit).ravel(), ref)


def _planted_particles(phantom):
    """24 particles (SNR 2, CTF, shifts) and what the E-step needs of them."""
    sim = simulate_particles(phantom, 24, 4.0, snr=2.0, max_shift_px=1.5, seed=5)
    iy, ix, k = pixel_list(N, N / 2)
    shells = np.rint(np.sqrt((k ** 2).sum(1))).astype(int)
    ctf = np.stack([ctf_2d(p, N, 4.0) for p in sim.ctf])
    old = np.round(sim.origins_px)
    x, rounded = prepare_images(sim.images, old, N / 2 - 2)
    sigma2 = np.full(len(k), sim.noise_sigma ** 2 / N ** 2 / 2)
    true = euler_to_matrix(*sim.angles_deg.T)
    return sim, iy, ix, k, shells, ctf, old, x, rounded, sigma2, true


def test_estep_recovers_planted_poses(phantom):
    """Global search (order 2 + oversampling) on clean-ish particles: median error below the step."""
    sim, iy, ix, k, shells, ctf, old, x, rounded, sigma2, true = _planted_particles(phantom)
    settings = EStepSettings(box=N, angpix=4.0, coarse_radius=8, current_radius=N / 2, offset_range_px=2,
                             offset_step_px=1)
    noise = NoiseAccumulator(N // 2 + 1)
    bp = Backprojector(N)
    res = expectation(map_to_grid(phantom), OrientationGrid(2), x[:, iy, ix], ctf[:, iy, ix].astype(np.float32),
                      sigma2, k, shells, old, rounded, true, settings, bp, noise)
    est = euler_to_matrix(*np.array([r.angles for r in res]).T)
    err = rotation_angle_deg(est, true)
    assert np.median(err) < 7.5  # the fine step
    off = np.array([r.origin_px for r in res])
    assert np.median(np.abs(off - sim.origins_px)) < 0.5
    # the noise estimate sees the masked white noise (mask keeps about half the box)
    s2 = noise.sigma2(np.ones(N // 2 + 1))[2:N // 2]
    assert np.all((s2 > 0.2 * sigma2[0]) & (s2 < 1.2 * sigma2[0]))
    d, w = bp.finalised()
    rec = grid_to_map(regularised_grid(d, w, None, 2, N), N)
    assert fsc(rec, phantom)[:5].min() > 0.9


def test_halfgrid_fsc_and_ssnr():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(16, 16, 9)) + 1j * rng.normal(size=(16, 16, 9))
    w = np.ones((16, 16, 9))
    f = halfgrid_fsc(d, w, d, w, 2, 8)
    assert np.allclose(f, 1.0)
    s = ssnr_from_fsc(np.array([1.0, 0.9, 0.5, 0.2, 0.0]))
    assert s[1] == pytest.approx(9.0) and s[2] == pytest.approx(1.0) and s[0] == pytest.approx(999.0)
    # joined: fsc 1/7 -> fsc' = 0.5 -> SSNR = 1
    assert ssnr_from_fsc(np.array([1 / 7]), joined=True)[0] == pytest.approx(1.0)
    assert resolution_shell_from_ssnr(np.array([9, 9, 9, 9, 9, 9, 9, 0.5, 0.2, 0.1, 0.1, 0.1])) == 6


def test_symmetry_aware_angle():
    ops = symmetry_matrices("D2")
    a = euler_to_matrix(10.0, 50.0, 20.0)[None]
    assert symmetry_aware_angle_deg(a @ ops[2].T, a, ops)[0] < 1e-6


def test_auto_sampling_proceeds_and_goes_local():
    s = AutoSampling(healpix_order=2, offset_range_px=5, offset_step_px=2, auto_local_order=4)
    s.record_resolution(10.0)
    s.record_resolution(10.0)  # no gain
    s.record_changes(1.0, 0.1)  # small changes
    assert s.update(acc_rot_deg=1.0, acc_trans_px=0.5, offset_change_px=0.3)
    assert s.healpix_order == 3 and not s.local and s.offset_step_px <= 2
    s.record_resolution(10.0)
    s.record_changes(1.0, 0.1)
    assert s.update(1.0, 0.5, 0.3) and s.local and s.local_sigma_deg == pytest.approx(3.75)
    s.record_resolution(10.0)
    s.record_changes(0.5, 0.1)
    assert not s.update(acc_rot_deg=5.0, acc_trans_px=0.5, offset_change_px=0.3)  # 1.875 < 0.75*5
    assert s.has_fine_enough_sampling and s.converged()


def test_firstiter_cc_is_blind_to_reference_scale(phantom):
    """--firstiter_cc: with a reference 30x too bright the likelihood E-step fails (it prefers faint
    projections) while the normalised cross-correlation finds the same poses as with the right scale,
    keeping one sample per particle with weight 1."""
    _, iy, ix, k, shells, ctf, old, x, rounded, sigma2, true = _planted_particles(phantom)

    def run(scale, cc):
        settings = EStepSettings(box=N, angpix=4.0, coarse_radius=8, current_radius=N / 2, offset_range_px=2,
                                 offset_step_px=1, cc=cc)
        res = expectation(map_to_grid(phantom * scale), OrientationGrid(2), x[:, iy, ix],
                          ctf[:, iy, ix].astype(np.float32), sigma2, k, shells, old, rounded, true, settings,
                          None, None)
        est = euler_to_matrix(*np.array([r.angles for r in res]).T)
        return est, rotation_angle_deg(est, true), res

    _, err_ml_bright, _ = run(30.0, False)
    est1, err_cc, res = run(1.0, True)
    est30, err_cc_bright, _ = run(30.0, True)
    assert np.median(err_ml_bright) > 30  # the problem --firstiter_cc solves
    assert np.median(err_cc_bright) < 7.5 and np.allclose(est1, est30, atol=1e-6)
    assert all(r.pmax == 1.0 and r.n_significant == 1 for r in res)


def test_noise_free_local_search_has_no_pose_bias():
    """Noise-free D2 particles with CTF, the true map, a local search from the true poses at HEALPix
    order 6 (0.47 deg fine) with 0.0625 px fine offsets: the poses come back within a fraction of the
    step (measured 0.23 deg, 0.04 px), so the projector, the shifts and the angle conventions of the
    E-step carry no systematic error.  Offsets and angles trade: with 0.25 px fine offsets the same
    search gives 0.60 deg (and fails here)."""
    box, angpix = 32, 3.0
    vol = blob_phantom(box, "D2", n_blobs=40, blob_sigma_px=0.9, seed=0)
    sim = simulate_particles(vol, 16, angpix, snr=1e6, seed=0)
    ctf = np.stack([ctf_2d(p, box, angpix) for p in sim.ctf]).astype(np.float32)
    iy, ix, k = pixel_list(box, box / 2)
    shells = np.rint(np.sqrt((k ** 2).sum(1))).astype(int)
    x, rounded = prepare_images(sim.images, sim.origins_px, 0.45 * box)
    true = euler_to_matrix(*sim.angles_deg.T)
    settings = EStepSettings(box=box, angpix=angpix, coarse_radius=box / 2, current_radius=box / 2,
                             offset_range_px=0.25, offset_step_px=0.125, sigma_offset_a=2.0, local_sigma_deg=3.0,
                             max_significant=0)
    res = expectation(map_to_grid(vol), OrientationGrid(6), x[:, iy, ix], ctf[:, iy, ix], np.full(len(k), 1e-3),
                      k, shells, sim.origins_px, rounded, true, settings, None, None)
    est = euler_to_matrix(*np.array([r.angles for r in res]).T)
    assert np.median(symmetry_aware_angle_deg(est, true, symmetry_matrices("D2"))) < 0.4
    off = np.array([r.origin_px for r in res])
    assert np.median(np.linalg.norm(off - sim.origins_px, axis=1)) < 0.1


def test_prepass_children_cover_the_grid_and_stay_in_the_parents_cell():
    """Every orientation of an order-3 grid (C1 and the D2 asymmetric unit) is a child of some order-2 parent;
    each child's viewing direction is one of the parent pixel's 4 nested pixels and its in-plane angle lies
    within one order-3 step (7.5 deg) of the parent's (15-deg steps at order 2)."""
    from polishplugin.core.refine.estep import CoarsePrepass
    for sym in ("C1", "D2"):
        orient = OrientationGrid(3, symmetry_matrices(sym))
        s = EStepSettings(box=16, angpix=4.0, prepass_radius=4.0)
        pre = CoarsePrepass(orient, np.eye(3), map_to_grid(np.zeros((16, 16, 16), np.float32)),
                            pixel_list(16, 8)[2], s)
        kids = pre.children[pre.children >= 0]
        assert np.array_equal(np.unique(kids), np.arange(len(orient)))
        parents = OrientationGrid(2, pixels=np.unique(orient.pixels // 4))
        par = np.repeat(np.arange(len(parents)), pre.children.shape[1])[pre.children.ravel() >= 0]
        assert np.array_equal(orient.pixels[kids // orient.n_psi] // 4, parents.pixels[par // parents.n_psi])
        dpsi = (orient.angles(kids)[:, 2] - parents.angles(par)[:, 2] + 180.0) % 360.0 - 180.0
        assert np.abs(dpsi).max() == pytest.approx(7.5)


def test_prepass_global_search_finds_the_exhaustive_poses(phantom):
    """Order-3 global search on the planted particles: the coarse pre-pass (order 2 on fewer pixels) picks the
    regions where the exhaustive coarse pass finds its poses; both recover the planted poses alike."""
    sim, iy, ix, k, shells, ctf, old, x, rounded, sigma2, true = _planted_particles(phantom)
    out = {}
    for name, radius in (("exhaustive", None), ("prepass", 4.0)):
        settings = EStepSettings(box=N, angpix=4.0, coarse_radius=8, current_radius=N / 2, offset_range_px=2,
                                 offset_step_px=1, prepass_radius=radius)
        res = expectation(map_to_grid(phantom), OrientationGrid(3), x[:, iy, ix], ctf[:, iy, ix].astype(np.float32),
                          sigma2, k, shells, old, rounded, true, settings, None, None)
        out[name] = (euler_to_matrix(*np.array([r.angles for r in res]).T), np.array([r.n_significant for r in res]))
    err = {n: rotation_angle_deg(m, true) for n, (m, _) in out.items()}
    assert np.median(err["prepass"]) < 3.75 and np.median(err["exhaustive"]) < 3.75
    assert np.median(rotation_angle_deg(out["prepass"][0], out["exhaustive"][0])) < 1e-6
    assert (rotation_angle_deg(out["prepass"][0], out["exhaustive"][0]) < 3.75).mean() >= 0.9


def test_separable_phases_equal_the_direct_ones():
    """The E-step's shift phases (a product of per-kx and per-ky phases on integer pixels) equal
    exp(-2 pi i k.s / N) computed pixel by pixel (to float32 rounding), also for non-integer pixels."""
    from polishplugin.core.refine.estep import _phases
    from polishplugin.core.refine.fourier3d import pixel_list
    rng = np.random.default_rng(5)
    _, _, k = pixel_list(40, 20)
    shifts = rng.uniform(-4, 4, (3, 7, 2))
    for kk in (k, k + 0.25):
        arg = (shifts[..., None, 0] * kk[:, 0] + shifts[..., None, 1] * kk[:, 1]) * (-2 * np.pi / 40)
        got = _phases(shifts, kk, 40)
        assert got.dtype == np.complex64 and got.shape == (3, 7, len(k))
        np.testing.assert_allclose(got, np.exp(1j * arg), rtol=0, atol=2e-7)
