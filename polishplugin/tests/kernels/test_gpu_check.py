"""bench/gpu_check.py on fake inputs: the vendor-driver finder and .icd writer, the wheel install without pip,
the JUnit parser, the table, and the whole orchestration driven through a fake interpreter (no OpenCL needed)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import zipfile

import pytest

from bench import gpu_check as gc


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF fake")
    return path


def test_finder_prefers_the_gpu_driver_and_the_soname(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    nv1 = _touch(a / "libnvidia-opencl.so.1")
    _touch(a / "libnvidia-opencl.so.580.95.05")
    _touch(a / "libpocl.so.2")
    amd = _touch(b / "libamdocl64.so")
    found = gc.find_vendor_libs([str(a), str(b)], fallback=True)
    assert found == {"nvidia": str(nv1), "amdocl64": str(amd)}  # no PoCL once a GPU driver exists
    # no .so.1: the shortest versioned name is taken
    c = tmp_path / "c"
    _touch(c / "libnvidia-opencl.so.580.95.05")
    short = _touch(c / "libnvidia-opencl.so.580")
    assert gc.find_vendor_libs([str(c)]) == {"nvidia": str(short)}
    # PoCL only as the fallback
    d = tmp_path / "d"
    pocl = _touch(d / "libpocl.so.2")
    assert gc.find_vendor_libs([str(d)]) == {}
    assert gc.find_vendor_libs([str(d)], fallback=True) == {"pocl": str(pocl)}


def test_icd_files_name_the_library(tmp_path):
    lib = _touch(tmp_path / "lib" / "libnvidia-opencl.so.1")
    files = gc.write_icd_dir({"nvidia": str(lib)}, str(tmp_path / "icd"))
    assert files == [str(tmp_path / "icd" / "nvidia.icd")]
    assert (tmp_path / "icd" / "nvidia.icd").read_text() == f"{lib}\n"
    # the CLI: --search folder first, exit 0, the .icd path printed
    assert gc.main(["find-icd", "--dest", str(tmp_path / "icd2"), "--search", str(lib.parent)]) == 0
    assert (tmp_path / "icd2" / "nvidia.icd").read_text() == f"{lib}\n"


def test_library_dirs_read_ldconfig(tmp_path, monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/x/ld:/x/ld")
    text = ("3 libs found in cache `/etc/ld.so.cache'\n"
            "\tlibnvidia-opencl.so.1 (libc6,x86-64) => /drv/lib64/libnvidia-opencl.so.1\n"
            "\tlibc.so.6 (libc6,x86-64) => /other/libc.so.6\n")
    dirs = gc.library_dirs(["/first"], ldconfig_text=text)
    assert dirs[:2] == ["/first", "/x/ld"] and dirs.count("/x/ld") == 1
    assert "/drv/lib64" in dirs and "/other" not in dirs
    assert "/usr/local/nvidia/lib64" in dirs


def test_wheels_unzipped_without_pip(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "fakepkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("fakepkg/__init__.py", "VALUE = 42\n")
        z.writestr("fakepkg-1.0.dist-info/METADATA", "Name: fakepkg\nVersion: 1.0\n")
    msg = gc.install_wheels(str(wheels), str(tmp_path / "site"), python=str(tmp_path / "no-python"))
    assert msg.startswith("unzipped 1 wheels")
    assert (tmp_path / "site" / "fakepkg" / "__init__.py").read_text() == "VALUE = 42\n"
    with pytest.raises(FileNotFoundError, match="gpu_wheels.sh"):
        gc.install_wheels(str(tmp_path / "empty"), str(tmp_path / "site2"))


def test_junit_counts(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite name="pytest">'
                   '<testcase classname="t.a" name="ok"/>'
                   '<testcase classname="t.a" name="bad"><failure message="assert 1 == 2"/></testcase>'
                   '<testcase classname="t.b" name="err"><error message="boom"/></testcase>'
                   '<testcase classname="t.b" name="sk"><skipped message="no OpenCL: none"/></testcase>'
                   '</testsuite></testsuites>')
    r = gc.parse_junit(str(xml))
    assert (r["passed"], r["failed"], r["skipped"]) == (1, 2, 1)
    assert r["failures"] == ["t.a::bad: assert 1 == 2", "t.b::err: boom"]
    assert r["skips"] == ["t.b::sk: no OpenCL: none"]
    assert gc.parse_junit(str(tmp_path / "missing.xml"))["passed"] == 0


def test_table_rows_and_ratio():
    report = {"host": "h", "date": "2026-01-01 00:00 UTC", "command": "bash bench/gpu_check.sh", "wall_s": 12.0,
              "budget_s": 450, "python": "3.12.3", "versions": {"numpy": "2.5.2"},
              "device": {"index": 0, "name": "NVIDIA H200", "kind": "GPU", "platform": "NVIDIA CUDA"},
              "devices": [{"index": 0, "name": "NVIDIA H200", "kind": "GPU", "platform": "NVIDIA CUDA"}],
              "tests": [dict(name="tests: k", status="ok", seconds=3.0, passed=5, failed=0, skipped=1,
                             failures=[], skips=["t::s: why"])],
              "bench": [{"case": "estep", "size": "b32", "results": {
                  "numpy": {"status": "ok", "time_s": 2.0, "notes": {"err": 0.5}},
                  "opencl": {"status": "ok", "time_s": 0.5, "notes": {}}}},
                  {"case": "postprocess", "size": "256", "results": {"numpy": {"status": "ok", "time_s": 3.25}}},
                  {"case": "tsc.terms", "size": "256", "results": {
                      "numpy": {"status": "ok", "time_s": 1.0},
                      "opencl": {"status": "time-out", "error": "after 60 s: ..."}}}]}
    md = gc.render_markdown(report)
    date = "2026-01-01 00:00 UTC"
    assert f"| tests: k | 6 tests | - | 3 | - | NVIDIA H200 | {date} | 5 passed, 0 failed, 1 skipped |" in md
    assert "| estep | b32 | 2 | 0.5 | 4.00 | NVIDIA H200 | 2026-01-01 00:00 UTC | numpy: err=0.5 |" in md
    assert "| postprocess | 256 | 3.25 | - | - | - | 2026-01-01 00:00 UTC |  |" in md
    assert "| tsc.terms | 256 | 1 | time-out | - | NVIDIA H200 |" in md
    assert "- tsc.terms 256 opencl: after 60 s: ..." in md and "- t::s: why" in md


FAKE_PYTHON = """\
#!{python}
# Stands in for the GPU machine's interpreter: no device until OCL_ICD_VENDORS names a folder with nvidia.icd.
import json, os, sys, time
args = sys.argv[1:]
icd = os.environ.get("OCL_ICD_VENDORS", "")
gpu = bool(icd) and os.path.exists(os.path.join(icd, "nvidia.icd"))
def out(flag):
    return args[args.index(flag) + 1]
