"""OpenCL E-step kernels (``estep_cl.OpenCLOps``) vs ``NumpyOps``, on every device.

Tolerances: both sides work in float32.  Projections: the device repeats numpy's float32 coordinates
(no fused multiply-adds), so only the trilinear sums differ in rounding: ~1e-7 of the maximum, asserted
at 2e-6.  Cross products: sums over 2 n_pix terms in another order and float32 phases: ~1e-6 of the
maximum, asserted at 1e-5.
"""

import os
import sys
import weakref

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cl_devices import device_params  # noqa: E402

from polishplugin.core.geometry import euler_to_matrix, random_rotation_matrices  # noqa: E402
from polishplugin.core.refine.estep import EStepSettings, NumpyOps, expectation  # noqa: E402
from polishplugin.core.refine.fourier3d import map_to_grid, pixel_list  # noqa: E402
from polishplugin.core.refine.sampling import OrientationGrid  # noqa: E402

pytestmark = pytest.mark.opencl
PROJ_TOL = 2e-6
CROSS_TOL = 1e-5
NP = NumpyOps()


def _ops(device, spread="auto"):
    from polishplugin.core.opencl.estep_cl import OpenCLOps
    return OpenCLOps(device, cross="device", min_samples=0, spread=spread)  # everything on the device


def _grid(box, pad, rng, dtype=np.complex64):
    return map_to_grid(rng.normal(size=(box, box, box)), pad).fourier.astype(dtype)


