"""Bad inputs not covered by the programs' own tests, run through the console script.

Each test checks the exit code 1, no traceback, and the one-line message (file named, problem said).
Rows of docs/bad_input.rst point here.  Known gaps are strict xfails (they fail loudly once fixed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polishplugin.io.mrc import read_mrc, write_mrc
from polishplugin.tests.fixtures_simulate import copy_project, tiny_project
from polishplugin.tests.reliability._helpers import cli

POLISH = ["--combine_frames", "--s_vel", "0.4", "--s_div", "1155", "--s_acc", "2.7"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_project(tmp_path_factory)


@pytest.fixture
def proj(tiny, tmp_path):
    return copy_project(tiny, tmp_path / "project")


def _polish(p, particles=None, out="Polish/job099") -> list[str]:
    return ["motion_refine", "--i", particles or p["particles"], "--f", p["postprocess"],
            "--corr_mic", p["corrected_micrographs"], "--o", out, *POLISH]


def _clear_error(res, *fragments) -> None:
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    for f in fragments:
        assert f in res.stderr, (f, res.stderr[-2000:])


def _empty_particles(p) -> Path:
    text = Path(p["particles"]).read_text()
    i = text.index("data_particles")
    keep = [ln for ln in text[i:].splitlines() if ln.startswith(("data_", "loop_", "_"))]
    path = Path(p["project_dir"]) / "empty.star"
    path.write_text(text[:i] + "\n".join(keep) + "\n")
    return path


def test_empty_particle_set_polish(proj):
    empty = _empty_particles(proj)
    _clear_error(cli(_polish(proj, empty), proj["project_dir"]), "empty.star", "no particles")


def test_empty_particle_set_refine3d(proj):
    empty = _empty_particles(proj)
    res = cli(["refine3d", "--i", empty, "--o", "Refine3D/job099/run", "--ref", proj["map"], "--ctf"],
              proj["project_dir"])
    _clear_error(res, "empty.star", "no particles")


def test_truncated_half_map_postprocess(proj, tmp_path):
    cut = tmp_path / "cut_half1.mrc"
    cut.write_bytes(Path(proj["half1"]).read_bytes()[:300_000])
    res = cli(["postprocess", "--i", cut, "--i2", proj["half2"], "--o", tmp_path / "pp" / "pp"], tmp_path)
    _clear_error(res, "cut_half1.mrc", "cannot be read")


def test_movie_missing_on_disk(proj):
    Path(proj["movies"][1]).unlink()
    _clear_error(cli(_polish(proj), proj["project_dir"]), Path(proj["movies"][1]).name, "does not exist")


def test_truncated_movie_mrc(proj):
    movie = Path(proj["movies"][1])
    movie.write_bytes(movie.read_bytes()[:100_000])
    _clear_error(cli(_polish(proj), proj["project_dir"]), movie.name, "cannot be read")


def test_truncated_movie_tiff(proj):
    tifffile = pytest.importorskip("tifffile")
    movie = Path(proj["movies"][1])
    frames = read_mrc(movie)[0]
    tif = movie.with_suffix(".tif")
    tifffile.imwrite(str(tif), frames[:, ::-1].astype(np.float32))
    tif.write_bytes(tif.read_bytes()[: tif.stat().st_size // 2])
    meta = Path(proj["project_dir"]) / "MotionCorr/job002/Movies" / f"{movie.stem}.star"
    meta.write_text(meta.read_text().replace(f"Movies/{movie.name}", f"Movies/{tif.name}"))
    _clear_error(cli(_polish(proj), proj["project_dir"]), tif.name, "frames")  # pages lost: fewer frames


def test_inf_in_movie_is_rejected(proj):
    movie = Path(proj["movies"][2])
    data, angpix = read_mrc(movie)
    data[1, 5, 5] = np.inf
    write_mrc(movie, data, angpix)
    _clear_error(cli(_polish(proj), proj["project_dir"]), movie.name, "frame 2 contains NaN or Inf")


def test_nan_in_particle_stack_refine3d(tmp_path):
    from polishplugin.tests.programs.test_refine3d import write_synthetic_project

    p = write_synthetic_project(tmp_path / "syn", box=16, n=8, sym="C1", snr=1.0, angpix=6.0)
    stack = p["dir"] / "particles.mrcs"
    data, angpix = read_mrc(stack)
    data[3, 4, 5] = np.nan
    write_mrc(stack, data, angpix)
    res = cli(["refine3d", "--i", p["star"], "--o", tmp_path / "r" / "run", "--ref", p["ref"], "--ctf",
               "--ini_high", "30", "--particle_diameter", "70", "--iter", "1"], p["dir"])
    _clear_error(res, "particles.mrcs", "contains NaN or Inf values")
