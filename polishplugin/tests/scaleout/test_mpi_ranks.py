"""Every program under ``mpirun -n 1, 2, 3``: the outputs must not depend on the number of ranks.

Each program runs on the tiny simulated project (3 movies x 12 particles, box 48; refine3d on a
24-particle synthetic set, box 24) through the console script under ``mpirun --allow-run-as-root
--oversubscribe``; the MRC maps/stacks and STAR tables written with 2 and 3 ranks are compared with
the 1-rank run (same file names, same columns, strings equal once the output folder is masked, numbers
within float tolerance).  Skips with "no mpirun" when mpirun is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polishplugin.io.mrc import read_mrc
from polishplugin.io.star import read_star

RANKS = (1, 2, 3)
EXE = str(Path(sys.executable).parent / "polishplugin")
RTOL = 1e-4  # float32 sums in another order; relative to the largest value of a map


def _mpirun() -> str | None:
    beside = Path(sys.executable).parent / "mpirun"
    return shutil.which("mpirun") or (str(beside) if beside.exists() else None)


pytestmark = pytest.mark.skipif(_mpirun() is None, reason="no mpirun")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from polishplugin.tests.fixtures_simulate import tiny_project

    return tiny_project(tmp_path_factory)


@pytest.fixture(scope="module")
def refine_set(tmp_path_factory):
    from polishplugin.tests.programs.test_refine3d import write_synthetic_project

    return write_synthetic_project(tmp_path_factory.mktemp("refine_set"), box=24, angpix=4.0, n=24, sym="D2")


def _tiny_argv(prog: str, p: dict, out: Path) -> tuple[list[str], Path]:
    """(arguments, working folder) of ``prog`` on the tiny project writing into ``out``."""
    r = Path(p["particles"]).parent
    half1, cls = str(r / "run_half1_class001_unfil.mrc"), str(r / "run_class001.mrc")
    polish = ["--i", str(p["particles"]), "--f", str(p["postprocess"]),
              "--corr_mic", str(p["corrected_micrographs"]), "--o", f"{out}/"]
    table = {
        "postprocess": ["--i", half1, "--o", f"{out}/postprocess", "--mask", str(p["mask"]), "--auto_bfac",
                        "--autob_lowres", "10"],
        "mask_create": ["--i", cls, "--o", f"{out}/mask.mrc", "--lowpass", "15", "--ini_threshold", "0.005",
                        "--extend_inimask", "1", "--width_soft_edge", "3"],
        "local_resolution": ["--i", half1, "--o", f"{out}/relion", "--mask", str(p["mask"]),
                             "--locres_sampling", "12", "--adhoc_bfac", "-50"],
        "motion_refine_polish": polish + ["--combine_frames", "--s_vel", "0.4", "--s_div", "1155",
                                          "--s_acc", "2.7"],
        "motion_refine_train": polish + ["--min_p", "10", "--eval_frac", "0.5", "--params3", "--par_iters", "4"],
    }
    return table[prog], Path(p["project_dir"])


def _refine_argv(proj: dict, out: Path) -> tuple[list[str], Path]:
    return (["--i", str(proj["star"]), "--o", f"{out}/run", "--ref", str(proj["ref"]), "--ini_high", "30",
             "--sym", "D2", "--ctf", "--particle_diameter", "76", "--zero_mask", "--healpix_order", "2",
             "--auto_local_healpix_order", "4", "--offset_range", "3", "--offset_step", "2",
             "--random_seed", "1", "--iter", "2", "--pad", "1", "--auto_refine", "--split_random_halves"],
            Path(proj["dir"]))


def run_ranks(command: str, argv: list[str], cwd: Path, n: int, timeout: float = 300) -> None:
    """``mpirun -n n polishplugin command argv`` in ``cwd``; fails the test with the tail of stderr."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLBACKEND="Agg")
    cmd = [_mpirun(), "--allow-run-as-root", "--oversubscribe", "-n", str(n), EXE, command, *argv]
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{n} ranks: {' '.join(cmd)}\n{res.stdout[-1500:]}\n{res.stderr[-3000:]}"


def _compared_files(folder: Path, pattern: str = "*") -> list[str]:
    return sorted(str(f.relative_to(folder)) for f in folder.rglob(pattern)
                  if f.is_file() and f.suffix in (".mrc", ".mrcs", ".star"))


def _mask_folder(df: pd.DataFrame, folder: Path) -> pd.DataFrame:
    df = df.copy()
    for c in df.columns:
        if not pd.api.types.is_numeric_dtype(df[c]):
            df[c] = df[c].astype(str).str.replace(str(folder), "OUT", regex=False)
    return df


