"""Shared pytest fixtures and markers for polishplugin's tests."""

import numpy as np
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "opencl: needs an OpenCL platform (skips with 'no OpenCL' otherwise)")


@pytest.fixture
def rng():
    """A numpy Generator seeded 1234 (tests must be reproducible)."""
    return np.random.default_rng(1234)
