"""Simulation of a RELION-shaped dataset with known ground truth (framework-free numerics, no file I/O).

``phantom``: Gaussian-atom pseudo-protein, its map and exact projections; ``tracks``: planted global
drift and per-particle motion with RELION's prior statistics; ``damage``: per-frame B-factors;
``frames``: movie frames, aligned sums, extraction; ``maps``: soft masks and "previous refine" maps;
``project``: the presets, the phantom, one micrograph's movie, the half maps and the truth arrays.
The program ``polishplugin simulate`` (:mod:`polishplugin.programs.simulate`) writes the files
(through :mod:`polishplugin.io`, the ground truth through :mod:`polishplugin.io.simulation`).
"""