if args[:2] == ["-m", "pytest"]:
    xml = [a for a in args if a.startswith("--junitxml=")][0].split("=", 1)[1]
    open(xml, "w").write('<testsuite><testcase classname="k" name="a"/><testcase classname="k" name="b"/></testsuite>')
elif args[1] == "devices":
    devs = [dict(index=0, platform="NVIDIA CUDA", name="Fake GPU", kind="GPU", global_mem_mb=1000, compute_units=9,
                 platform_version="OpenCL 3.0 CUDA", device_version="OpenCL 3.0 CUDA", driver="580")] if gpu else []
    json.dump({{"python": "3.12.3", "versions": {{"numpy": "2.5.2", "pyopencl": "1", "mrcfile": "1",
               "starfile": "1"}}, "devices": devs, "error": None if gpu else "no OpenCL platform found"}},
              open(out("--json"), "w"))
elif args[1] == "case":
    name, size, backend = args[2:5]
    if name == "slow":
        time.sleep(30)
    t = {{"numpy": 3.0, "opencl": 1.5}}[backend]
    dev = os.environ.get("POLISHPLUGIN_OPENCL_DEVICE")
    json.dump({{"time_s": t, "notes": {{"dev": dev}}, "peak_mb": 1.0, "rss_mb": 2.0}}, open(out("--json"), "w"))
"""


def test_whole_check_with_a_fake_interpreter(tmp_path, monkeypatch):
    fake = tmp_path / "python"
    fake.write_text(textwrap.dedent(FAKE_PYTHON.format(python=sys.executable)))
    fake.chmod(0o755)
    lib = _touch(tmp_path / "drv" / "libnvidia-opencl.so.1")
    monkeypatch.setattr(gc, "TEST_STAGES", (("tests: fake", ["x"], "opencl", 20),
                                            ("tests: second", ["y"], "opencl", 20)))
    monkeypatch.setattr(gc, "BENCH_PLAN", (("estep", "b32", ("numpy", "opencl"), 20), ("slow", "1", ("numpy",), 2)))
    out = tmp_path / "out"
    assert gc.main(["all", "--out", str(out), "--work", str(tmp_path / "work"), "--python", str(fake),
                    "--search", str(lib.parent), "--budget", "120", "--command", "fake"]) == 0
    md = (out / "gpu_check.md").read_text()
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["device"]["name"] == "Fake GPU"
    assert f"registered nvidia: {lib}" in report["icd"]
    assert (tmp_path / "work" / "icd" / "nvidia.icd").read_text() == f"{lib}\n"
    assert "| estep | b32 | 3 | 1.5 | 2.00 | Fake GPU |" in md
    assert "opencl: dev=0" in md  # the device index reached the case through POLISHPLUGIN_OPENCL_DEVICE
    assert "| slow | 1 | time-out | - | - | - |" in md
    assert [t["name"] for t in report["tests"]] == ["tests: fake", "tests: second"]
    assert "| tests: fake | 2 tests | - |" in md and "2 passed, 0 failed, 0 skipped" in md
    assert os.path.exists(out / "gpu_check.log")
