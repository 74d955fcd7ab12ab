"""Copies of particle stacks on a local scratch disk (``refine3d --scratch_dir``; RELION's
``Experiment::copyParticlesToScratch``).

:func:`copy_stacks_to_scratch` copies the image stacks a particle table names, in the table's order, into a
new folder ``<scratch_dir>/polishplugin_volatile_<unique>`` while the disk keeps ``keep_free_gb`` free; as in
RELION, the stacks that no longer fit are read from where they are, and :attr:`ScratchCopy.warning` says so.
:meth:`ScratchCopy.remove` deletes the folder.  Errors are :class:`ScratchError` with a sentence naming the
folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .particles import ParticleTable

__all__ = ["ScratchError", "ScratchCopy", "copy_stacks_to_scratch", "GB"]

#: bytes in one Gb as RELION counts them (``--keep_free_scratch``)
GB = 1024 ** 3


class ScratchError(OSError):
    """The scratch folder cannot be made or written; the message names it."""


@dataclass
class ScratchCopy:
    """The scratch folder, the stacks copied there (name as written in the STAR file -> path of the copy),
    the stacks left where they are, and the free space found before copying (bytes)."""

    directory: Path
    paths: dict = field(default_factory=dict)
    not_copied: list = field(default_factory=list)
    free_bytes: int = 0

    @property
    def warning(self) -> str:
        """A sentence when some stacks did not fit (empty otherwise)."""
        if not self.not_copied:
            return ""
        return (f"scratch space full in {self.directory.parent} ({self.free_bytes / GB:.2f} Gb free): "
                f"{len(self.paths)} of {len(self.paths) + len(self.not_copied)} particle stacks copied, the "
                f"remaining {len(self.not_copied)} are read from where they are")

    def remove(self) -> None:
        """Delete the scratch folder and every copy in it."""
        shutil.rmtree(self.directory, ignore_errors=True)


def copy_stacks_to_scratch(table: ParticleTable, scratch_dir: str | os.PathLike, keep_free_gb: float = 10.0,
                           free_space: Callable[[Path], int] | None = None) -> ScratchCopy:
    """Copy the stacks of ``table`` (each once, in order of first use) into a new folder under ``scratch_dir``
    (made if missing) until the next one would leave less than ``keep_free_gb`` Gb free there; the rest stay
    where they are.  ``free_space(folder)`` gives the free bytes (default: ``shutil.disk_usage``).  Stacks that
    do not exist are not copied (the image reader names them).  Each copy is written under a temporary name,
    then renamed."""
    base = Path(scratch_dir)
    try:
        base.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix="polishplugin_volatile_", dir=base))
    except OSError as exc:
        raise ScratchError(f"scratch directory {base} cannot be made or written ({exc.strerror or exc})") from exc
    free = int((free_space or (lambda p: shutil.disk_usage(p).free))(target))
    out = ScratchCopy(target, free_bytes=free)
    budget = free - keep_free_gb * GB
    used = 0
    stacks = list(dict.fromkeys(stack for _, stack in table.image_locations()))
    try:
        for i, stack in enumerate(stacks):
            src = table.resolve(stack)
            if not src.exists():
                continue
            size = src.stat().st_size
            if out.not_copied or used + size > budget:  # RELION stops copying at the first that does not fit
                out.not_copied.append(stack)
                continue
            dst = target / f"{i:06d}_{src.name}"
            tmp = target / f".{dst.name}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
            used += size
            out.paths[stack] = str(dst)
    except OSError as exc:
        out.remove()
        raise ScratchError(f"copying particle stacks to scratch directory {base} failed "
                           f"({exc.strerror or exc})") from exc
    return out
