"""Fourier projector / back-projector: known answers (delta, real-space sums, round trip, symmetry)."""

import numpy as np
import pytest

from polishplugin.core import fsc, geometry
from polishplugin.core.projector import (FourierBackprojector, FourierProjector, gridding_correction,
                                         project_real_space,
                                         reconstruct_from_images, soft_mask_outside_map)


def random_rotations(n, rng):
    return geometry.random_rotation_matrices(n, rng)


def blobs(n, rng, count=30, spread=None, sigma=(0.6, 1.0)):
    """Random Gaussian blobs: centres (count, 3) in (x, y, z) voxels from the centre, and sigmas."""
    spread = n / 4.5 if spread is None else spread
    return rng.uniform(-spread, spread, (count, 3)), rng.uniform(*sigma, count)


def blob_map(n, rng, count=30, spread=None, sigma=(0.6, 1.0), params=None):
    """Sum of Gaussians inside a sphere of radius ~n/4 (small sigmas: power up to Nyquist)."""
    centres, sigmas = blobs(n, rng, count, spread, sigma) if params is None else params
    ax = np.arange(n) - n // 2
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    vol = np.zeros((n, n, n))
    for c, s in zip(centres, sigmas):
        vol += np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * s * s))
    return vol


def analytic_projection(n, params, rot):
    """Line integral along z of the blob map rotated by ``rot``: blob centres move to ``rot @ c``."""
    centres, sigmas = params
    ax = np.arange(n) - n // 2
    y, x = np.meshgrid(ax, ax, indexing="ij")
    out = np.zeros((n, n))
    for c, s in zip(centres, sigmas):
        cr = rot @ c
        out += np.sqrt(2 * np.pi) * s * np.exp(-((x - cr[0]) ** 2 + (y - cr[1]) ** 2) / (2 * s * s))
    return out


