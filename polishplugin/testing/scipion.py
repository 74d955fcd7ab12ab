"""Test helper: skip a test module when Scipion (pyworkflow, pwem) cannot be imported."""

from ..stage.scipion_env import setup_scipion_env

__all__ = ["require_scipion"]


def require_scipion() -> None:
    """Skip the calling test module when pyworkflow or pwem cannot be imported."""
    import pytest

    setup_scipion_env()
    pytest.importorskip("pyworkflow", reason="pyworkflow not installed (Scipion tests skipped)")
    pytest.importorskip("pwem", reason="pwem not installed (Scipion tests skipped)")
