"""Open a page in a real headless browser (Chromium from Debian's ``chromium`` package), for the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["chromium", "dump_dom", "screenshot"]


def chromium() -> str:
    """The Chromium executable; AssertionError when it is missing (``.ci/run`` installs it)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "no Chromium (apt-get install chromium; .ci/run installs it)"
    return exe


def _run(page: Path, extra: list[str], profile: Path) -> subprocess.CompletedProcess:
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--virtual-time-budget=5000", *extra, page.resolve().as_uri()]
    env = dict(os.environ, HOME=str(profile))
    return subprocess.run(args, capture_output=True, text=True, timeout=180, env=env)


def dump_dom(page: str | os.PathLike, profile: str | os.PathLike) -> str:
    """The page's DOM after its load event and scripts ran (``--dump-dom``)."""
    result = _run(Path(page), ["--dump-dom"], Path(profile))
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(page: str | os.PathLike, png: str | os.PathLike, profile: str | os.PathLike,
               size: tuple[int, int] = (1280, 4000)) -> Path:
    """A PNG screenshot of the page at ``size`` (width, height) pixels."""
    png = Path(png)
    result = _run(Path(page), [f"--screenshot={png}", f"--window-size={size[0]},{size[1]}"], Path(profile))
    assert png.exists() and png.stat().st_size > 1000, result.stderr[-2000:]
    return png
