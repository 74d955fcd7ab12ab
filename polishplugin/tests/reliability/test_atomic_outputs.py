"""Atomic outputs: an unwritable output folder and a disk that fills up while writing.

Disk full is simulated in a subprocess (RLIMIT_FSIZE with SIGXFSZ ignored: writes past the cap fail
with EFBIG, "File too large").  What must hold: results of an earlier run under the final names stay
byte-identical (every output goes through a temporary name and a rename), and the program ends with a
clear one-line message naming the file, not a traceback.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from polishplugin.tests.fixtures_simulate import tiny_project
from polishplugin.tests.reliability._helpers import check_readable, cli, final_names, snapshot

CAP = 60_000  # bytes: below every map of the tiny project (48^3 float32 = 442 KB, shiny stack 110 KB)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_project(tmp_path_factory)


def _commands(tiny, out: Path) -> dict[str, list[str]]:
    half1, mask = tiny["half1"], tiny["mask"]
    return {
        "postprocess": ["postprocess", "--i", half1, "--mask", mask, "--o", out / "postprocess"],
        "mask_create": ["mask_create", "--i", half1, "--o", out / "mask.mrc", "--ini_threshold", "0.01"],
        "local_resolution": ["local_resolution", "--i", half1, "--mask", mask, "--o", out / "relion"],
    }


@pytest.fixture(scope="module")
def earlier(tiny, tmp_path_factory):
    """One complete earlier run of each program, each in its own folder."""
    root = tmp_path_factory.mktemp("earlier")
    runs = {}
    for name, argv in _commands(tiny, Path("OUT")).items():
        out = root / name
        out.mkdir()
        argv = [str(a).replace("OUT", str(out)) for a in argv]
        res = cli(argv, tiny["project_dir"])
        assert res.returncode == 0, res.stderr
        runs[name] = out
    return runs


def _disk_full(tiny, earlier, name, tmp_path):
    out = tmp_path / name
    shutil.copytree(earlier[name], out)
    before = snapshot(out)
    argv = [str(a).replace("OUT", str(out)) for a in _commands(tiny, Path("OUT"))[name]]
    argv += {"postprocess": ["--adhoc_bfac", "-50"], "mask_create": ["--extend_inimask", "1"],
             "local_resolution": ["--adhoc_bfac", "-50"]}[name]
    res = cli(argv, tiny["project_dir"], fsize=CAP)
    return out, before, res


@pytest.mark.parametrize("name", ["postprocess", "mask_create", "local_resolution"])
def test_disk_full_keeps_earlier_outputs(tiny, earlier, name, tmp_path):
    """A rerun that hits a full disk fails and leaves the earlier results byte-identical and readable."""
    out, before, res = _disk_full(tiny, earlier, name, tmp_path)
    assert res.returncode != 0, "the write past the cap must fail"
    after = final_names(snapshot(out))
    assert after == final_names(before)
    for rel in after:
        check_readable(out / rel)


@pytest.mark.parametrize("name", ["postprocess"])
def test_disk_full_message_names_the_file(tiny, earlier, name, tmp_path):
    out, _, res = _disk_full(tiny, earlier, name, tmp_path)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "postprocess.mrc" in res.stderr and "ERROR" in res.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary file left behind"


def test_disk_full_during_polishing_keeps_finished_micrographs(tiny, tmp_path):
    """Polishing (resumable) hits a full disk on one micrograph: the others' outputs stay intact and
    readable, the victim has no file under a final name, and a rerun with room completes the job."""
    proj = tiny["project_dir"]
    out = tmp_path / "Polish"
    argv = ["motion_refine", "--i", tiny["particles"], "--f", tiny["postprocess"],
            "--corr_mic", tiny["corrected_micrographs"], "--o", out, "--combine_frames",
            "--s_vel", "0.4", "--s_div", "1155", "--s_acc", "2.7", "--only_do_unfinished"]
    res = cli(argv, proj)
    assert res.returncode == 0, res.stderr
    victim = Path(tiny["movies"][1]).stem
    for f in (out / "Movies").glob(f"{victim}_*"):
        f.unlink()
    (out / "shiny.star").unlink()
    before = final_names(snapshot(out))
    res = cli(argv, proj, fsize=CAP)
    assert res.returncode != 0
    after = final_names(snapshot(out))
    for rel, digest in before.items():
        if not rel.endswith((".png", ".pdf", ".eps", "bfactors.star")):
            assert after.get(rel) == digest, f"{rel} changed or vanished after the failed rerun"
    for rel in after:
        check_readable(out / rel)
    assert not (out / "Movies" / f"{victim}_shiny.mrcs").exists()
    res = cli(argv, proj)
    assert res.returncode == 0, res.stderr
    check_readable(out / "Movies" / f"{victim}_shiny.mrcs")
    check_readable(out / "shiny.star")


@pytest.mark.parametrize("name", ["postprocess", "mask_create", "local_resolution"])
def test_output_folder_blocked_by_a_file(tiny, name, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    argv = [str(a).replace("OUT", str(blocker / "job")) for a in _commands(tiny, Path("OUT"))[name]]
    res = cli(argv, tiny["project_dir"])
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "not_a_folder" in res.stderr


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_unwritable_output_folder(tiny, tmp_path):
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        res = cli(["postprocess", "--i", tiny["half1"], "--o", ro / "job" / "postprocess"], tiny["project_dir"])
    finally:
        ro.chmod(0o700)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and "readonly" in res.stderr
