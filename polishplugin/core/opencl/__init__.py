"""OpenCL runtime and kernels (pyopencl is imported lazily by the hosts).

``python -m polishplugin.core.opencl.runtime`` lists the devices and the one chosen by default.
``OpenCLUnavailable``, ``get_context``, ``list_devices``, ``opencl_available`` are re-exported lazily.
"""

_EXPORTS = ("OpenCLUnavailable", "get_context", "list_devices", "opencl_available")


def __getattr__(name):
    if name in _EXPORTS:
        from . import runtime
        return getattr(runtime, name)
    raise AttributeError(name)
