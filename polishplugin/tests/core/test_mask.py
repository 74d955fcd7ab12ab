"""Known-answer tests of polishplugin.core.mask (RELION autoMask / relion_mask_create)."""

import itertools

import numpy as np
import pytest

from polishplugin.core.filters import centred_radius, low_pass_map
from polishplugin.core.mask import auto_mask, binarise, extend_binary_mask, soft_edge


def _brute_force_extend(binary, extend):
    """RELION's cube search: a 0-voxel becomes 1 if a 1-voxel is at distance < extend (shrink: the
    opposite for negative extend)."""
    n = int(np.ceil(abs(extend)))
    out = binary.copy()
    target = binary if extend > 0 else ~binary
    for idx in itertools.product(*[range(s) for s in binary.shape]):
        if target[idx]:
            continue
        for off in itertools.product(range(-n, n + 1), repeat=3):
            j = tuple(i + o for i, o in zip(idx, off))
            if all(0 <= a < s for a, s in zip(j, binary.shape)) and target[j] \
                    and np.sqrt(sum(o * o for o in off)) < abs(extend):
                out[idx] = extend > 0
                break
    return out


@pytest.mark.parametrize("extend", [1.0, 2.5, -1.5])
def test_extend_matches_cube_search(rng, extend):
    binary = rng.random((9, 9, 9)) > 0.85 if extend > 0 else rng.random((9, 9, 9)) > 0.2
    np.testing.assert_array_equal(extend_binary_mask(binary, extend), _brute_force_extend(binary, extend))


def test_soft_edge_hand_values():
    binary = np.zeros((9, 9, 9), bool)
    binary[4, 4, 4] = True
    m = soft_edge(binary, 3.0)
    assert m[4, 4, 4] == 1.0
    assert m[4, 4, 5] == pytest.approx(0.5 + 0.5 * np.cos(np.pi / 3))      # d = 1
    assert m[4, 4, 6] == pytest.approx(0.5 + 0.5 * np.cos(2 * np.pi / 3))  # d = 2
    assert m[4, 5, 5] == pytest.approx(0.5 + 0.5 * np.cos(np.pi * np.sqrt(2) / 3))
    assert m[4, 4, 7] == 0.0                                               # d = 3 = width: outside
    assert m.min() >= 0 and m.max() <= 1


def test_auto_mask_sphere_with_lowpass_extend_and_edge():
    shape = (40, 40, 40)
    r = centred_radius(shape)
    volume = (r < 10).astype(float)
    mask = auto_mask(volume, 2.0, ini_threshold=0.5, lowpass_a=15.0, extend_px=2, width_soft_edge_px=4)
    assert mask.dtype == np.float32 and mask.min() >= 0 and mask.max() <= 1
    # the low-passed sphere stays ~radius 10 at threshold 0.5; +2 px extension; soft edge to +4 px more
    filtered = low_pass_map(volume, 15.0, 2.0)
    core = binarise(filtered, 0.5)
    expected_binary = extend_binary_mask(core, 2)
    np.testing.assert_array_equal(mask == 1.0, expected_binary)
    assert np.all(mask[r > 18] == 0)
    assert 11 <= r[mask == 1.0].max() <= 13
    inverted = auto_mask(volume, 2.0, 0.5, 15.0, 2, 4, invert=True)
    np.testing.assert_allclose(inverted, 1.0 - mask, atol=1e-7)


def test_relion_defaults_are_a_plain_threshold(rng):
    volume = rng.standard_normal((12, 12, 12)) * 0.02
    np.testing.assert_array_equal(auto_mask(volume, 1.0), (volume >= 0.01).astype(np.float32))


def test_empty_mask_stays_empty():
    m = auto_mask(np.zeros((8, 8, 8)), 1.0, ini_threshold=1.0, extend_px=3, width_soft_edge_px=3)
    assert not m.any()
