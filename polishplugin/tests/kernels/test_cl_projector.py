"""OpenCL projection / back-projection kernels vs their numpy references, on every device.

Tolerances: the device works in float32, numpy in float64; trilinear sums of <= 8 terms per pixel
(projection) and float atomics (insertion, order-dependent rounding) agree to ~1e-6 relative, so we
assert 2e-5 of the array maximum.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cl_devices import device_params  # noqa: E402

from polishplugin.core.geometry import random_rotation_matrices  # noqa: E402
from polishplugin.core.projector import FourierBackprojector, FourierProjector  # noqa: E402

pytestmark = pytest.mark.opencl
TOL = 2e-5


def rotations(n, rng):
    return random_rotation_matrices(n, rng)


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("n,pad", [(16, 2), (17, 2), (12, 3)])
def test_project_matches_numpy(device, n, pad, rng):
    from polishplugin.core.opencl import projector_cl
    vol = rng.normal(size=(n, n, n))
    proj = FourierProjector(vol, pad=pad)
    rots = np.concatenate([np.eye(3)[None], rotations(40, rng)])
    ref = proj.project(rots)
    got = projector_cl.project(proj, rots, device=device)
    assert got.shape == ref.shape and got.dtype == np.complex64
    assert np.abs(got - ref).max() < TOL * np.abs(ref).max()


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("n", [16, 17])
def test_insert_matches_numpy(device, n, rng):
    import polishplugin.core.opencl.runtime as runtime
    os.environ[runtime.ENV_DEVICE] = str(device)
    try:
        imgs = rng.normal(size=(30, n, n // 2 + 1)) + 1j * rng.normal(size=(30, n, n // 2 + 1))
        w = rng.uniform(0.1, 1.0, size=imgs.shape)
        rots = rotations(30, rng)
        a, b = FourierBackprojector(n), FourierBackprojector(n)
        a.insert(imgs, rots, w)
        b.insert(imgs[:10], rots[:10], w[:10], backend="opencl")
        b.insert(imgs[10:], rots[10:], w[10:], backend="opencl")  # accumulates on the device
        assert np.abs(b.data - a.data).max() < TOL * np.abs(a.data).max()
        assert np.abs(b.weight - a.weight).max() < TOL * a.weight.max()
        np.testing.assert_allclose(b.reconstruct(), a.reconstruct(), atol=1e-4 * np.abs(a.reconstruct()).max())
    finally:
        del os.environ[runtime.ENV_DEVICE]
