"""Particle stacks copied to a scratch disk (``refine3d --scratch_dir``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polishplugin.io import labels as L
from polishplugin.io.mrc import write_mrc
from polishplugin.io.particles import read_particles
from polishplugin.io.refine import read_particle_images
from polishplugin.io.scratch import GB, ScratchError, copy_stacks_to_scratch
from polishplugin.io.star import write_star


def _project(folder, n_stacks=3, per_stack=4, box=8):
    """``n_stacks`` stacks (image values = global particle index) and their STAR file."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for s in range(n_stacks):
        sub = folder / f"mic{s}"
        sub.mkdir()
        imgs = np.stack([np.full((box, box), s * per_stack + i, np.float32) for i in range(per_stack)])
        write_mrc(sub / "particles.mrcs", imgs, 2.0)
        names += [f"{i + 1:06d}@mic{s}/particles.mrcs" for i in range(per_stack)]
    optics = pd.DataFrame({L.OPTICS_GROUP_NAME: ["g1"], L.OPTICS_GROUP: [1], L.IMAGE_PIXEL_SIZE: [2.0],
                           L.VOLTAGE: [300.0], L.SPHERICAL_ABERRATION: [2.7], L.AMPLITUDE_CONTRAST: [0.1],
                           L.IMAGE_SIZE: [box], L.IMAGE_DIMENSIONALITY: [2]})
    write_star(folder / "particles.star", {"optics": optics, "particles": pd.DataFrame(
        {L.IMAGE_NAME: names, L.OPTICS_GROUP: np.ones(len(names), int)})})
    return read_particles(folder / "particles.star")


def test_copies_are_read_and_removed(tmp_path):
    table = _project(tmp_path / "p")
    copy = copy_stacks_to_scratch(table, tmp_path / "scratch" / "new", keep_free_gb=0.0)
    assert copy.directory.parent == tmp_path / "scratch" / "new" and not copy.warning
    assert sorted(copy.paths) == [f"mic{s}/particles.mrcs" for s in range(3)]
    for s in range(3):  # the originals gone: the images come from the copies
        (tmp_path / "p" / f"mic{s}" / "particles.mrcs").rename(tmp_path / "p" / f"mic{s}" / "moved.mrcs")
    rows = np.array([11, 0, 5])
    images = read_particle_images(table, rows, 8, copy.paths)
    np.testing.assert_array_equal(images[:, 0, 0], rows.astype(np.float32))
    copy.remove()
    assert not copy.directory.exists() and (tmp_path / "scratch" / "new").exists()


def test_full_scratch_copies_what_fits_and_says_so(tmp_path):
    """Free space for one stack beyond --keep_free_scratch: RELION copies until the next does not fit and
    reads the rest from where they are; the warning names the folder and the counts."""
    table = _project(tmp_path / "p")
    size = (tmp_path / "p" / "mic0" / "particles.mrcs").stat().st_size
    copy = copy_stacks_to_scratch(table, tmp_path / "scratch", keep_free_gb=1.0,
                                  free_space=lambda p: GB + int(1.5 * size))
    assert list(copy.paths) == ["mic0/particles.mrcs"]
    assert copy.not_copied == ["mic1/particles.mrcs", "mic2/particles.mrcs"]
    assert f"scratch space full in {tmp_path / 'scratch'}" in copy.warning
    assert "1 of 3 particle stacks copied, the remaining 2 are read from where they are" in copy.warning
    images = read_particle_images(table, np.arange(12), 8, copy.paths)
    np.testing.assert_array_equal(images[:, 0, 0], np.arange(12, dtype=np.float32))
    copy.remove()


def test_scratch_directory_that_cannot_be_made(tmp_path):
    table = _project(tmp_path / "p")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ScratchError, match=f"scratch directory {tmp_path / 'file' / 'sub'} cannot be made"):
        copy_stacks_to_scratch(table, tmp_path / "file" / "sub")
