"""Per-particle motion estimation for Bayesian polishing (RELION ``relion_motion_refine``).

Modules: ``prepare`` (normalisation, whitening), ``cross_correlation`` (+ ``_cl``: per-frame CC maps,
numpy and OpenCL), ``gp_basis`` (GP prior eigen-basis, tracks <-> coefficients), ``objective`` (+ ``_cl``:
Catmull-Rom interpolation, value + analytic gradient), ``estimate`` (L-BFGS track fit),
``initial_tracks`` (global track from the summed CC), ``tsc`` (training frequency split and held-out
score), ``hyperparameters`` (the sigma search and RELION's rounding), ``synthetic`` (planted-motion
test data).
"""
