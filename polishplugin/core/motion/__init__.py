"""Per-particle motion estimation for Bayesian polishing (RELION ``relion_motion_refine``).

Modules: ``prepare`` (normalisation, whitening), ``cross_correlation`` (per-frame CC maps, numpy and
OpenCL), ``gp_basis`` (GP prior eigen-basis, tracks <-> coefficients), ``objective`` (Catmull-Rom
interpolation, value + analytic gradient), ``estimate`` (L-BFGS track fit), ``initial_tracks``,
``tsc`` (training frequency split and held-out score), ``hyperparameters`` (the sigma search).
"""
