"""OpenCL runtime and kernels (pyopencl is imported lazily by the hosts)."""
