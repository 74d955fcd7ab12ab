"""Framework-free numerics: numpy/scipy (+ pyopencl hosts loaded lazily).  No Scipion, no MPI, no file I/O."""
