"""Helpers for the OpenCL kernel tests: parametrise over every device, skip cleanly without one."""

import pytest

from polishplugin.core.opencl import runtime


def device_params():
    """pytest params: one per OpenCL device (index), or a single skipped param when none exists."""
    try:
        devs = runtime.list_devices()
    except runtime.OpenCLUnavailable as exc:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no OpenCL: {exc}"))]
    return [pytest.param(d.index, id=f"dev{d.index}-{d.kind}") for d in devs]
