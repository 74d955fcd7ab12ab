"""Simulation of a RELION-shaped dataset with known ground truth (framework-free numerics, no file I/O).

``phantom``: Gaussian-atom pseudo-protein, its map and exact projections; ``tracks``: planted global
drift and per-particle motion with RELION's prior statistics; ``damage``: per-frame B-factors;
``frames``: movie frames, aligned sums, extraction; ``maps``: soft masks and "previous refine" maps.
The program ``polishplugin simulate`` (:mod:`polishplugin.programs.simulate`) writes the files.
"""
