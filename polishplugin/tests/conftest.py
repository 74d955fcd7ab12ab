"""Shared pytest fixtures and markers for polishplugin's tests."""

import numpy as np
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "opencl: needs an OpenCL platform (skips with 'no OpenCL' otherwise)")


@pytest.fixture
def rng():
    """A numpy Generator seeded 1234 (tests must be reproducible)."""
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tutorial_data():
    """The real RELION tutorial files (``$POLISHPLUGIN_TEST_DATA``; .ci/run sets it, CI requires it)."""
    import os
    from pathlib import Path

    root = os.environ.get("POLISHPLUGIN_TEST_DATA")
    if not root:
        pytest.skip("POLISHPLUGIN_TEST_DATA unset")
    path = Path(root)
    if not path.is_dir():
        pytest.fail(f"POLISHPLUGIN_TEST_DATA={root} is not a folder")
    return path


@pytest.fixture()
def tiny(tmp_path) -> dict:
    """A tiny RELION project on disk (:func:`polishplugin.testing.tiny_project.make_tiny_project`)."""
    from polishplugin.testing.tiny_project import make_tiny_project

    return make_tiny_project(tmp_path / "project")