@pytest.mark.parametrize("n", [16, 17])
def test_delta_projects_to_delta(n, rng):
    from polishplugin.core import fourier
    vol = np.zeros((n, n, n))
    vol[n // 2, n // 2, n // 2] = 1.0
    rots = random_rotations(6, rng)
    proj = FourierProjector(vol).project_real(rots)
    # known answer: a 2D delta at pixel N//2, band-limited to the disc |k| <= N/2
    disc = (fourier.radius_grid((n, n)) <= n / 2).astype(float) / n ** 2
    target = fourier.irfft(fourier.shift_rfft(disc, (n // 2, n // 2), (n, n)), (n, n))
    for p in proj:
        np.testing.assert_allclose(p, target, atol=2e-5)
        assert np.unravel_index(np.argmax(p), p.shape) == (n // 2, n // 2)
    np.testing.assert_allclose(proj.sum(axis=(1, 2)), 1.0, rtol=1e-5)


@pytest.mark.parametrize("n", [24, 25])
def test_identity_projection_is_sum_along_z(n, rng):
    vol = blob_map(n, rng, count=8, sigma=(1.5, 2.5))
    ref = vol.sum(axis=0)
    # without gridding pre-correction, identity samples lie on the padded grid: exact
    proj = FourierProjector(vol, gridding=False, r_max_px=n).project_real(np.eye(3)[None])[0]
    np.testing.assert_allclose(proj, ref, atol=1e-4 * ref.max())
    # with it (default) the identity projection is exactly that of the pre-corrected map
    corrected = (vol / gridding_correction(n, 2 * n)).sum(axis=0)
    proj = FourierProjector(vol).project_real(np.eye(3)[None])[0]
    np.testing.assert_allclose(proj, corrected, atol=1e-3 * ref.max())


@pytest.mark.parametrize("n", [24, 25])
def test_rotated_projection_matches_analytic_line_integral(n, rng):
    params = blobs(n, rng, count=8, spread=3.0, sigma=(1.2, 2.0))  # tails stay inside the box
    vol = blob_map(n, rng, params=params)
    rots = np.concatenate([random_rotations(3, rng),
                           np.reshape(geometry.euler_to_matrix(30.0, 60.0, -45.0), (1, 3, 3))])
    proj = FourierProjector(vol).project_real(rots)
    for p, a in zip(proj, rots):
        ref = analytic_projection(n, params, a)
        assert np.abs(p - ref).max() < 0.02 * ref.max()
        # A^T instead of A (the other convention) must be clearly wrong
        assert np.abs(p - analytic_projection(n, params, a.T)).max() > 0.2 * ref.max()
    # a finer padding converges to the analytic answer
    fine = FourierProjector(vol, pad=4).project_real(rots[1:2])[0]
    ref = analytic_projection(n, params, rots[1])
    assert np.abs(fine - ref).max() < 0.5 * np.abs(proj[1] - ref).max()
    # the numpy real-space reference (trilinear, so a bit blurred) agrees to a few percent
    ref = project_real_space(vol, rots[:1])[0]
    assert np.abs(proj[0] - ref).max() < 0.06 * ref.max()


def test_project_backproject_round_trip(rng):
    n = 32
    vol = blob_map(n, rng)
    rots = random_rotations(800, rng)
    images = FourierProjector(vol).project_real(rots)
    rec = reconstruct_from_images(images, rots)
    curve = fsc.fsc(rec, vol)
    last = int(np.floor(0.9 * n / 2))
    assert curve[1:last + 1].min() > 0.99, curve
    assert np.abs(rec - vol).max() < 0.15 * vol.max()


def test_ctf_and_shift_round_trip(rng):
    from polishplugin.core import fourier
    n = 24
    vol = blob_map(n, rng, count=20)
    rots = random_rotations(500, rng)
    f = FourierProjector(vol).project(rots)
    # a CTF-like modulation and shifted images; reconstruct_from_images must undo both
    k = fourier.radius_grid((n, n))
    ctfs = np.stack([np.cos(0.02 * (i % 7 + 3) * k ** 2) * 0.8 + 0.1 for i in range(len(rots))])
    shifts = rng.uniform(-3, 3, size=(len(rots), 2))
    images = fourier.irfft(fourier.shift_rfft(f * ctfs, -shifts, (n, n)), (n, n), axes=(-2, -1))
    rec = reconstruct_from_images(images, rots, ctfs=ctfs, shifts_px=shifts, wiener_constant=1e-3)
    curve = fsc.fsc(rec, vol)
    assert curve[1:int(0.8 * n / 2)].min() > 0.98, curve


def test_symmetrised_reconstruction_is_d2_symmetric(rng):
    n = 24
    vol = blob_map(n, rng, count=12)  # not symmetric
    rots = random_rotations(300, rng)
    images = FourierProjector(vol).project_real(rots)
    rec = reconstruct_from_images(images, rots, symmetry="D2")
    ops = geometry.symmetry_matrices("D2")
    assert len(ops) == 4
    # the D2 operators are 180-degree turns about x, y, z: exact voxel permutations (centre N//2, even N)
    for axis in range(3):
        flipped = rec
        for other in range(3):
            if other != axis:
                flipped = np.roll(np.flip(flipped, axis=other), 1, axis=other)
        # (index 0 planes have no mate inside the box: compare the rest)
        assert np.abs(flipped - rec)[1:, 1:, 1:].max() < 1e-4 * np.abs(rec).max()
    # and it equals the reconstruction of the symmetrised object
    sym_vol = np.zeros_like(vol)
    for axis in range(3):
        v = vol
        for other in range(3):
            if other != axis:
                v = np.roll(np.flip(v, axis=other), 1, axis=other)
        sym_vol += v
    sym_vol += vol
    assert fsc.fsc(rec, sym_vol)[1:int(0.8 * n / 2)].min() > 0.98


def test_backprojector_add_equals_single_accumulator(rng):
    n = 16
    vol = blob_map(n, rng, count=10)
    rots = random_rotations(60, rng)
    f = FourierProjector(vol).project(rots)
    one = FourierBackprojector(n)
    one.insert(f, rots)
    a, b = FourierBackprojector(n), FourierBackprojector(n)
    a.insert(f[:25], rots[:25])
    b.insert(f[25:], rots[25:])
    a.add(b)
    np.testing.assert_allclose(a.data, one.data, atol=1e-12)
    np.testing.assert_allclose(a.weight, one.weight, atol=1e-12)
    np.testing.assert_allclose(a.reconstruct(), one.reconstruct(), atol=1e-6)


def test_soft_mask_outside_map_replaces_corners_by_mean():
    n = 20
    v = np.ones((n, n, n))
    v[0, 0, 0] = 9.0
    out = soft_mask_outside_map(v, radius=n / 2, width=3)
    assert out[n // 2, n // 2, n // 2] == 1.0
    assert out[0, 0, 0] != 9.0 and abs(out[0, 0, 0] - out[0, 0, 1]) < 1e-12


def test_bad_inputs():
    with pytest.raises(ValueError):
        FourierProjector(np.zeros((4, 4, 5)))
    v = np.zeros((8, 8, 8))
    v[1, 1, 1] = np.nan
    with pytest.raises(ValueError):
        FourierProjector(v)
    bp = FourierBackprojector(8)
    with pytest.raises(ValueError):
        bp.insert(np.zeros((2, 8, 5), complex), np.tile(np.eye(3), (3, 1, 1)))
    with pytest.raises(ValueError, match="backend"):
        FourierProjector(np.zeros((8, 8, 8))).project(np.eye(3), backend="cuda")
    with pytest.raises(ValueError, match="rotations"):
        FourierProjector(np.zeros((8, 8, 8))).project(np.eye(4))


@pytest.mark.parametrize("n", [10, 11])
def test_fast_paths_equal_generic_trilinear_reference(n, rng):
    """project/insert (cached table, batched bincounts) == sample/spread_trilinear_halfgrid (one-off calls)."""
    from polishplugin.core import fourier
    from polishplugin.core.projector import (_image_centre_phase, _slice_coords, sample_trilinear_halfgrid,
                                             spread_trilinear_halfgrid)
    vol = rng.normal(size=(n, n, n))
    rots = random_rotations(7, rng)
    proj = FourierProjector(vol)
    coords, k2d = _slice_coords(rots, n, 2)
    ref = sample_trilinear_halfgrid(proj.fourier, coords) * _image_centre_phase(n)
    ref[:, k2d > n / 2] = 0
    np.testing.assert_allclose(proj.project(rots), ref, atol=1e-5 * np.abs(ref).max())
    imgs = fourier.rfft(rng.normal(size=(7, n, n)), axes=(-2, -1))
    w = rng.uniform(size=imgs.shape)
    bp = FourierBackprojector(n)
    bp.insert(imgs, rots, w)
    d = np.zeros_like(bp.data)
    wt = np.zeros_like(bp.weight)
    keep = k2d <= n / 2
    vals = imgs * np.conj(_image_centre_phase(n))
    spread_trilinear_halfgrid(d, wt, coords[:, keep], vals[:, keep], w[:, keep])
    np.testing.assert_allclose(bp.data, d, atol=1e-12)
    np.testing.assert_allclose(bp.weight, wt, atol=1e-12)


# ------------------------------------------------------------ auto-refine's pixel-list front end
def test_refine_pixel_projection_samples_the_same_grid(rng):
    """fourier3d.project_pixels (refine) and FourierProjector.project (polishing) read one grid."""
    from polishplugin.core.projector import _image_centre_phase
    from polishplugin.core.refine import fourier3d
    n = 16
    vol = rng.normal(size=(n, n, n))
    rots = random_rotations(6, rng)
    iy, ix, k = fourier3d.pixel_list(n, n / 2 - 1)  # refine clamps its coordinates at the very edge
    grid = fourier3d.map_to_grid(vol)
    assert grid.fourier.shape == (2 * n, 2 * n, n + 1)
    got = fourier3d.project_pixels(grid, rots, k)
    ref = (FourierProjector(vol, gridding=False).project(rots) / _image_centre_phase(n))[:, iy, ix]
    np.testing.assert_allclose(got, ref, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_array_equal(fourier3d.project_pixels(grid.fourier, rots, k), got)  # a bare array


@pytest.mark.parametrize("box,pad", [(8, 2), (9, 2), (7, 1)])
def test_refine_half_grid_fsc_counts_the_full_transform(box, pad, rng):
    """halfgrid_fsc on half grids == the FSC over the full transform's unpadded sub-grid."""
    from polishplugin.core import fourier
    from polishplugin.core.refine.fourier3d import halfgrid_fsc
    m = pad * box
    a1, a2 = rng.normal(size=(2, m, m, m))
    a2 += 0.5 * a1
    d1, d2 = np.fft.rfftn(a1), np.fft.rfftn(a2)
    w = np.ones(d1.shape)
    f1, f2 = np.fft.fftn(a1)[::pad, ::pad, ::pad], np.fft.fftn(a2)[::pad, ::pad, ::pad]
    k = fourier.fftfreq_signed(box)
    shells = fourier.round_half_away(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2))
    n = box // 2 + 1
    sel = shells < n
    num = np.bincount(shells[sel], (f1 * np.conj(f2)).real[sel], n)
    den = np.sqrt(np.bincount(shells[sel], (np.abs(f1) ** 2)[sel], n)
                  * np.bincount(shells[sel], (np.abs(f2) ** 2)[sel], n))
    ref = num / den
    ref[0] = 1.0
    np.testing.assert_allclose(halfgrid_fsc(d1, w, d2, w, pad, box), ref, atol=1e-12)


@pytest.mark.parametrize("m,reach", [(32, 9.5), (32, 16.0), (33, 16.4)])
def test_extended_box_sums_reach_the_half_grid_alike(m, reach, rng):
    """Spread sums on the extended box added to half-grid accumulators (the indexed add where no two box
    cells share a voxel, the fold where they do: reach near M/2) equal the folded sums, and the spread
    itself equals the one-off spread_trilinear_halfgrid."""
    from polishplugin.core.projector import extended_index, spread_trilinear_halfgrid
    ext = extended_index(m, reach)
    d = rng.normal(size=(5000, 3))
    # points up to M/2 - 1: every corner inside the stored half grid (none in the dummy slot)
    coords = d / np.linalg.norm(d, axis=1)[:, None] * rng.uniform(0, min(reach, m / 2 - 1.01), 5000)[:, None]
    vals = rng.normal(size=5000) + 1j * rng.normal(size=5000)
    w = rng.uniform(size=5000)
    shape = (m, m, m // 2 + 1)
    data, weight = np.zeros(shape, complex), np.zeros(shape)
    ext.add_into(data, weight, *ext.spread(coords, vals, w))
    ref_d, ref_w = np.zeros(shape, complex), np.zeros(shape)
    spread_trilinear_halfgrid(ref_d, ref_w, coords, vals, w)
    np.testing.assert_allclose(data, ref_d, rtol=0, atol=1e-12)
    np.testing.assert_allclose(weight, ref_w, rtol=0, atol=1e-12)
    assert weight.sum() == pytest.approx(w.sum())  # trilinear weights sum to 1; nothing fell in the dummy slot
