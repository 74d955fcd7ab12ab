"""Per-particle motion estimation for Bayesian polishing (RELION ``relion_motion_refine``).

Modules: ``prepare`` (normalisation, whitening), ``cross_correlation`` (+ ``_cl``: per-frame CC maps,
numpy and OpenCL), ``gp_basis`` (GP prior eigen-basis, tracks <-> coefficients), ``objective`` (+ ``_cl``:
Catmull-Rom interpolation, value + analytic gradient), ``estimate`` (L-BFGS track fit; ``polish_tracks``:
one micrograph of polishing mode), ``initial_tracks`` (from the motion-correction model, or the global
track from the summed CC), ``joint`` (many micrographs fitted as one problem), ``tsc`` (training frequency
split and held-out score), ``training`` (training subset, prepared micrographs, the TSC objective of the
sigma search), ``hyperparameters`` (the sigma search and RELION's rounding).
"""
