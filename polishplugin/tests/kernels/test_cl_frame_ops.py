"""Frame multiply-accumulate kernels: numpy reference vs hand-computed values, and OpenCL vs numpy.

Tolerance for OpenCL: float32 sums over F <= 24 frames, 1e-5 of the array maximum.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cl_devices import device_params  # noqa: E402

from polishplugin.core.kernels.frame_ops import frame_cross_sum, weighted_frame_sum  # noqa: E402

TOL = 1e-5


def test_numpy_reference_known_values():
    a = np.array([[[1 + 1j, 2], [3j, 1]]])      # P=1, F=2, K=2
    b = np.array([[2j, 1 - 1j]])
    w = np.array([[1.0, 2.0], [0.5, 3.0]])
    # k=0: (1*(1+1j) + 0.5*3j) * conj(2j) = (1 + 2.5j) * (-2j) = 5 - 2j
    # k=1: (2*2 + 3*1) * conj(1-1j) = 7 * (1+1j) = 7 + 7j
    np.testing.assert_allclose(frame_cross_sum(a, b, w), [[5 - 2j, 7 + 7j]])
    np.testing.assert_allclose(frame_cross_sum(a, b), [[(1 + 4j) * -2j, 3 * (1 + 1j)]])
    np.testing.assert_allclose(weighted_frame_sum(a, w), [[1 + 2.5j, 7]])
    x = np.arange(12.0).reshape(1, 3, 2, 2)     # trailing shape (2, 2) kept
    np.testing.assert_allclose(weighted_frame_sum(x, np.array([1.0, 0.0, 2.0])[:, None, None]),
                               [x[0, 0] + 2 * x[0, 2]])
    with pytest.raises(ValueError):
        frame_cross_sum(a, b[:, :1])


@pytest.mark.opencl
@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("shape", [(5, 7, (16, 9)), (3, 24, (17, 9)), (1, 1, (5,))])
def test_opencl_matches_numpy(device, shape, rng):
    p, f, tail = shape
    a = rng.normal(size=(p, f) + tail) + 1j * rng.normal(size=(p, f) + tail)
    b = rng.normal(size=(p,) + tail) + 1j * rng.normal(size=(p,) + tail)
    w = rng.uniform(0, 1, size=(f,) + tail)
    ref = frame_cross_sum(a, b, w)
    got = frame_cross_sum(a, b, w, backend="opencl", device=device)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < TOL * np.abs(ref).max()
    for x in (a, a.real):
        ref = weighted_frame_sum(x, w)
        got = weighted_frame_sum(x, w, backend="opencl", device=device)
        assert got.shape == ref.shape and np.iscomplexobj(got) == np.iscomplexobj(x)
        assert np.abs(got - ref).max() < TOL * np.abs(ref).max()
