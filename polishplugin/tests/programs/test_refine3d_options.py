"""``polishplugin refine3d`` options: --solvent_mask2, --auto_ignore_angles/--auto_resol_angles,
--preread_images, --scratch_dir/--keep_free_scratch."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from polishplugin.io.mrc import read_mrc, write_mrc
from polishplugin.io.refine import read_optimiser
from polishplugin.io.star import read_star
from polishplugin.core.filters import raised_cosine_sphere
from polishplugin.testing.refine_synthetic import blob_phantom
from polishplugin.programs import refine3d
from polishplugin.programs._cli import ProgramError, build_parser
from polishplugin.tests.programs.test_refine3d import run_refine, write_synthetic_project


def _small(tmp_path):
    return write_synthetic_project(tmp_path / "p", box=16, n=8, sym="C1", snr=1.0, angpix=6.0)


# ------------------------------------------------------------------------------ --solvent_mask2
@pytest.mark.parametrize("case", ["box", "pixel", "range", "empty", "no_flatten", "missing", "mask1_pixel"])
def test_second_mask_bad_input(tmp_path, case):
    """Each refusal names the file and the problem (the first solvent mask's pixel size is checked the same way)."""
    proj = _small(tmp_path)
    m2 = tmp_path / "mask2.mrc"
    data, angpix = np.zeros((16,) * 3, np.float32), 6.0
    data[6:10, 6:10, 6:10] = 1.0
    flags = ["--flatten_solvent"]
    match = {"box": r"second solvent mask .*mask2.mrc has shape \(12, 12, 12\), the reference \(16, 16, 16\)",
             "pixel": r"second solvent mask .*mask2.mrc has pixel size 3.0000 Å but the particles have 6.0000 Å",
             "range": r"second solvent mask .*mask2.mrc has values outside \[0, 1\]",
             "empty": r"second solvent mask .*mask2.mrc is zero everywhere",
             "no_flatten": r"--solvent_mask2 .*mask2.mrc acts in solvent flattening: add --flatten_solvent",
             "missing": r"second solvent mask .*mask2.mrc does not exist",
             "mask1_pixel": r"solvent mask .*mask.mrc has pixel size 3.0000 Å but the particles have 6.0000 Å"}[case]
    if case == "box":
        data = np.ones((12,) * 3, np.float32)
    elif case == "pixel":
        angpix = 3.0
    elif case == "range":
        data *= 2.0
    elif case == "empty":
        data[:] = 0.0
    elif case == "no_flatten":
        flags = []
    if case == "mask1_pixel":
        write_mrc(proj["mask"], read_mrc(proj["mask"])[0], 3.0)
        flags += ["--solvent_mask", str(proj["mask"])]
    if case != "missing":
        write_mrc(m2, data, angpix)
    with pytest.raises(ProgramError, match=match):
        run_refine(proj, tmp_path / "r" / "run", ["--iter", "1", "--solvent_mask2", str(m2)] + flags)


def test_second_mask_flattens_the_references(tmp_path, monkeypatch):
    """Every non-final E-step's reference is the half map x the solvent mask with the second mask's region
    set to its own mean; the optimiser STAR file names both masks (RELION's labels)."""
    proj = _small(tmp_path)
    m2 = raised_cosine_sphere((16,) * 3, 2.0, 1.0).astype(np.float32)
    write_mrc(tmp_path / "mask2.mrc", m2, 6.0)
    seen = []

    def recording(ref, mask, mask2=None):
        out = refine3d.flatten_solvent.__wrapped__(ref, mask, mask2)
        seen.append((ref, mask, mask2, out))
        return out

    recording.__wrapped__ = refine3d.flatten_solvent
    monkeypatch.setattr(refine3d, "flatten_solvent", recording)
    assert run_refine(proj, tmp_path / "r" / "run", ["--iter", "2", "--flatten_solvent", "--solvent_mask",
                                                       str(proj["mask"]), "--solvent_mask2",
                                                       str(tmp_path / "mask2.mrc")]) == 0
    assert len(seen) == 2 * 1  # two halves in iteration 1; iteration 2 is the final one (not flattened)
    mask1 = read_mrc(proj["mask"])[0]
    for ref, mask, mask2, out in seen:
        np.testing.assert_array_equal(mask, mask1)
        np.testing.assert_array_equal(mask2, m2)
        inner = m2 == 1.0
        assert inner.sum() > 10 and np.ptp(out[inner]) < 1e-9 * max(np.abs(out).max(), 1)  # flat inside mask 2
        np.testing.assert_allclose(out[m2 == 0], (ref * mask1)[m2 == 0])  # the rest follows mask 1
        assert np.ptp((ref * mask1)[inner]) > 0  # (not flat before)
    g = read_star(tmp_path / "r" / "run_it001_optimiser.star")["optimiser_general"].iloc[0]
    assert g["rlnSolventMask2Name"] == str(tmp_path / "mask2.mrc")
    assert g["rlnSolventMaskName"] == str(proj["mask"])
    assert int(g["rlnDoSolventFlattening"]) == 1


# ------------------------------------------------------------- --auto_ignore_angles --auto_resol_angles
def _orders(root):
    """(HEALPix order, local) of every iteration's model.star under ``root``."""
    out = []
    for f in sorted(root.parent.glob(f"{root.name}_it*_model.star")):
        g = read_star(f)["model_general"].iloc[0]
        out.append((int(g["rlnHealpixOrder"]), int(g["rlnOrientationalPriorMode"])))
    return out


def test_finer_sampling_faster_reaches_local_searches_sooner_and_continues(tmp_path):
    """SNR 10, 40 D2 particles (box 32): with RELION's "Use finer angular sampling faster?" flags the
    schedule goes finer while the angles still move and reaches the local order (4) in iteration 4, where
    the plain rule is at order 3 (measured 2026-12-05 with --iter 12: plain 2,2,2,3,3,3,3 then local at
    iteration 8; flags 2,2,3,4,5,6, converged after 7 iterations).  The flags are saved with the schedule:
    --continue from iteration 2 goes on as the uninterrupted flagged run."""
    vol = blob_phantom(32, "D2", n_blobs=40, blob_sigma_px=0.9, seed=0)
    proj = write_synthetic_project(tmp_path / "p", box=32, n=40, sym="D2", snr=10.0, angpix=3.0, volume=vol)
    base = ["--iter", "4", "--ini_high", "20"]
    assert run_refine(proj, tmp_path / "plain" / "run", base) == 0
    fast = tmp_path / "fast" / "run"
    assert run_refine(proj, fast, base + ["--auto_ignore_angles", "--auto_resol_angles"]) == 0
    plain_orders, fast_orders = _orders(tmp_path / "plain" / "run"), _orders(fast)
    assert [o for o, _ in plain_orders] == [2, 2, 2, 3] and not any(loc for _, loc in plain_orders)
    assert fast_orders[3] == (4, 1) and [o for o, _ in fast_orders[:3]] == [2, 2, 3]
    sched = read_optimiser(fast.parent / "run_it002_optimiser.star").schedule
    assert sched["auto_ignore_angles"] and sched["auto_resol_angles"]
    cont = tmp_path / "cont"
    cont.mkdir()
    for f in fast.parent.glob("run_it00[12]_*"):
        shutil.copy(f, cont / f.name)
    opt = cont / "run_it002_optimiser.star"
    opt.write_text(opt.read_text().replace(str(fast.parent), str(cont)))
    assert refine3d.main(build_parser("refine3d").parse_args(["--continue", str(opt), "--o", str(cont / "run")])) == 0
    assert _orders(cont / "run") == fast_orders


# ------------------------------------------------------------------- --preread_images, --scratch_dir
def _outputs(folder):
    data = read_star(folder / "run_data.star")["particles"]
    return read_mrc(folder / "run_class001.mrc")[0], data


def test_preread_and_scratch_give_identical_results(tmp_path, monkeypatch, caplog):
    """The same run without options, with --preread_images, with --scratch_dir (the original stacks renamed
    once the copy exists: the images must come from the copy, which is gone afterwards) and with a scratch disk
    that is 'full' (--keep_free_scratch beyond the free space: the stacks are read from where they are, and
    the log says so) gives the same outputs bit for bit."""
    proj = _small(tmp_path)
    base = ["--iter", "2"]
    assert run_refine(proj, tmp_path / "plain" / "run", base) == 0
    ref_map, ref_data = _outputs(tmp_path / "plain")
    assert run_refine(proj, tmp_path / "pre" / "run", base + ["--preread_images"]) == 0
    stack = proj["dir"] / "particles.mrcs"
    copies = []

    def copy_then_hide_originals(*a, **k):
        c = refine3d.copy_stacks_to_scratch.__wrapped__(*a, **k)
        copies.append(c)
        stack.rename(stack.with_suffix(".hidden"))
        return c

    copy_then_hide_originals.__wrapped__ = refine3d.copy_stacks_to_scratch
    monkeypatch.setattr(refine3d, "copy_stacks_to_scratch", copy_then_hide_originals)
    scratch = tmp_path / "scratch"
    try:
        assert run_refine(proj, tmp_path / "scr" / "run", base + ["--scratch_dir", str(scratch)]) == 0
    finally:
        stack.with_suffix(".hidden").rename(stack)
    assert list(copies[0].paths) == ["particles.mrcs"] and copies[0].directory.parent == scratch
    assert scratch.exists() and not list(scratch.iterdir())  # the copy was removed
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, logger=refine3d.__name__):
        assert run_refine(proj, tmp_path / "full" / "run",
                          base + ["--scratch_dir", str(scratch), "--keep_free_scratch", "1e9"]) == 0
    assert any(f"scratch space full in {scratch}" in r.getMessage()
               and "0 of 1 particle stacks copied" in r.getMessage() for r in caplog.records)
    for name in ("pre", "scr", "full"):
        m, d = _outputs(tmp_path / name)
        np.testing.assert_array_equal(m, ref_map, err_msg=name)
        for col in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"):
            np.testing.assert_array_equal(d[col].to_numpy(), ref_data[col].to_numpy(), err_msg=f"{name} {col}")


