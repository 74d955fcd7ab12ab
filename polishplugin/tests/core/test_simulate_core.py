"""Tests of the framework-free simulation numerics (core/simulate)."""

import numpy as np
import pytest

from polishplugin.core import fourier
from polishplugin.core.ctf import CtfParams, ctf_2d
from polishplugin.core.geometry import euler_to_matrix, symmetry_matrices
from polishplugin.core.simulate import damage, frames, maps, phantom, tracks


@pytest.fixture(scope="module")
def atoms():
    return phantom.pseudo_protein_atoms(np.random.default_rng(5), 30.0, "D2")


def test_pseudo_protein_is_compact_and_d2(atoms):
    xyz, w = atoms
    assert len(xyz) % 4 == 0 and len(xyz) > 400
    assert np.linalg.norm(xyz, axis=1).max() < 30.0 + 3.0
    m = phantom.gaussian_atoms_map(xyz, w, 32, 2.5, 1.0)
    for r in symmetry_matrices("D2"):
        m2 = phantom.gaussian_atoms_map(xyz @ r.T, w, 32, 2.5, 1.0)
        assert np.allclose(m, m2, atol=1e-4 * np.abs(m).max())
    # total density = sum of weights (DC of the analytic transform)
    assert m.sum() == pytest.approx(w.sum(), rel=1e-5)


def test_analytic_projection_is_the_sum_along_z_of_the_map(atoms):
    xyz, w = atoms
    box, angpix = 32, 2.5
    m = phantom.gaussian_atoms_map(xyz, w, box, angpix, 1.2)
    p = phantom.project_atoms_rfft(xyz, w, np.eye(3)[None], box, angpix, 1.2)[0]
    # the band-limited map's z-sum equals the central slice kz=0 (all kx, ky inside the cube)
    assert np.allclose(fourier.irfft(p, (box, box)), m.astype(np.float64).sum(axis=0),
                       atol=1e-3 * np.abs(p).max() * box ** 2)


def test_analytic_projection_matches_rotated_atoms(atoms):
    xyz, w = atoms
    a = euler_to_matrix(40.0, 70.0, -20.0)
    p_rot = phantom.project_atoms_rfft(xyz, w, a[None], 32, 2.5, 1.0)
    p_atoms = phantom.project_atoms_rfft(xyz @ a.T, w, np.eye(3)[None], 32, 2.5, 1.0)
    assert np.allclose(p_rot, p_atoms)


def test_projection_agrees_with_fourier_projector(atoms):
    from polishplugin.core.projector import FourierProjector
    xyz, w = atoms
    box, angpix = 32, 2.5
    m = phantom.gaussian_atoms_map(xyz, w, box, angpix, 1.2)
    rots = euler_to_matrix(*phantom.random_rotations(np.random.default_rng(2), 4).T)
    exact = phantom.project_atoms_rfft(xyz, w, rots, box, angpix, 1.2)
    interp = FourierProjector(m, pad=2).project(rots)
    for e, i in zip(exact, interp):
        corr = abs(np.vdot(e, i)) / np.linalg.norm(e) / np.linalg.norm(i)
        assert corr > 0.99


def test_velocity_statistics_follow_the_prior():
    rng = np.random.default_rng(0)
    pos = tracks.random_positions(rng, 10, 600, 600, 30, 40)
    sv, sd, sa = tracks.normalized_sigmas(0.4, 1155.0, -1.0, 2.0, 2.5)
    assert (sv, sd, sa) == pytest.approx((0.32, 462.0, -1.0))
    v = np.array([np.diff(tracks.sample_local_tracks(rng, pos, 8, sv, sd, sa), axis=1) for _ in range(300)])
    assert v.std() == pytest.approx(sv, rel=0.05)
    # velocity covariance between particles i, j follows exp(-d/sig_div)
    cov = tracks.velocity_covariance(pos, sv, sd)
    emp = np.einsum("rpfx,rqfx->pq", v, v) / (v.shape[0] * v.shape[2] * 2)
    assert np.abs(emp - cov).max() < 0.15 * sv ** 2
    # the acceleration term makes the motion smoother (smaller velocity changes)
    va = np.array([np.diff(tracks.sample_local_tracks(rng, pos, 8, sv, sd, 0.1), axis=1) for _ in range(100)])
    assert np.abs(np.diff(va, axis=1)).mean() < 0.7 * np.abs(np.diff(v, axis=1)).mean()


def test_tracks_zero_mean_and_drift_start():
    rng = np.random.default_rng(1)
    t = tracks.sample_local_tracks(rng, np.array([[10.0, 10.0], [100.0, 50.0]]), 6, 0.5, 300.0, 2.0)
    assert t.shape == (2, 6, 2) and np.allclose(t.mean(axis=1), 0)
    g = tracks.global_drift(rng, 12, 5.0)
    assert np.allclose(g[0], 0) and np.sum(np.linalg.norm(np.diff(g, axis=0), axis=1)) == pytest.approx(5.0)


def test_random_positions_respect_margin_and_distance():
    pos = tracks.random_positions(np.random.default_rng(3), 15, 300, 200, 20, 30)
    assert pos.min() >= 20 and pos[:, 0].max() <= 279 and pos[:, 1].max() <= 179
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(15) * 1e9
    assert d.min() >= 30
    with pytest.raises(ValueError, match="cannot place"):
        tracks.random_positions(np.random.default_rng(3), 100, 100, 100, 10, 40, max_tries=500)


