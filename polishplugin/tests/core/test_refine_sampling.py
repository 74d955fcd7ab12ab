"""HEALPix sampling, symmetry reduction, oversampling children and local searches (core/refine)."""

import numpy as np
import pytest

from polishplugin.core.geometry import euler_to_matrix, rotation_about, symmetry_matrices
from polishplugin.core.refine.sampling import (OrientationGrid, angular_step_deg, healpix_directions,
                                               local_orientation_indices, rotation_angle_deg, translation_children,
                                               translation_grid)


def _unit(dirs):
    r, t = np.deg2rad(dirs[:, 0]), np.deg2rad(dirs[:, 1])
    return np.stack([np.sin(t) * np.cos(r), np.sin(t) * np.sin(r), np.cos(t)], 1)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_healpix_count_equal_area_and_spacing(order):
    d = healpix_directions(order)
    assert len(d) == 12 * 4 ** order
    v = _unit(d)
    # equal-area pixel centres: the mean of all directions is ~0 and every pixel is unique
    assert np.abs(v.mean(0)).max() < 1e-12
    assert len(np.unique(np.round(v, 8), axis=0)) == len(v)
    g = v @ v.T
    np.fill_diagonal(g, -2)
    nn = np.rad2deg(np.arccos(np.clip(g.max(1), -1, 1)))
    expected = np.rad2deg(np.sqrt(4 * np.pi / len(v)))  # mean pixel size
    assert 0.6 * expected < nn.min() and nn.max() < 1.3 * expected


def test_healpix_order0_ring_values():
    """Order 0: 4 pixels at z = 2/3, 4 at z = 0, 4 at z = -2/3 (HEALPix definition)."""
    z = np.round(np.cos(np.deg2rad(healpix_directions(0)[:, 1])), 12)
    assert np.allclose(sorted(z), sorted([2 / 3] * 4 + [0.0] * 4 + [-2 / 3] * 4), atol=1e-12)


def test_psi_steps_match_relion():
    assert [angular_step_deg(o) for o in (2, 3, 4, 5)] == [15.0, 7.5, 3.75, 1.875]
    assert angular_step_deg(2, 1) == 7.5


def test_children_are_inside_parent_pixel():
    g = OrientationGrid(2)
    kids = g.children(np.arange(len(g)))
    parent = _unit(g.angles()[:, :2])
    child = _unit(kids[:, :, :2].reshape(-1, 2)).reshape(-1, 8, 3)
    ang = np.rad2deg(np.arccos(np.clip((child * parent[:, None]).sum(-1), -1, 1)))
    assert ang.max() < 0.6 * angular_step_deg(2)
    dpsi = kids[:, :, 2] - g.angles()[:, None, 2]
    assert np.allclose(np.sort(np.unique(np.round(dpsi, 6))), [-3.75, 3.75])


@pytest.mark.parametrize("sym", ["C1", "C4", "D2", "D3", "T", "O", "I"])
def test_asymmetric_unit_covers_sphere_once(sym):
    """Every direction of a finer grid has a symmetry mate within one pixel of a kept direction, and
    the kept set is about 1/|G| of the sphere."""
    ops = symmetry_matrices(sym)
    g = OrientationGrid(3, ops)
    kept = _unit(g.directions)
    assert abs(len(kept) - 768 / len(ops)) <= 0.15 * 768 / len(ops) + 2
    probe = _unit(healpix_directions(2))
    best = np.full(len(probe), -2.0)
    for r in ops:
        best = np.maximum(best, ((probe @ r.T) @ kept.T).max(1))
    assert np.rad2deg(np.arccos(np.clip(best, -1, 1))).max() < 1.2 * angular_step_deg(3)


def test_local_orientations_within_cutoff():
    g = OrientationGrid(4)
    prev = euler_to_matrix(30.0, 60.0, 90.0)
    idx = local_orientation_indices(g, prev, 10.0)
    ang = g.angles(idx)
    mats = euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2])
    d = rotation_angle_deg(mats, prev[None])
    assert d.max() <= 10.0 and 50 < len(idx) < 2000
    assert d.min() < angular_step_deg(4)


def test_rotation_angle():
    a = euler_to_matrix(10.0, 20.0, 30.0)
    b = a @ rotation_about((1, 2, 3), 7.0)
    assert rotation_angle_deg(a[None], b[None])[0] == pytest.approx(7.0, abs=1e-6)


def test_translation_grid_and_children():
    g = translation_grid(5, 1)
    assert len(g) == 81 and np.all((g ** 2).sum(1) <= 25 + 1e-9)
    assert len(translation_grid(5, 2)) == 21
    kids = translation_children(np.array([[0.0, 0.0]]), 2.0)[0]
    assert np.allclose(np.sort(np.abs(kids).ravel()), 0.5)
