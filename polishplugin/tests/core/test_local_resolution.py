"""Local resolution (RELION --locres): geometry, filters, known answers, fast vs exact agreement."""

import numpy as np
import pytest

from polishplugin.core import local_resolution as lr
from polishplugin.core.filters import fsc_weight_rfft, low_pass_rfft, raised_cosine_sphere
from polishplugin.core.fourier import radius_grid, rfft
from polishplugin.core.fsc import randomize_phases_beyond
from polishplugin.testing.planted_maps import two_resolution_half_maps

ANGPIX = 1.244


# ------------------------------------------------------------------------------------------ geometry

def test_geometry_relion_rounding_and_defaults():
    g = lr.locres_geometry(256, ANGPIX, lr.LocresSettings())
    # step = ROUND(25/1.244) = 20, maskrad = ROUND(12.5/1.244) = 10, edge = ROUND(25/1.244) = 20
    assert (g.step, g.maskrad, g.edge) == (20, 10, 20)
    assert g.randomize_at == int(256 * ANGPIX / 25.0) == 12
    assert g.myrad == 128 - 10


def test_sampling_points_anchored_at_minus_half_box():
    g = lr.locres_geometry(64, ANGPIX, lr.LocresSettings(sampling_a=15.0))
    pts = lr.sampling_points(g)
    assert g.step == 12
    # every coordinate is -32 + 12 n, inside radius myrad = 32 - 6
    assert np.all((pts + 32) % 12 == 0)
    assert np.all(np.sqrt((pts.astype(float) ** 2).sum(1)) < g.myrad)
    axis = np.arange(-32, 32, 12)
    expected = [(k, i, j) for k in axis for i in axis for j in axis if np.sqrt(k * k + i * i + j * j) < 26]
    assert [tuple(p) for p in pts] == expected             # RELION loop order kk, ii, jj


def test_sampling_larger_than_box_is_an_error():
    with pytest.raises(ValueError, match="larger than the box"):
        lr.locres_geometry(32, ANGPIX, lr.LocresSettings(sampling_a=60.0))
    with pytest.raises(ValueError, match="half the box"):
        lr.locres_geometry(32, ANGPIX, lr.LocresSettings(sampling_a=40.0))   # mask radius 16 px = N/2
    with pytest.raises(ValueError, match="must be > 0"):
        lr.locres_geometry(32, ANGPIX, lr.LocresSettings(sampling_a=0.0))


def test_mask_centre_quirk_x_is_kk():
    # RELION raisedCosineMask(mask, r, r_p, kk, ii, jj) takes (x, y, z): z index = jj
    assert lr.mask_centre_index((1, 2, 3), 10) == (3 + 5, 2 + 5, 1 + 5)


def test_soft_sphere_matches_raised_cosine_sphere():
    a = lr._soft_sphere(24, 4, 10, (12, 9, 14))
    b = raised_cosine_sphere((24, 24, 24), 4, 6, centre=(12, 9, 14))
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert a[12, 9, 14] == 1.0 and a[12, 9, 14 - 10] == 0.0


def test_fast_window_size():
    assert lr.fast_window_size(30, 256) == 64
    assert lr.fast_window_size(18, 64) == 40
    assert lr.fast_window_size(40, 64) == 64          # capped at the box


# ------------------------------------------------------------------------------------------ filters

