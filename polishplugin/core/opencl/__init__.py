"""OpenCL runtime and kernels (pyopencl is imported lazily by the hosts).

``python -m polishplugin.core.opencl.runtime`` lists the devices and the one chosen by default.
"""

from .runtime import OpenCLUnavailable, get_context, list_devices, opencl_available  # noqa: F401
