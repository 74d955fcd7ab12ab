"""Known-answer tests of polishplugin.core.postprocess and polishplugin.core.mtf (RELION relion_postprocess)."""

import numpy as np
import pytest

from polishplugin.core.filters import (apply_bfactor_rfft, bfactor_lut, centred_radius, fsc_weight_per_shell,
                                       fsc_weight_rfft, low_pass_lut, low_pass_rfft, raised_cosine_sphere)
from polishplugin.core.fourier import irfft, radius_grid, rfft, round_half_away
from polishplugin.core.fsc import (ShellGrid, fsc_grid, fsc_rfft, glibc_rand_words, glibc_uniform, irfft_fast,
                                   randomize_phases_rfft, resolution_shell, rfft_fast)
from polishplugin.core.mtf import (divide_by_mtf, mtf_factors, mtf_interpolate, mtf_lookup, mtf_lut,
                                   validate_mtf_table)
from polishplugin.testing.planted_maps import sphere_half_maps
from polishplugin.core.postprocess import (
    GUINIER_MISSING, FscCurves, choose_resolution, fit_straight_line, guinier_curve, mask_fractions,
    particle_fraction_fsc, postprocess_fscs, sharpen_rfft)

BOX = 64
ANGPIX = 1.0


def planted_half_maps(rng, bfactor=100.0, k_cross=24.5, box=BOX, angpix=ANGPIX, radius=20.0):
    return sphere_half_maps(rng, box, angpix, bfactor, k_cross, radius)


# ----------------------------------------------------------------------------------------- RNG

def _reference_glibc_uniform(seed, count, low, high):
    """Test oracle: glibc TYPE_3 ``srand``/``rand`` one value at a time (the textbook recurrence),
    then RELION's single-precision ``rnd_unif``."""
    r = [seed if seed != 0 else 1]
    for i in range(1, 31):
        hi, lo = divmod(r[i - 1], 127773)
        word = 16807 * lo - 2836 * hi
        r.append(word + 2147483647 if word < 0 else word)
    r += r[0:3]
    for i in range(34, 344 + count):
        r.append((r[i - 31] + r[i - 3]) & 0xFFFFFFFF)
    words = np.array(r[344:], np.int64) >> 1
    step = np.float32(np.float32(2147483647) / np.float32(high - low))
    return low + (words.astype(np.float32) / step).astype(np.float64)


@pytest.mark.parametrize("seed,count", [(0, 1), (0, 5000), (1, 12345), (987, 40000)])
def test_fast_glibc_stream_equals_reference(seed, count):
    np.testing.assert_array_equal(glibc_uniform(seed, count, 0.0, 2 * np.pi),
                                  _reference_glibc_uniform(seed, count, 0.0, 2 * np.pi))


def test_glibc_words_match_known_rand_values():
    # glibc: srand(1); rand() -> 1804289383, 846930886, 1681692777 (well-known first values)
    np.testing.assert_array_equal(glibc_rand_words(1, 3), [1804289383, 846930886, 1681692777])


def test_randomize_phases_keeps_amplitudes_and_continues_stream(rng):
    shape = (16,) * 3
    f = rfft(rng.standard_normal(shape))
    a, b = randomize_phases_rfft([f, f], ShellGrid(shape), 4, seed=0)
    sel = radius_grid(shape) ** 2 >= 16 - 1e-9
    np.testing.assert_allclose(np.abs(a), np.abs(f))
    np.testing.assert_array_equal(a[~sel], f[~sel])
    # half 2 continues the stream: different phases from half 1
    assert np.mean(np.isclose(np.angle(a[sel]), np.angle(b[sel]))) < 0.01
    phases = glibc_uniform(0, int(sel.sum()), 0.0, 2 * np.pi)
    np.testing.assert_allclose(np.angle(a[sel]) % (2 * np.pi), phases % (2 * np.pi), atol=1e-9)


# ----------------------------------------------------------------------------------------- MTF

MTF_X = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
MTF_Y = np.array([1.0, 0.9, 0.7, 0.65, 0.5, 0.45])


