"""Known-answer tests of the shared conventions (core.fourier, fsc, ctf, geometry, dose)."""

import ctypes
import ctypes.util
import itertools
import math

import numpy as np
import pytest

from polishplugin.core import ctf, dose, fourier, fsc, geometry


# ------------------------------------------------------------------------------------------ CTF
def _zero_frequencies(p, n_zeros):
    """Analytic zeros of -sin(gamma) along one axis (no astigmatism): gamma(u) = -n pi."""
    lam = ctf.electron_wavelength_a(p.voltage_kv)
    k1 = math.pi * lam
    k2 = math.pi / 2 * p.cs_mm * 1e7 * lam ** 3
    k3 = math.atan(p.amplitude_contrast / math.sqrt(1 - p.amplitude_contrast ** 2))
    out = []
    for n in range(1, n_zeros + 1):
        # k2 u^4 - k1 Df u^2 - k3 + n pi = 0, smaller root in u^2
        a, b, c = k2, -k1 * p.defocus_u_a, n * math.pi - k3
        u2 = (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a) if a > 0 else -c / b
        out.append(math.sqrt(u2))
    return out


def test_electron_wavelength_300kv():
    assert ctf.electron_wavelength_a(300.0) == pytest.approx(0.019687, abs=2e-6)


def test_ctf_zero_on_a_pixel_without_cs():
    box, angpix, k = 128, 1.0, 20
    lam = ctf.electron_wavelength_a(300.0)
    u = k / (box * angpix)
    for n in (1, 2, 3):
        df = n / (lam * u * u)  # gamma = -pi lambda Df u^2 = -n pi at pixel k
        p = ctf.CtfParams(df, df, cs_mm=0.0, amplitude_contrast=0.0)
        c = ctf.ctf_2d(p, box, angpix)
        assert abs(c[0, k]) <= 1e-6
        assert abs(c[k, 0]) <= 1e-6  # isotropic
        assert abs(c[0, k - 1]) > 1e-3 and abs(c[0, k + 1]) > 1e-3


@pytest.mark.parametrize("df", [8000.0, 15000.0])
def test_ctf_sign_changes_bracket_analytic_zeros(df):
    box, angpix = 256, 1.0
    p = ctf.CtfParams(df, df, cs_mm=2.7, amplitude_contrast=0.1)
    line = ctf.ctf_2d(p, box, angpix)[0]  # ky = 0, kx = 0..N/2
    changes = np.nonzero(np.sign(line[1:]) != np.sign(line[:-1]))[0]
    zeros = _zero_frequencies(p, 4)
    for z, i in zip(zeros, changes):
        px = z * box * angpix
        assert i <= px <= i + 1, (z, i)
    # CTF at DC is -sin(-K3) = Q0 ... sign convention: positive for positive amplitude contrast
    assert line[0] == pytest.approx(0.1, abs=1e-9)