def test_scratch_directory_that_cannot_be_made(tmp_path):
    proj = _small(tmp_path)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ProgramError, match=r"scratch directory .*file/sub cannot be made or written"):
        run_refine(proj, tmp_path / "r" / "run", ["--iter", "1", "--scratch_dir", str(tmp_path / "file" / "sub")])


def test_first_rank_per_host():
    from polishplugin.programs._mpi import first_rank_per_host
    assert first_rank_per_host(["a", "b", "a", "c", "b"]) == [0, 1, 0, 3, 1]
    assert first_rank_per_host(["n1"]) == [0]


def test_mpi_ranks_on_two_hosts_each_copy_to_their_own_scratch(tmp_path):
    """``mpirun`` with two ranks on "two hosts" (POLISHPLUGIN_HOST set per rank, as MPI's processor names differ
    between nodes): the first rank on each host copies the stacks to its scratch disk (two copies, one per host,
    both removed afterwards); two ranks on one host make one copy.  Both runs give the single-process outputs."""
    import subprocess
    import sys
    from pathlib import Path

    mpirun = shutil.which("mpirun") or str(Path(sys.executable).parent / "mpirun")
    exe = Path(sys.executable).parent / "polishplugin"
    if not Path(mpirun).exists() or not exe.exists():
        pytest.skip("mpirun or the polishplugin console script is missing")
    pytest.importorskip("mpi4py")
    proj = _small(tmp_path)
    scratch = tmp_path / "scratch"
    args = ["refine3d", "--i", str(proj["star"]), "--ref", str(proj["ref"]), "--ini_high", "30", "--ctf",
            "--particle_diameter", "70", "--zero_mask", "--healpix_order", "1", "--offset_range", "2",
            "--offset_step", "2", "--random_seed", "1", "--iter", "2", "--scratch_dir", str(scratch)]
    assert refine3d.main(build_parser("refine3d").parse_args(args[1:-2] + ["--o", str(tmp_path / "one" / "run")])) == 0
    common = [mpirun, "--allow-run-as-root", "--oversubscribe"]
    two = ["--o", str(tmp_path / "two_hosts" / "run")]
    runs = {"two_hosts": common + ["-n", "1", "-x", "POLISHPLUGIN_HOST=nodeA", str(exe), *args, *two, ":",
                                   "-n", "1", "-x", "POLISHPLUGIN_HOST=nodeB", str(exe), *args, *two],
            "one_host": common + ["-n", "2", str(exe), *args, "--o", str(tmp_path / "one_host" / "run")]}
    for name, cmd in runs.items():
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        copied = [line for line in (res.stdout + res.stderr).splitlines() if "particle stack(s) copied to" in line]
        if name == "two_hosts":
            assert len(copied) == 2 and "on host nodeA" in copied[0] and "on host nodeB" in copied[1], copied
        else:
            assert len(copied) == 1, copied
        assert not list(scratch.iterdir())  # every host's copy was removed
        a, _ = read_mrc(tmp_path / "one" / "run_class001.mrc")
        b, _ = read_mrc(tmp_path / name / "run_class001.mrc")
        np.testing.assert_array_equal(a, b, err_msg=name)