def _rel(got, ref):
    return float(np.abs(got - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("box,pad,radius,n_rot,dtype", [
    (16, 2, 8.0, 50, np.complex64),
    (17, 2, 8.5, 33, np.complex64),    # odd box, n_pix and n_rot not multiples of any tile
    (15, 1, 7.5, 20, np.complex128),   # pad 1 (coordinates reach the clipped edge), complex128 grid
    (24, 2, 5.3, 1, np.complex128),    # one rotation, few pixels
])
def test_project_matches_numpy(device, box, pad, radius, n_rot, dtype, rng):
    ops = _ops(device)
    grid = _grid(box, pad, rng, dtype)
    _, _, k = pixel_list(box, radius)
    rots = np.concatenate([np.eye(3)[None], random_rotation_matrices(n_rot - 1, rng)]) if n_rot > 1 \
        else random_rotation_matrices(1, rng)
    ref = NP.project(grid, rots, k, pad)
    got = ops.project(grid, rots, k, pad)
    assert got.shape == ref.shape == (n_rot, len(k)) and got.dtype == np.complex64
    assert _rel(got, ref) < PROJ_TOL
    # the second call uses the cached device grid and gives the same numbers
    np.testing.assert_array_equal(ops.project(grid, rots, k, pad), got)


@pytest.mark.parametrize("device", device_params())
def test_project_single_pixel_and_empty(device, rng):
    ops = _ops(device)
    grid = _grid(8, 2, rng)
    k = np.array([[3.0, -2.0]])
    rots = random_rotation_matrices(5, rng)
    assert _rel(ops.project(grid, rots, k, 2), NP.project(grid, rots, k, 2)) < PROJ_TOL
    assert ops.project(grid, rots[:0], k, 2).shape == (0, 1)


@pytest.mark.parametrize("device", device_params())
def test_grid_cache_is_never_stale(device, rng):
    """A different grid of the same shape (also one at the same address after the first is freed) and
    a grid edited in place give fresh projections."""
    ops = _ops(device)
    _, _, k = pixel_list(16, 8)
    rots = random_rotation_matrices(10, rng)
    g1, g2 = _grid(16, 2, rng), _grid(16, 2, rng)
    p1 = ops.project(g1, rots, k, 2)
    p2 = ops.project(g2, rots, k, 2)
    assert _rel(p2, NP.project(g2, rots, k, 2)) < PROJ_TOL and _rel(p2, p1) > 0.1
    assert _rel(ops.project(g1, rots, k, 2), p1) < PROJ_TOL  # back to the first one
    ref = weakref.ref(g1)
    del g1
    assert ref() is None and ops._grid is None  # the device copy goes with the host grid
    for _ in range(3):  # new arrays, often at the freed address
        g3 = _grid(16, 2, rng)
        assert _rel(ops.project(g3, rots, k, 2), NP.project(g3, rots, k, 2)) < PROJ_TOL
    g3 *= 3.0  # in place: same object, new values
    assert _rel(ops.project(g3, rots, k, 2), NP.project(g3, rots, k, 2)) < PROJ_TOL


def _cross_case(n_part, n_trans, n_rot, n_pix, rng, weight_rows=None):
    k = rng.integers(-12, 13, (n_pix, 2)).astype(np.float64)
    x = (rng.normal(size=(n_part, n_pix)) + 1j * rng.normal(size=(n_part, n_pix))).astype(np.complex64)
    w = rng.uniform(0.2, 2.0, (weight_rows or n_part, n_pix)).astype(np.float32)
    proj = (rng.normal(size=(n_rot, n_pix)) + 1j * rng.normal(size=(n_rot, n_pix))).astype(np.complex64)
    shifts = rng.uniform(-6, 6, (n_part, n_trans, 2))
    return x, w, proj, shifts, k


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("n_part,n_trans,n_rot,n_pix", [
    (32, 21, 150, 211),   # several tiles in each direction, odd sizes
    (3, 9, 65, 64),       # one past a tile of rotations
    (1, 1, 1, 1),
    (1, 4, 17, 333),      # a pass-2 product: one particle, four translations
    (2, 1, 1, 50),
])
def test_cross_matches_numpy(device, n_part, n_trans, n_rot, n_pix, rng):
    ops = _ops(device)
    x, w, proj, shifts, k = _cross_case(n_part, n_trans, n_rot, n_pix, rng)
    ref = NP.cross(x, w, proj, shifts, k, 48)
    got = ops.cross(x, w, proj, shifts, k, 48)
    assert got.shape == (n_part, n_trans, n_rot) and got.dtype == np.float32
    assert _rel(got, ref) < CROSS_TOL
    # the known answer, straight from the definition
    p, t, r = n_part - 1, n_trans - 1, n_rot - 1
    direct = (w[p] * x[p] * np.exp(-2j * np.pi * (k @ shifts[p, t]) / 48) * np.conj(proj[r])).real.sum()
    assert got[p, t, r] == pytest.approx(direct, abs=float(CROSS_TOL * np.abs(ref).max()))


@pytest.mark.parametrize("device", device_params())
def test_cross_broadcast_weight_and_host_products(device, rng):
    """One weight row for all particles (as ``squared_differences`` may pass); ``cross="host"`` and
    small projections go to numpy; ``cross="auto"`` uses the device only on GPUs, for enough rows."""
    from polishplugin.core.opencl.estep_cl import CROSS_MIN_ROWS, OpenCLOps
    x, w, proj, shifts, k = _cross_case(4, 5, 70, 90, rng, weight_rows=1)
    ref = NP.cross(x, w, proj, shifts, k, 32)
    assert _rel(_ops(device).cross(x, w, proj, shifts, k, 32), ref) < CROSS_TOL
    assert _ops(device).cross(x, w, proj[:0], shifts, k, 32).shape == (4, 5, 0)
    host = OpenCLOps(device, cross="host", min_samples=10 ** 9)
    np.testing.assert_array_equal(host.cross(x, w, proj, shifts, k, 32), ref)
    grid, rots = _grid(8, 2, rng), random_rotation_matrices(3, rng)
    np.testing.assert_array_equal(host.project(grid, rots, k, 2), NP.project(grid, rots, k, 2))
    auto = OpenCLOps(device)
    assert auto.cross_rows == (CROSS_MIN_ROWS if auto.info.kind in ("GPU", "ACCELERATOR") else None)
    with pytest.raises(ValueError, match="cross must be"):
        OpenCLOps(device, cross="gpu")
    with pytest.raises(ValueError, match="spread must be"):
        OpenCLOps(device, spread="gpu")


@pytest.mark.parametrize("device", device_params())
def test_expectation_same_poses_as_numpy(device):
    """The planted-particle global search of ``test_refine_estep`` with both backends: same max-posterior
    poses, pmax and the same number of significant samples."""
    from polishplugin.tests.core.test_refine_estep import N, _planted_particles
    from polishplugin.testing.refine_synthetic import blob_phantom
    phantom = blob_phantom(N, "C1", n_blobs=10, seed=3)
    _, iy, ix, k, shells, ctf, old, x, rounded, sigma2, true = _planted_particles(phantom)
    grid = map_to_grid(phantom)

    def run(ops, local):
        s = EStepSettings(box=N, angpix=4.0, coarse_radius=8, current_radius=N / 2, offset_range_px=2,
                          offset_step_px=1, local_sigma_deg=10.0 if local else None, ops=ops)
        return expectation(grid, OrientationGrid(2), x[:, iy, ix], ctf[:, iy, ix].astype(np.float32), sigma2, k,
                           shells, old, rounded, true, s, None, None)

    for local in (False, True):
        ref, got = run(NP, local), run(_ops(device), local)
        a_ref = euler_to_matrix(*np.array([r.angles for r in ref]).T)
        a_got = euler_to_matrix(*np.array([r.angles for r in got]).T)
        np.testing.assert_allclose(a_got, a_ref, atol=1e-6)
        np.testing.assert_allclose([r.origin_px for r in got], [r.origin_px for r in ref], atol=1e-9)
        np.testing.assert_allclose([r.pmax for r in got], [r.pmax for r in ref], rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose([r.min_diff2 for r in got], [r.min_diff2 for r in ref], rtol=1e-5)
        assert [r.n_significant for r in got] == [r.n_significant for r in ref]


SPREAD_TOL = 1e-5  # float32 sums on the device (adds in any order) against float64 sums on the host


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("kernel", ["atomic", "owned"])
@pytest.mark.parametrize("box,pad,radius,n_rot", [
    (16, 2, 8.0, 300),     # up to Nyquist: the reach is M/2
    (17, 2, 5.5, 41),      # odd box, a small reach
    (15, 1, 7.5, 20),      # pad 1: coordinates reach the clamped edge
])
def test_spread_matches_numpy(device, kernel, box, pad, radius, n_rot, rng):
    ops = _ops(device, kernel)
    _, _, k = pixel_list(box, radius)
    rots = np.concatenate([np.eye(3)[None], random_rotation_matrices(n_rot - 1, rng)])
    vals = (rng.normal(size=(n_rot, len(k))) + 1j * rng.normal(size=(n_rot, len(k)))).astype(np.complex64)
    wts = rng.uniform(0.1, 1.0, size=(n_rot, len(k))).astype(np.float32)
    m = pad * box
    ext, *ref = NP.spread(m, pad, rots, k, vals, wts)
    ext_cl, *got = ops.spread(m, pad, rots, k, vals, wts)
    assert ext_cl is ext
    for r, g in zip(ref, got):
        assert _rel(ext.fold(g), ext.fold(r)) < SPREAD_TOL
        assert ext.fold(r).shape == (m * m * (m // 2 + 1) + 1,)


@pytest.mark.parametrize("device", device_params())
def test_spread_known_voxels(device):
    """Pixel (3, 2) at pad 2 under the identity lands on voxel (x 6, y 4, z 0) alone; under a half turn about z
    on (-6, -4, 0), whose Hermitian mate (6, 4, 0) receives the conjugate; the dummy slot stays empty."""
    m = 16
    rots = np.stack([np.eye(3), np.diag([-1.0, -1.0, 1.0])])
    k = np.array([[3.0, 2.0]])
    vals = np.array([[1 + 2j], [10 + 20j]], np.complex64)
    wts = np.array([[0.5], [0.25]], np.float32)
    flat = (0 * m + 4) * (m // 2 + 1) + 6
    for ops in (NP, _ops(device, "atomic"), _ops(device, "owned")):
        ext, *box = ops.spread(m, 2, rots, k, vals, wts)
        re, im, w = (ext.fold(a) for a in box)
        assert np.count_nonzero(w) == 1 and w[flat] == pytest.approx(0.75)
        assert re[flat] == pytest.approx(11.0) and im[flat] == pytest.approx(2.0 - 20.0)
        assert re[-1] == im[-1] == w[-1] == 0.0


@pytest.mark.parametrize("device", device_params())
def test_backprojector_through_the_device(device, rng):
    """A Backprojector given the OpenCL ops accumulates the grids of the numpy one (also across several
    flushes and a change of pixel list)."""
    from polishplugin.core.refine import fourier3d
    box = 16
    bps = (fourier3d.Backprojector(box), fourier3d.Backprojector(box, ops=_ops(device)))
    for radius in (6.0, 6.0, 8.0):
        _, _, k = pixel_list(box, radius)
        rots = random_rotation_matrices(30, rng)
        vals = (rng.normal(size=(30, len(k))) + 1j * rng.normal(size=(30, len(k)))).astype(np.complex64)
        wts = rng.uniform(size=(30, len(k))).astype(np.float32)
        for bp in bps:
            bp.insert(vals, wts, rots, k)
    (d0, w0), (d1, w1) = (bp.finalised() for bp in bps)
    assert _rel(d1, d0) < SPREAD_TOL and _rel(w1, w0) < SPREAD_TOL


@pytest.mark.parametrize("device", device_params())
def test_slab_spreading_is_repeatable(device, rng):
    """The slab kernel gives the same sums, to the last bit, on every call (what keeps a continued refine
    identical to an uninterrupted one on a CPU device)."""
    _, _, k = pixel_list(16, 8.0)
    rots = random_rotation_matrices(200, rng)
    vals = (rng.normal(size=(200, len(k))) + 1j * rng.normal(size=(200, len(k)))).astype(np.complex64)
    wts = rng.uniform(size=(200, len(k))).astype(np.float32)
    ops = _ops(device, "owned")
    first = ops.spread(32, 2, rots, k, vals, wts)[1:]
    for _ in range(3):
        for a, b in zip(first, ops.spread(32, 2, rots, k, vals, wts)[1:]):
            assert np.array_equal(a, b)


def test_select_ops_policy(monkeypatch):
    from polishplugin.core.opencl import estep_cl, runtime
    assert isinstance(estep_cl.select_ops("cpu"), NumpyOps)
    assert isinstance(estep_cl.select_ops(" CPU "), NumpyOps)

    def boom(*_a, **_k):
        raise runtime.OpenCLUnavailable("no OpenCL platform found (test)")
    monkeypatch.setattr(runtime, "_all_devices", boom)
    assert isinstance(estep_cl.select_ops(None), NumpyOps)  # no OpenCL: numpy, no crash
    assert isinstance(estep_cl.select_ops(""), NumpyOps)
    with pytest.raises(runtime.OpenCLUnavailable, match="--device 3"):
        estep_cl.select_ops("3")


@pytest.mark.parametrize("device", device_params())
def test_select_ops_with_devices(device):
    from polishplugin.core.opencl import estep_cl, runtime
    info = runtime.list_devices()[device]
    ops = estep_cl.select_ops(str(device))
    assert ops.name == "opencl" and ops.info == info
    assert estep_cl.select_ops(f"{info.platform_index}:{info.device_index}").info == info
    default = estep_cl.select_ops(None)  # OpenCL whenever it works (see select_ops)
    assert default.name == "opencl" and default.info == runtime.get_context()[2]
    assert estep_cl.select_ops("").name == "opencl"
    with pytest.raises(runtime.OpenCLUnavailable, match="does not exist"):
        estep_cl.select_ops("97:0")
    with pytest.raises(runtime.OpenCLUnavailable, match="out of range"):
        estep_cl.select_ops(str(len(runtime.list_devices()) + 3))