def test_ctf_astigmatism_axes():
    box, angpix = 256, 1.0
    p = ctf.CtfParams(10000.0, 20000.0, defocus_angle_deg=0.0, cs_mm=0.0, amplitude_contrast=0.0)
    c = ctf.ctf_2d(p, box, angpix)
    zx = _zero_frequencies(ctf.CtfParams(10000.0, 10000.0, cs_mm=0.0, amplitude_contrast=0.0), 1)[0]
    zy = _zero_frequencies(ctf.CtfParams(20000.0, 20000.0, cs_mm=0.0, amplitude_contrast=0.0), 1)[0]
    ix = np.nonzero(np.sign(c[0, 1:]) != np.sign(c[0, :-1]))[0][0]
    col = c[:box // 2, 0]
    iy = np.nonzero(np.sign(col[1:]) != np.sign(col[:-1]))[0][0]
    assert ix <= zx * box <= ix + 1  # DefocusU along x for angle 0
    assert iy <= zy * box <= iy + 1


# ------------------------------------------------------------------------------------- symmetry
@pytest.mark.parametrize("name,order", [("C1", 1), ("C5", 5), ("D2", 4), ("D7", 14), ("T", 12),
                                        ("O", 24), ("I", 60), ("I1", 60), ("I3", 60), ("I4", 60)])
def test_symmetry_orders_and_closure(name, order):
    ops = geometry.symmetry_matrices(name)
    assert len(ops) == order == geometry.symmetry_order(name)
    np.testing.assert_allclose(ops[0], np.eye(3), atol=1e-12)
    for r in ops:
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(r) == pytest.approx(1.0)
    flat = ops.reshape(order, 9)
    for a, b in itertools.product(ops, ops):
        d = np.abs(flat - (a @ b).reshape(9)).max(axis=1)
        assert d.min() < 1e-6  # closed under products
    # distinct operators
    assert min(np.abs(flat[i] - flat[j]).max() for i in range(order) for j in range(i)) > 1e-3 if order > 1 else True


def test_d2_is_180_about_x_y_z():
    ops = geometry.symmetry_matrices("D2")
    want = [np.diag(d) for d in ([1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1])]
    for w in want:
        assert min(np.abs(o - w).max() for o in ops) < 1e-9


def test_bad_symmetry_name():
    with pytest.raises(geometry.SymmetryError):
        geometry.symmetry_matrices("X3")


# ---------------------------------------------------------------------------------------- Euler
def test_euler_hand_computed():
    np.testing.assert_allclose(geometry.euler_to_matrix(90.0, 0.0, 0.0),
                               [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(geometry.euler_to_matrix(0.0, 90.0, 0.0),
                               [[0, 0, -1], [0, 1, 0], [1, 0, 0]], atol=1e-12)
    # rot=30, tilt=60, psi=-45 from the RELION formula written out by hand
    ca, sa = math.cos(math.radians(30)), math.sin(math.radians(30))
    cb, sb = 0.5, math.sqrt(3) / 2
    cg, sg = math.sqrt(0.5), -math.sqrt(0.5)
    want = [[cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb],
            [-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb],
            [sb * ca, sb * sa, cb]]
    np.testing.assert_allclose(geometry.euler_to_matrix(30.0, 60.0, -45.0), want, atol=1e-12)


def test_euler_round_trip(rng):
    rot = rng.uniform(-180, 180, 200)
    tilt = rng.uniform(1, 179, 200)
    psi = rng.uniform(-180, 180, 200)
    m = geometry.euler_to_matrix(rot, tilt, psi)
    r2, t2, p2 = geometry.matrix_to_euler(m)
    np.testing.assert_allclose(t2, tilt, atol=1e-9)
    np.testing.assert_allclose(np.mod(r2 - rot + 180, 360) - 180, 0, atol=1e-9)
    np.testing.assert_allclose(np.mod(p2 - psi + 180, 360) - 180, 0, atol=1e-9)
    # degenerate tilt = 0: the matrix (not the split rot/psi) must round-trip
    m0 = geometry.euler_to_matrix(40.0, 0.0, 25.0)
    np.testing.assert_allclose(geometry.euler_to_matrix(*geometry.matrix_to_euler(m0)), m0, atol=1e-9)


# ---------------------------------------------------------------------------------- FSC / phases
def test_fsc_self_is_one_and_noise_is_zero(rng):
    n = 32
    a = rng.normal(size=(n, n, n))
    np.testing.assert_allclose(fsc.fsc(a, a), 1.0, atol=1e-12)
    b = rng.normal(size=(n, n, n))
    curve = fsc.fsc(a, b)
    counts = np.bincount(fourier.shell_index((n, n, n)).ravel(), minlength=n)[:n // 2 + 1]
    assert np.all(np.abs(curve[2:]) < 4 / np.sqrt(counts[2:]))
    assert len(curve) == n // 2 + 1
    np.testing.assert_allclose(fsc.fsc(a, -a)[1:], -1.0, atol=1e-12)


def test_phase_randomisation_keeps_amplitudes(rng):
    n = 24
    v = rng.normal(size=(n, n, n))
    shell = 5
    out = fsc.randomize_phases_beyond(v, shell, seed=7)
    f, g = fourier.rfft(v), fourier.rfft(out)
    r = fourier.radius_grid((n, n, n))
    inner = (slice(None), slice(None), slice(1, n // 2))  # x columns without a Hermitian mate
    np.testing.assert_allclose(np.abs(g)[inner], np.abs(f)[inner], rtol=1e-9, atol=1e-12)
    low = r < shell
    np.testing.assert_allclose(g[low][np.abs(f[low]) > 0][:50], f[low][np.abs(f[low]) > 0][:50], atol=1e-9)
    hi = (r >= shell)[inner]
    assert np.mean(np.abs(np.angle(g[inner][hi] / f[inner][hi])) > 1e-3) > 0.95
    curve = fsc.fsc(v, out)
    assert np.all(curve[:shell - 1] > 0.999) and np.all(np.abs(curve[shell + 2:]) < 0.3)


def test_glibc_uniform_equals_libc_rand():
    path = ctypes.util.find_library("c")
    if path is None:
        pytest.skip("libc not found")
    libc = ctypes.CDLL(path)
    for seed, low, high in [(0, 0.0, 2 * math.pi), (42, -1.0, 1.0), (1234, 0.0, 1.0)]:
        libc.srand(ctypes.c_uint(seed))
        rand_max = np.float32(2147483647)
        step = np.float32(rand_max / np.float32(high - low))
        want = [low + float(np.float32(libc.rand()) / step) for _ in range(500)]
        np.testing.assert_allclose(fsc.glibc_uniform(seed, 500, low, high), want, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------- Fourier
def test_shift_moves_delta_by_integer():
    n = 16
    img = np.zeros((n, n))
    img[5, 3] = 1.0  # y=5, x=3
    out = fourier.irfft(fourier.shift_rfft(fourier.rfft(img), (2, -1), (n, n)), (n, n))
    want = np.zeros((n, n))
    want[4, 5] = 1.0
    np.testing.assert_allclose(out, want, atol=1e-12)
    vol = np.zeros((8, 9, 10))
    vol[1, 2, 3] = 1.0  # z, y, x
    out = fourier.irfft(fourier.shift_rfft(fourier.rfft(vol), (1, 2, 3), vol.shape), vol.shape)
    assert np.unravel_index(np.argmax(out), out.shape) == (4, 4, 4)


def test_rfft_normalisation():
    x = np.ones((6, 6))
    f = fourier.rfft(x)
    assert f[0, 0] == pytest.approx(1.0)  # forward divided by the number of pixels
    np.testing.assert_allclose(fourier.irfft(f, x.shape), x)


def test_shell_convention_round_and_positive_nyquist():
    assert list(fourier.round_half_away(np.array([-2.5, -0.5, 0.5, 1.5, 2.4]))) == [-3, -1, 1, 2, 2]
    n = 8
    assert fourier.fftfreq_signed(n)[n // 2] == n // 2  # Nyquist positive
    assert list(fourier.fftfreq_signed(n)) == [0, 1, 2, 3, 4, -3, -2, -1]
    shells = fourier.shell_index((n, n))
    assert shells[n // 2, 0] == 4           # (ky=+4, kx=0)
    assert shells[2, 2] == 3                # |(2,2)| = 2.83 -> 3 (ROUND, not floor)
    assert shells[1, 1] == 1                # 1.41 -> 1
    assert shells[7, 1] == 1                # ky=-1
    assert fourier.n_shells(n) == 5 and fourier.n_shells(9) == 5
    res = fourier.shell_resolution_a(n, 2.0)
    assert res[0] == 999.0 and res[4] == pytest.approx(4.0)


# ------------------------------------------------------------------------------------------- dose
def test_dose_weights_hand_computed():
    box, angpix = 64, 1.0
    w = dose.dose_weights(3, box, angpix, dose_per_frame=1.0)
    assert w.shape == (3, box, box // 2 + 1)
    np.testing.assert_allclose(w[0], 1.0)  # frame 0 carries no dose
    # frame 2 (2 e/A^2) at kx = 16: rho = 1/(2*32*1), f = 0.25/A, tau = 3.40 f^-1.06 - 0.54
    tau = 3.40 * 0.25 ** -1.06 - 0.54
    assert w[2, 0, 16] == pytest.approx(math.exp(-2.0 / tau), rel=1e-12)
    assert w[2, 0, 16] == pytest.approx(0.868964, abs=2e-6)
    assert w[2, 0, 0] == 1.0
    assert np.all(np.diff(w[:, 0, 16]) < 0)  # decreasing with dose
