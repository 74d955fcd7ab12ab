"""Pytest helpers giving tests a simulated project (``polishplugin simulate``) with ground truth.

Use from a test module::

    import pytest
    from polishplugin.tests.fixtures_simulate import tiny_project

    @pytest.fixture(scope="session")
    def tiny(tmp_path_factory):
        return tiny_project(tmp_path_factory)

    def test_something(tiny):
        star = tiny["particles"]            # Refine3D/job021/run_data.star
        truth = tiny["truth_data"]          # arrays: tracks_a (n, frames, 2) Å, bfactors, sigmas, ...

The project is built once per test session (per set of overrides) and shared: treat its files as
read-only; a test that changes files should work on ``copy_project(tiny, tmp_path)``.

Returned dict (all paths absolute ``pathlib.Path``): ``project_dir``, ``corrected_micrographs``,
``particles``, ``half1``, ``half2``, ``map``, ``mask``, ``postprocess``, ``mtf``, ``true_map``,
``truth`` (npz), ``truth_star``, ``ground_truth_dir``, ``movies`` / ``movie_stars`` / ``true_tracks``
(lists, one per micrograph, in order), plus ``angpix``, ``box``, ``frames``, ``params`` (the preset
values), ``final_resolution_a`` and ``truth_data`` (:func:`polishplugin.io.simulation.read_truth`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["tiny_project", "simulated_project", "copy_project"]

_CACHE: dict = {}


def simulated_project(tmp_path_factory, preset: str = "tiny", seed: int = 1, **overrides) -> dict:
    """Simulate (once per session and argument set) and return the paths/truth dict."""
    from polishplugin.io.simulation import read_truth
    from polishplugin.programs.simulate import simulate_project

    key = (preset, seed, tuple(sorted(overrides.items())))
    if key not in _CACHE:
        out = tmp_path_factory.mktemp(f"sim_{preset}_{seed}")
        res = simulate_project(out, preset=preset, seed=seed, **overrides)
        res["truth_data"] = read_truth(out)
        _CACHE[key] = res
    return _CACHE[key]


def tiny_project(tmp_path_factory, **overrides) -> dict:
    """The ``tiny`` preset (3 movies x 10 frames, 12 particles each, box 48 at 2.5 Å), seed 1."""
    return simulated_project(tmp_path_factory, "tiny", 1, **overrides)


def copy_project(res: dict, dest) -> dict:
    """Copy a simulated project to ``dest`` (a new folder) and return the dict with paths moved there."""
    src = Path(res["project_dir"])
    dest = Path(dest)
    shutil.copytree(src, dest, dirs_exist_ok=True)

    def move(v):
        if isinstance(v, Path):
            try:
                return dest / v.relative_to(src)
            except ValueError:
                return v
        if isinstance(v, list):
            return [move(x) for x in v]
        return v

    return {k: move(v) for k, v in res.items()}
