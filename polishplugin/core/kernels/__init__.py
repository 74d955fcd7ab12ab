"""Small numeric kernels with a numpy reference and an OpenCL twin (``backend="numpy"|"opencl"|"auto"``)."""