def assert_same_outputs(ref: Path, other: Path, label: str, rtol: float = RTOL, skip: str | None = None) -> int:
    """MRC and STAR files under ``other`` equal those under ``ref`` (except names ending in ``skip``);
    returns how many were compared."""
    names = _compared_files(ref)
    assert names, f"{label}: no output written in {ref}"
    assert _compared_files(other) == names, f"{label}: different output files"
    for name in names:
        if not (skip and name.endswith(skip)):
            assert_same_file(ref, other, name, label, rtol)
    return len(names)


def assert_same_file(ref: Path, other: Path, name: str, label: str, rtol: float = RTOL) -> None:
    """``other/name`` equals ``ref/name``: MRC within ``rtol`` x max|value|, STAR tables column by column."""
    a_path, b_path = ref / name, other / name
    if name.endswith((".mrc", ".mrcs")):
        a, pa = read_mrc(a_path)
        b, pb = read_mrc(b_path)
        assert a.shape == b.shape and pa == pytest.approx(pb), f"{label}: {name} shape/pixel size"
        scale = float(np.max(np.abs(a))) or 1.0
        np.testing.assert_allclose(b, a, rtol=0, atol=rtol * scale, err_msg=f"{label}: {name}")
        return
    sa, sb = read_star(a_path), read_star(b_path)
    assert list(sa) == list(sb), f"{label}: {name} blocks"
    for block in sa:
        da, db = _mask_folder(sa[block], ref), _mask_folder(sb[block], other)
        assert list(da.columns) == list(db.columns) and len(da) == len(db), f"{label}: {name}/{block}"
        for c in da.columns:
            x, y = da[c], db[c]
            if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
                xs = x.to_numpy(float)
                atol = rtol * float(np.nanmax(np.abs(xs))) if len(xs) else 0.0
                np.testing.assert_allclose(y.to_numpy(float), xs, rtol=rtol, atol=atol,
                                           err_msg=f"{label}: {name}/{block}/{c}")
            else:
                assert x.tolist() == y.tolist(), f"{label}: {name}/{block}/{c}"


def _run_all_ranks(command: str, argv_of, folder: Path) -> dict[int, Path]:
    outs = {}
    for n in RANKS:
        out = folder / f"n{n}"
        argv, cwd = argv_of(out)
        run_ranks(command, argv, cwd, n)
        outs[n] = out
    return outs


@pytest.mark.parametrize("prog", ["postprocess", "mask_create", "local_resolution", "motion_refine_polish"])
def test_same_outputs_for_1_2_3_ranks(prog, tiny, tmp_path):
    command = "motion_refine" if prog.startswith("motion_refine") else prog
    outs = _run_all_ranks(command, lambda out: _tiny_argv(prog, tiny, out), tmp_path)
    for n in RANKS[1:]:
        assert_same_outputs(outs[1], outs[n], f"{command} with {n} ranks")


def test_training_same_outputs_for_1_2_3_ranks(tiny, tmp_path):
    outs = _run_all_ranks("motion_refine", lambda out: _tiny_argv("motion_refine_train", tiny, out), tmp_path)
    for n in RANKS[1:]:
        assert_same_outputs(outs[1], outs[n], f"motion_refine --params3 with {n} ranks")


@pytest.fixture(scope="module")
def refined(refine_set, tmp_path_factory):
    return _run_all_ranks("refine3d", lambda out: _refine_argv(refine_set, out), tmp_path_factory.mktemp("r3d"))


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3])
def test_refine3d_maps_and_data_same_as_one_rank(refined, n):
    """Maps (every iteration, halves and joined) and the data STAR files do not depend on the ranks."""
    assert_same_outputs(refined[1], refined[n], f"refine3d with {n} ranks", rtol=1e-3, skip="_model.star")


@pytest.mark.slow
def test_refine3d_model_star_same_for_1_2_3_ranks(refined):
    for n in RANKS[1:]:
        for name in _compared_files(refined[1], "*_model.star"):
            assert_same_file(refined[1], refined[n], name, f"refine3d with {n} ranks", rtol=1e-3)


def test_comparison_catches_a_changed_value(tiny, tmp_path):
    """The comparison itself must fail on a planted difference (guards against a vacuous test)."""
    from polishplugin.io.mrc import write_mrc

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        shutil.copy(tiny["postprocess"], d / "postprocess.star")
    m, angpix = read_mrc(tiny["mask"])
    write_mrc(a / "m.mrc", m, angpix)
    assert assert_same_outputs(a, a, "self") == 2
    m2 = m.copy()
    m2[m2.shape[0] // 2, m2.shape[1] // 2, m2.shape[2] // 2] += 0.01
    write_mrc(b / "m.mrc", m2, angpix)
    with pytest.raises(AssertionError):
        assert_same_outputs(a, b, "planted")
