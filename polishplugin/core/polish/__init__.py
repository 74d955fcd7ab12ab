"""Bayesian polishing numerics: reference predictions, per-frame FCC, B-factor fit, frame recombination."""