@pytest.mark.parametrize("k,expected", [
    ((0, 0, 0), 1.0),                                              # i0 = 0 -> value[0]
    ((0, 0, 1), 0.9 + (0.7 - 0.9) * (0.125 - 0.1) / 0.1),          # res .125, i0 = floor(1.5) = 1
    ((0, 0, 2), 0.65 + (0.5 - 0.65) * (0.25 - 0.3) / 0.1),         # res .25, i0 = 3: QUIRK extrapolation
    ((0, 1, 1), 0.7 + (0.65 - 0.7) * (np.sqrt(2) / 8 - 0.2) / 0.1),
    ((0, 0, 3), 0.5 + (0.45 - 0.5) * (0.375 - 0.4) / 0.1),         # i0 = 4
    ((0, 0, 4), 1.0),                                              # Nyquist: not divided
    ((4, 4, 4), 1.0),                                              # corner beyond Nyquist
])
def test_mtf_factors_hand_computed(k, expected):
    # box 8, angpix 1: res = |k|/8; res_per_elem = 0.5/6 (n rows, not n-1)
    factors = mtf_factors((8, 8, 8), 1.0, MTF_X, MTF_Y, 1.0)
    assert factors[k] == pytest.approx(expected, abs=1e-12)


def test_mtf_quirk_differs_from_plain_interpolation():
    assert mtf_lookup(0.25, MTF_X, MTF_Y, 1.0) == pytest.approx(0.725)
    assert mtf_interpolate(0.25, MTF_X, MTF_Y, 1.0) == pytest.approx(0.675)


def test_divide_by_mtf_uses_mtf_angpix(rng):
    shape = (8, 8, 8)
    f = rfft(rng.standard_normal(shape))
    out = divide_by_mtf(f, shape, 1.0, MTF_X, MTF_Y, 2.0)
    # mtf_angpix 2: table res = x/2 (range 0..0.25, res_per_elem 0.25/6); coefficient (0,0,1): res .125,
    # i0 = floor(3.0) = 3 -> line through (0.15, 0.65), (0.2, 0.5)
    expected = 0.65 + (0.5 - 0.65) * (0.125 - 0.15) / 0.05
    assert out[0, 0, 1] == pytest.approx(f[0, 0, 1] / expected)
    assert out[0, 0, 4] == f[0, 0, 4]
    assert np.shares_memory(out, f) is False


@pytest.mark.parametrize("x,y,match", [
    ([0.0], [1.0], "at least 2 rows"),
    ([0.0, 0.1, 0.2], [1.0, 0.0, 0.5], r"must be > 1e-10 \(row 2 is 0\)"),
    ([0.0, 0.2, 0.1], [1.0, 0.9, 0.8], r"must increase row by row \(row 3"),
    ([0.0, 0.2, 0.7], [1.0, 0.9, 0.8], r"must lie in \[0, 0.5\]"),
    ([], [], "no rows"),
    ([0.0, np.nan], [1.0, 0.9], "non-finite"),
    ([0.0, 0.1], [1.0], "abscissae"),
])
def test_mtf_table_validation(x, y, match):
    with pytest.raises(ValueError, match=match):
        validate_mtf_table(x, y)


# ----------------------------------------------------------------------------------------- Guinier / weighting

def test_guinier_curve_hand_computed():
    shape = (8, 8, 8)
    f = np.zeros((8, 8, 5), complex)
    f[0, 0, 0] = 2.0
    f[0, 0, 1] = 3.0          # shell 1 has 6 stored coefficients: (0,0,1),(0,+-1,0),(+-1,0,0)
    f[0, 1, 0] = 1.0j
    count1 = int(np.count_nonzero(round_half_away(radius_grid(shape)) == 1))
    g = guinier_curve(np.abs(f), ShellGrid(shape), 2.0, fit_minres_a=20.0, fit_maxres_a=5.0)
    assert g.y[0] == pytest.approx(np.log(2.0))
    assert g.y[1] == pytest.approx(np.log(4.0 / count1))
    assert g.y[2] == GUINIER_MISSING and g.w[2] == 0
    np.testing.assert_allclose(g.x, [0, 1 / 16 ** 2, 1 / 8 ** 2, 1 / (16 / 3) ** 2, 1 / 4 ** 2])
    # res 16 A (shell 1) inside [5, 20]; shell 0 (inf) outside
    assert g.w[0] == 0 and g.w[1] == 1


def test_fit_straight_line_exact_and_weights():
    x = np.linspace(0, 0.1, 11)
    y = 3.0 - 25.0 * x
    w = np.ones_like(x)
    y_bad = y.copy()
    y_bad[0] = 100.0
    w[0] = 0.0
    slope, intercept, corr = fit_straight_line(x, y_bad, w)
    assert slope == pytest.approx(-25.0) and intercept == pytest.approx(3.0) and corr == pytest.approx(1.0)
    with pytest.raises(ValueError, match="fewer than 2"):
        fit_straight_line(x, y, np.eye(1, 11)[0])


