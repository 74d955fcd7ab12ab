"""OpenCL runtime: device listing/choice, build cache, clear errors."""

import pytest

from polishplugin.core.opencl import runtime


def test_available_is_bool():
    assert isinstance(runtime.opencl_available(), bool)


@pytest.mark.opencl
def test_device_selection_and_cache(monkeypatch):
    if not runtime.opencl_available():
        pytest.skip("no OpenCL platform")
    devs = runtime.list_devices()
    ctx, queue, info = runtime.get_context(0)
    assert info == devs[0]
    assert runtime.get_context(f"{devs[0].platform_index}:{devs[0].device_index}")[0] is ctx
    monkeypatch.setenv(runtime.ENV_DEVICE, "0")
    assert runtime.get_context()[0] is ctx
    src = "__kernel void k(__global float *x) { x[get_global_id(0)] *= 2.0f; }"
    assert runtime.build_program(ctx, src) is runtime.build_program(ctx, src)
    assert runtime.build_program(ctx, src, ("-DFOO=1",)) is not runtime.build_program(ctx, src)
    with pytest.raises(runtime.OpenCLUnavailable, match="out of range"):
        runtime.get_context(len(devs) + 5)
    with pytest.raises(runtime.OpenCLUnavailable, match="neither"):
        runtime.get_context("gpu please")
    with pytest.raises(RuntimeError, match="build failed"):
        runtime.build_program(ctx, "__kernel void broken( {")


def test_missing_platform_is_a_clear_error(monkeypatch):
    def boom():
        raise runtime.OpenCLUnavailable("no OpenCL platform found (test)")
    monkeypatch.setattr(runtime, "_all_devices", boom)
    assert runtime.opencl_available() is False
    with pytest.raises(runtime.OpenCLUnavailable, match="no OpenCL"):
        runtime.get_context()


def test_choose_backend_without_opencl(monkeypatch):
    assert runtime.choose_backend("cpu") == ("numpy", None)
    assert runtime.choose_backend(" NumPy ") == ("numpy", None)

    def boom():
        raise runtime.OpenCLUnavailable("no OpenCL platform found (test)")
    monkeypatch.setattr(runtime, "_all_devices", boom)
    assert runtime.choose_backend(None) == ("numpy", None)
    assert runtime.choose_backend("auto") == ("numpy", None)
    for named in ("opencl", "0"):
        with pytest.raises(runtime.OpenCLUnavailable, match="no OpenCL"):
            runtime.choose_backend(named)
    # core callers go through it: "auto" falls back to numpy, "opencl" says why it cannot
    import numpy as np
    from polishplugin.core.projector import FourierProjector
    proj = FourierProjector(np.ones((8, 8, 8)))
    np.testing.assert_array_equal(proj.project(np.eye(3), backend="auto"), proj.project(np.eye(3)))
    with pytest.raises(runtime.OpenCLUnavailable):
        proj.project(np.eye(3), backend="opencl")


@pytest.mark.opencl
def test_choose_backend_with_devices():
    if not runtime.opencl_available():
        pytest.skip("no OpenCL platform")
    assert runtime.choose_backend(None) == ("opencl", None)
    assert runtime.choose_backend("opencl") == ("opencl", None)
    assert runtime.choose_backend("0") == ("opencl", "0")
    with pytest.raises(runtime.OpenCLUnavailable, match="out of range"):
        runtime.choose_backend(str(len(runtime.list_devices()) + 5))
