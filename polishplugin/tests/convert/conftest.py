"""Fixtures of the convert tests: the real tutorial files (when POLISHPLUGIN_TEST_DATA is set) and
the tiny synthetic project."""

import os
from pathlib import Path

import pytest

from polishplugin.tests.convert.tiny_project import make_tiny_project


@pytest.fixture(scope="session")
def tutorial_data() -> Path:
    root = os.environ.get("POLISHPLUGIN_TEST_DATA")
    if not root:
        pytest.skip("POLISHPLUGIN_TEST_DATA unset")
    path = Path(root)
    if not path.is_dir():
        pytest.fail(f"POLISHPLUGIN_TEST_DATA={root} is not a folder")
    return path


@pytest.fixture()
def tiny(tmp_path) -> dict:
    return make_tiny_project(tmp_path / "project")
