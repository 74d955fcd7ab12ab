"""Shared helpers of the reliability tests: run the console script in a subprocess, snapshot outputs."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

EXE = str(Path(sys.executable).parent / "polishplugin")


def cli(args: list[str], cwd, fsize: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``polishplugin args`` in ``cwd``; ``fsize`` (bytes) caps every file it writes (disk full).

    The cap is RLIMIT_FSIZE with SIGXFSZ ignored, so a write past it fails with EFBIG ("File too
    large") as on a full disk, instead of killing the process.
    """
    def limit():
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLBACKEND="Agg")
    return subprocess.run([EXE, *map(str, args)], cwd=str(cwd), preexec_fn=limit, capture_output=True,
                          text=True, timeout=timeout, env=env)


def snapshot(folder) -> dict[str, str]:
    """{relative path: md5} of every file under ``folder`` (hidden temporary files included)."""
    folder = Path(folder)
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.md5(p.read_bytes()).hexdigest()
    return out


def final_names(snap: dict[str, str]) -> dict[str, str]:
    """The entries of a snapshot under final names (not ``.name.tmpPID`` temporaries)."""
    return {k: v for k, v in snap.items() if not Path(k).name.startswith(".")}


def check_readable(path) -> None:
    """Raise unless ``path`` is a complete, readable output (MRC/MRCS/STAR/PNG/PDF/EPS/text)."""
    from polishplugin.io.mrc import read_mrc
    from polishplugin.io.star import read_star

    path = Path(path)
    suf = path.suffix.lower()
    if suf in (".mrc", ".mrcs"):
        read_mrc(path, check_finite=False)
    elif suf == ".star":
        read_star(path)
    elif suf == ".png":
        assert path.read_bytes()[-8:-4] == b"IEND", f"{path} is a truncated PNG"
    elif suf == ".pdf":
        assert b"%%EOF" in path.read_bytes()[-64:], f"{path} is a truncated PDF"
    elif suf == ".eps":
        tail = path.read_bytes()[-64:]
        assert b"%%EOF" in tail or b"showpage" in tail, f"{path} is a truncated EPS"