def test_local_filter_weights_equal_fsc_weighting_then_low_pass():
    box = 32
    shape = (box,) * 3
    rng = np.random.default_rng(0)
    f = rfft(rng.standard_normal(shape))
    curve = np.clip(1.0 - np.arange(box // 2 + 1) / 12.0, -0.2, 1.0)
    res = box * ANGPIX / 9.0
    expected = low_pass_rfft(fsc_weight_rfft(f, shape, curve), shape, res, ANGPIX, 2)
    weights = lr.local_filter_weights(radius_grid(shape), box, curve, res, ANGPIX, 2)
    np.testing.assert_allclose(f * weights, expected, atol=1e-12)


def test_resolution_from_fsc_known_answers():
    box = 64
    curve = np.ones(33)
    curve[21:] = 0.1                    # last shell >= 0.143 is 20
    assert lr.resolution_from_fsc(curve, box, ANGPIX, 50.0) == pytest.approx(box * ANGPIX / 20)
    curve[1:] = 0.0                     # only shell 0 passes -> 999 -> capped at minres
    assert lr.resolution_from_fsc(curve, box, ANGPIX, 50.0) == 50.0
    assert lr.resolution_from_fsc(np.ones(33), box, ANGPIX, 50.0) == pytest.approx(2 * ANGPIX)


def test_randomized_halves_continue_one_glibc_stream():
    rng = np.random.default_rng(5)
    h1, h2 = rng.standard_normal((2, 16, 16, 16))
    settings = lr.LocresSettings(sampling_a=6 * ANGPIX, randomize_at_a=16 * ANGPIX / 3.5)
    engine = lr.LocalResolution(h1, h2, ANGPIX, settings, mode="exact")
    assert engine.geom.randomize_at == 3
    p1, p2 = engine.half1p, engine.half2p
    # half 1 draws first from srand(0): identical to the single-map randomisation
    np.testing.assert_allclose(p1, randomize_phases_beyond(h1, 3, 0), atol=1e-10)
    # half 2 continues the stream: differs from a re-seeded randomisation, same amplitudes
    assert not np.allclose(p2, randomize_phases_beyond(h2, 3, 0), atol=1e-6)
    # (the x = 0 and Nyquist planes are re-symmetrised by the inverse transform, as in RELION)
    np.testing.assert_allclose(np.abs(rfft(p2))[..., 1:-1], np.abs(rfft(h2))[..., 1:-1], atol=1e-10)


def test_finalize_is_weighted_harmonic_mean():
    acc = lr.LocresAccumulators.zeros((2, 2, 2))
    acc.isumw[0, 0, 0] = 1.0 + 3.0
    acc.ilocres[0, 0, 0] = 1.0 / 4.0 + 3.0 / 8.0
    acc.ifil[0, 0, 0] = 1.0 * 2.0 + 3.0 * 6.0
    locres, filt = lr.finalize_maps(acc)
    assert locres[0, 0, 0] == pytest.approx(4.0 / (0.25 + 0.375))
    assert filt[0, 0, 0] == pytest.approx(5.0)
    assert locres[1, 1, 1] == 0 and filt[1, 1, 1] == 0


# ------------------------------------------------------------------------------------------ known answers

@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_identical_halves_give_nyquist_and_noise_gives_minres(mode):
    rng = np.random.default_rng(2)
    box = 32
    vol = rng.standard_normal((box,) * 3).astype(np.float32)
    settings = lr.LocresSettings(sampling_a=12.0, minres_a=50.0)
    locres, _, pts = lr.local_resolution(vol, vol.copy(), ANGPIX, settings, mode=mode)
    assert all(p.resolution_a == pytest.approx(2 * ANGPIX) for p in pts)
    np.testing.assert_allclose(locres[locres > 0], 2 * ANGPIX, rtol=1e-5)
    other = rng.standard_normal((box,) * 3).astype(np.float32)
    locres, _, pts = lr.local_resolution(vol, other, ANGPIX, settings, mode=mode)
    assert np.median([p.resolution_a for p in pts]) == 50.0


@pytest.fixture(scope="module")
def planted():
    half1, half2, region_a = two_resolution_half_maps(64, ANGPIX, (4.0, 8.0), noise=0.45, seed=1)
    settings = lr.LocresSettings(sampling_a=15.0, adhoc_bfac=-100.0)
    out = {}
    for mode in ("exact", "fast"):
        locres, filt, pts = lr.local_resolution(half1, half2, ANGPIX, settings, mode=mode)
        out[mode] = (locres, filt, pts)
    return out


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_planted_resolutions_recovered_within_10_percent(planted, mode):
    locres = planted[mode][0]
    x = np.arange(64)[None, None, :] - 31.5
    inside = locres > 0
    # region interiors (10 px from the boundary between the 4 Å and the 8 Å halves)
    med_a = np.median(locres[inside & (x < -10)])
    med_b = np.median(locres[inside & (x > 10)])
    assert abs(med_a - 4.0) < 0.4, med_a
    assert abs(med_b - 8.0) < 0.8, med_b


def test_fast_agrees_with_exact(planted):
    le, fe, pe = planted["exact"]
    lf, ff, pf = planted["fast"]
    inside = le > 0
    np.testing.assert_array_equal(inside, lf > 0)          # same points, same mask support
    assert np.median(np.abs(le - lf)[inside]) < 0.1
    same = np.mean([a.resolution_a == b.resolution_a for a, b in zip(pe, pf)])
    assert same > 0.6
    # locally filtered maps: same content up to the windowed filtering (few % RMS)
    rel = np.sqrt(np.mean((fe - ff)[inside] ** 2) / np.mean(fe[inside] ** 2))
    assert rel < 0.35


def test_engine_rejects_bad_shapes():
    a = np.zeros((16, 16, 16), np.float32)
    with pytest.raises(ValueError, match="different shapes"):
        lr.LocalResolution(a, np.zeros((16, 16, 18), np.float32), ANGPIX, lr.LocresSettings(sampling_a=8))
    with pytest.raises(ValueError, match="cubic"):
        lr.LocalResolution(np.zeros((16, 16, 18)), np.zeros((16, 16, 18)), ANGPIX, lr.LocresSettings(sampling_a=8))
    with pytest.raises(ValueError, match="mode"):
        lr.LocalResolution(a, a, ANGPIX, lr.LocresSettings(sampling_a=8), mode="quick")


def test_full_box_mask_equals_direct_evaluation():
    half = np.zeros((32, 32, 32), np.float32)
    engine = lr.LocalResolution(half, half, ANGPIX, lr.LocresSettings(sampling_a=12.0), mode="exact")
    for idx in (0, engine.points.shape[0] // 2, engine.points.shape[0] - 1):
        g = engine.geom
        direct = lr._soft_sphere(32, g.maskrad, g.maskrad + g.edge, lr.mask_centre_index(engine.points[idx], 32))
        np.testing.assert_array_equal(engine._full_box_mask(idx), direct)


def test_fast_mode_falls_back_to_exact_when_the_mask_spans_the_box():
    rng = np.random.default_rng(3)
    vol = rng.standard_normal((48, 48, 48)).astype(np.float32)
    other = rng.standard_normal((48, 48, 48)).astype(np.float32)
    # 25 A sampling at 1.244 A/px: mask radius 10 px + edge 20 px > half the 48 px box
    engine = lr.LocalResolution(vol, vol + other, ANGPIX, lr.LocresSettings(sampling_a=25.0), mode="fast")
    assert engine.mode == "exact"
    exact = lr.LocalResolution(vol, vol + other, ANGPIX, lr.LocresSettings(sampling_a=25.0), mode="exact")
    a = lr.finalize_maps(engine.run())[0]
    b = lr.finalize_maps(exact.run())[0]
    np.testing.assert_array_equal(a, b)