def test_fsc_weighting_and_bfactor_hand_computed():
    shape = (8, 8, 8)
    f = np.ones((8, 8, 5), complex)
    fsc = np.array([1.0, 0.9, 0.5, 0.2, 0.00005])     # shell 4 < 1e-4 -> ires_max = 3
    out = sharpen_rfft(f, ShellGrid(shape), 1.0, fsc, adhoc_bfac_a2=-40.0)
    res2 = lambda k: (k / 8.0) ** 2                  # noqa: E731  (1/A^2, angpix 1)
    assert out.f[0, 0, 1] == pytest.approx(np.sqrt(1.8 / 1.9) * np.exp(10.0 * res2(1)))
    assert out.f[0, 0, 2] == pytest.approx(np.sqrt(1.0 / 1.5) * np.exp(10.0 * res2(2)))
    assert out.f[0, 0, 3] == pytest.approx(np.sqrt(0.4 / 1.2) * np.exp(10.0 * res2(3)))
    assert out.f[0, 0, 4] == 0
    assert out.bfactor_a2 == -40.0 and out.fit is None
    assert set(out.guinier) == {"original", "weighted", "sharpened"}


def test_particle_fraction_and_mask_fractions():
    assert particle_fraction_fsc(np.array([0.5]), 2.0)[0] == pytest.approx(2 * 0.5 / (1 + 0.5))
    mask = np.zeros((10, 10, 10))
    mask[:5] = 1.0
    fr = mask_fractions(mask, 2.0, molweight_kda=100.0)
    assert fr["frac_solvent_mask"] == pytest.approx(0.476 / 0.5)
    assert fr["molweight_frommask"] == pytest.approx(0.5 * 8000 * 0.81)
    assert fr["frac_molweight"] == pytest.approx(0.476 * 8000 * 0.81 / 1e5)


# ----------------------------------------------------------------------------------------- ground truth

def test_planted_resolution_and_bfactor(rng):
    _, h1, h2 = planted_half_maps(rng, bfactor=100.0, k_cross=24.5)
    grid = ShellGrid(h1.shape)
    f1, f2 = rfft(h1), rfft(h2)
    curves = postprocess_fscs(h1, h2, grid, ANGPIX)
    i_res, _ = choose_resolution(curves)
    assert abs(i_res - 24) <= 1                      # true crossing between shells 24 and 25
    # FSC weighting restores the signal amplitude, so the weighted Guinier slope is -B/4; fit from
    # 10 A to 3 A (just below the 2.6 A resolution)
    sharp = sharpen_rfft((f1 + f2) / 2, grid, ANGPIX, curves.corrected, auto_bfac=True, autob_highres_a=3.0)
    assert sharp.bfactor_a2 == pytest.approx(-100.0, rel=0.05)
    assert sharp.fit[2] > 0.95
    assert {"original", "weighted", "sharpened"} <= set(sharp.guinier)


def test_tight_mask_correction_removes_mask_induced_correlation(rng):
    """Signal over the whole box (fine detail + a strong broad blob) with no power beyond shell KC; a
    hard spherical mask cuts through it.  Beyond KC the true FSC is 0; the masked FSC is not (the mask
    edge spreads the blob's low-resolution power to all shells), the corrected one is."""
    kc = 24
    shape = (BOX,) * 3
    radius = radius_grid(shape)
    s = radius / BOX
    f_sig = rfft(rng.standard_normal(shape)) * np.exp(-40.0 / 4 * s * s)
    f_sig = f_sig + 30.0 * rfft(np.exp(-centred_radius(shape) ** 2 / (2 * 10.0 ** 2)))
    f_sig[round_half_away(radius) > kc] = 0
    signal = irfft(f_sig, shape)
    # noise: unmasked FSC = S/(S+N) = 0.8 near shell 14, ~0.39 at KC
    n_power = np.exp(-20.0 * 14 ** 2 / BOX ** 2) / 4.0 / signal.size
    sd = np.sqrt(n_power * signal.size)
    h1 = signal + sd * rng.standard_normal(shape)
    h2 = signal + sd * rng.standard_normal(shape)
    mask = (raised_cosine_sphere(shape, 16.0, 0.0) > 0.5).astype(float)
    curves = postprocess_fscs(h1, h2, ShellGrid(shape), ANGPIX, mask)
    assert 12 <= curves.randomize_at <= 16
    beyond = slice(kc + 2, kc + 9)
    assert np.mean(curves.masked[beyond]) > 0.5          # mask-induced correlation is there
    assert abs(np.mean(curves.corrected[beyond])) < 0.1   # and removed (noise of the estimate ~0.1)
    assert np.max(np.abs(curves.corrected[beyond])) < 0.2
    i_res, _ = choose_resolution(curves)
    assert abs(i_res - kc) <= 1