def test_paste_then_extract_tracked_recovers_subpixel_particle(atoms):
    xyz, w = atoms
    box = 32
    p = phantom.project_atoms_rfft(xyz, w, np.eye(3)[None], box, 2.5, 1.5)
    centre = np.array([[70.3, 41.8]])
    img = frames.paste_particles(120, 100, p, centre)
    back = frames.extract_tracked(img, centre, box)[0]
    ref = fourier.irfft(p[0], (box, box))
    assert np.corrcoef(back.ravel(), ref.ravel())[0, 1] > 0.999
    # the wrong direction of the sub-pixel shift is measurably worse
    wrong = frames.extract_tracked(img, centre + 2 * (centre - np.floor(centre + 0.5)) * -1, box)[0]
    assert np.abs(wrong - ref).sum() > 5 * np.abs(back - ref).sum()


def test_align_shift_moves_content():
    img = np.zeros((40, 50))
    img[10, 20] = 1.0
    f = frames.align_shift_rfft(img, np.array([3.0, -2.0]))
    out = fourier.irfft(f, (40, 50))
    assert np.unravel_index(np.argmax(out), out.shape) == (8, 23)


def test_ctf_rect_matches_ctf_2d_and_bfactor():
    p = CtfParams(15000.0, 14000.0, 30.0, 200.0, 1.4, 0.1)
    assert np.allclose(frames.ctf_rect(p, 48, 48, 2.0), ctf_2d(p, 48, 2.0), atol=1e-7)
    b = frames.bfactor_rect(40, 60, 2.0, -100.0, 0.5)
    assert b[0, 0] == pytest.approx(0.5)
    assert b[0, 30] == pytest.approx(0.5 * np.exp(-100.0 * 0.25 ** 2 / 4))


def test_detector_counts_negated_and_poisson():
    rng = np.random.default_rng(0)
    clean = np.zeros((200, 200))
    clean[:100] = 1.0
    c = frames.detector_counts(rng, clean, 10.0, 0.2)
    assert c[100:].mean() == pytest.approx(10.0, rel=0.02) and c[:100].mean() == pytest.approx(8.0, rel=0.02)
    assert c[100:].var() == pytest.approx(10.0, rel=0.05)  # Poisson: variance = mean
    with pytest.raises(ValueError):
        frames.detector_counts(rng, clean, 10.0, 0.2, noise="bogus")


def test_normalize_background_and_extract_clamps():
    rng = np.random.default_rng(0)
    imgs = rng.normal(3.0, 2.0, size=(3, 32, 32))
    out = frames.normalize_background(imgs, 12.0)
    bg = frames.background_mask(32, 12.0)
    assert np.allclose(out[:, bg].mean(axis=1), 0, atol=1e-12) and np.allclose(out[:, bg].std(axis=1), 1)
    img = np.arange(100.0).reshape(10, 10)
    b = frames.extract_boxes(img, np.array([[0, 0]]), 4)[0]
    assert b[2, 2] == 0.0 and b[0, 0] == 0.0 and b[3, 3] == img[1, 1]


def test_planted_bfactors_and_mask_and_mtf():
    b, s = damage.planted_bfactors(5, 2.0, 4.0)
    assert np.allclose(b, [0, -8, -16, -24, -32]) and np.allclose(s, 1)
    vol = np.zeros((32, 32, 32))
    vol[12:20, 12:20, 12:20] = 1.0
    mask = maps.soft_mask_from_map(vol, 2.0)
    assert mask.min() >= 0 and mask.max() <= 1 and mask[16, 16, 16] == 1 and mask[0, 0, 0] == 0
    assert np.any((mask > 0.05) & (mask < 0.95))
    x, y = maps.smooth_mtf()
    assert x[0] == 0 and x[-1] == 0.5 and y[0] == 1 and np.all(np.diff(y) < 0)


def test_noisy_half_maps_hit_the_target_fsc(atoms):
    from polishplugin.core.fsc import fsc
    xyz, w = atoms
    box, angpix = 48, 2.0
    m = phantom.gaussian_atoms_map(xyz, w, box, angpix, 1.0)
    e = maps.expected_particle_map(m, angpix, 2.0, np.array([0.0, -50.0]), np.array([1.0, 1.0]))
    # DC scales by the amplitude; high frequencies are damped by the mean frame weight
    assert e.sum() == pytest.approx(2.0 * m.sum(), rel=1e-5)
    h1, h2 = maps.noisy_half_maps(np.random.default_rng(0), e, angpix, 8.0)
    curve = fsc(h1, h2)
    k143 = box * angpix / 8.0
    assert curve[int(k143) - 3] > 0.3 and curve[int(k143) + 3] < 0.1
    assert abs(curve[int(round(k143))] - 0.143) < 0.12


def test_mtf_rect():
    x, y = maps.smooth_mtf()
    m = frames.mtf_rect(40, 60, x, y)
    assert m.shape == (40, 31) and m[0, 0] == pytest.approx(1.0)
    assert m[0, 30] == pytest.approx(y[-1]) and m[20, 0] == pytest.approx(y[-1])


def test_separable_shift_equals_core_shift():
    rng = np.random.default_rng(4)
    f = fourier.rfft(rng.normal(size=(3, 30, 24)), axes=(-2, -1))
    s = rng.uniform(-5, 5, size=(3, 2))
    assert np.allclose(frames.shift_rfft_2d(f, s, (30, 24)), fourier.shift_rfft(f, s, (30, 24)))