def test_soft_mask_random_fsc_near_zero(rng):
    _, h1, h2 = planted_half_maps(rng, bfactor=100.0, k_cross=22.5, radius=14.0)
    shape = h1.shape
    mask = raised_cosine_sphere(shape, 20.0, 8.0)       # contains the whole signal, soft edge
    curves = postprocess_fscs(h1, h2, ShellGrid(shape), ANGPIX, mask)
    start = curves.randomize_at + 2
    assert np.max(np.abs(curves.random_masked[start:])) < 0.1
    # noise is reduced by the mask: the masked truth crosses later than the unmasked FSC
    assert resolution_shell(curves.corrected) >= resolution_shell(curves.unmasked)


def test_fsc_never_below_threshold_raises(rng):
    shape = (16,) * 3
    h = rng.standard_normal(shape)
    grid = ShellGrid(shape)
    with pytest.raises(ValueError, match="never drops below 0.8"):
        postprocess_fscs(h, h.copy(), grid, 1.0, mask=np.ones(shape))
    curves = postprocess_fscs(h, h.copy(), grid, 1.0, mask=np.ones(shape), randomize_at_a=4.0)
    assert curves.randomize_at == 4


def test_choose_resolution_falls_back_to_unmasked():
    unmasked = np.array([1.0, 0.9, 0.8, 0.5, 0.2, 0.0])
    corrected = np.array([1.0, 0.9, 0.1, 0.0, 0.0, 0.0])
    curves = FscCurves(unmasked=unmasked, corrected=corrected.copy(), masked=corrected.copy(),
                       random_masked=np.zeros(6), randomize_at=1)
    i_res, warnings = choose_resolution(curves)
    assert i_res == 4 and len(warnings) == 2
    np.testing.assert_array_equal(curves.corrected, unmasked)
    curves = FscCurves(unmasked=unmasked, corrected=corrected.copy(), masked=corrected.copy(),
                       random_masked=np.zeros(6), randomize_at=1)
    assert choose_resolution(curves, force_mask=True)[0] == 1


# ----------------------------------------------------------------------------------------- fast twins

@pytest.mark.parametrize("box", [16, 17])
def test_fast_paths_equal_reference_functions(rng, box):
    """The LUT/scipy paths give the numbers of core.fourier/fsc/filters/mtf (per-coefficient versions)."""
    shape = (box,) * 3
    grid = ShellGrid(shape)
    x1, x2 = rng.standard_normal(shape), rng.standard_normal(shape)
    f1, f2 = rfft(x1), rfft(x2)
    np.testing.assert_allclose(rfft_fast(x1), f1, atol=1e-12)
    np.testing.assert_allclose(irfft_fast(f1, shape), x1, atol=1e-12)
    np.testing.assert_allclose(fsc_grid(f1, f2, grid), fsc_rfft(f1, f2), atol=1e-12)
    fsc = np.linspace(1.0, -0.1, grid.n)
    np.testing.assert_allclose(f1 * grid.gather(grid.shell_to_lut(fsc_weight_per_shell(fsc))),
                               fsc_weight_rfft(f1, shape, fsc), atol=1e-14)
    np.testing.assert_allclose(f1 * grid.gather(bfactor_lut(grid, 1.3, -80.0)),
                               apply_bfactor_rfft(f1, shape, 1.3, -80.0), rtol=1e-12)
    np.testing.assert_allclose(f1 * grid.gather(low_pass_lut(grid, 1.3, 4.0, 3.0)),
                               low_pass_rfft(f1, shape, 4.0, 1.3, 3.0), atol=1e-14)
    from polishplugin.core.mtf import mtf_factors
    np.testing.assert_allclose(grid.gather(mtf_lut(grid, 1.3, MTF_X, MTF_Y, 0.9)),
                               mtf_factors(shape, 1.3, MTF_X, MTF_Y, 0.9), rtol=1e-14)


def test_float32_maps_give_the_same_fsc(rng):
    _, h1, h2 = planted_half_maps(rng, box=32, k_cross=12.5, radius=10.0)
    grid = ShellGrid(h1.shape)
    mask = raised_cosine_sphere(h1.shape, 13.0, 3.0)
    c64 = postprocess_fscs(h1, h2, grid, ANGPIX, mask)
    c32 = postprocess_fscs(h1.astype(np.float32), h2.astype(np.float32), grid, ANGPIX, mask.astype(np.float32))
    assert c32.randomize_at == c64.randomize_at
    np.testing.assert_allclose(c32.corrected, c64.corrected, atol=1e-4)   # single-precision FFTs
