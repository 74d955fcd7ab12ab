"""The GPU check: OpenCL kernel tests and bench timings (numpy vs OpenCL) on a machine with no network.

Run through ``bash bench/gpu_check.sh`` (which picks the interpreter and the environment); the subcommands:

``all``        the whole check: install the carried wheels when pyopencl/mrcfile/starfile are missing, find and
               register the vendor's OpenCL driver when pyopencl sees no GPU, print the devices, run the OpenCL
               tests and the bench cases, each in its own process under its own time limit inside one overall
               budget, and write ``gpu_check.md`` (the table) + ``gpu_check.json`` (raw) after every stage.
``devices``    print the OpenCL devices and package versions of this interpreter (JSON with ``--json``).
``find-icd``   search for vendor OpenCL libraries and write one ``.icd`` file per vendor into ``--dest``.
``install``    install the wheels of ``--wheels`` into ``--target`` (pip --no-index --no-deps, or unzip).
``case``       time one bench case (``bench/case_*.py``) with one backend and print the result as JSON.

Why ``--target`` + PYTHONPATH and not a ``venv --system-site-packages``: the GPU machines' python3 is itself a
virtual environment (/opt/torch/.venv), and a venv made from a venv sees the BASE interpreter's site-packages,
not numpy/scipy/pandas of /opt/torch/.venv (checked with a venv made from a venv here).

"numpy" rows run with pyopencl hidden (``sys.modules['pyopencl'] = None``), so no program falls back to the
device on its own (``motion_refine`` uses OpenCL whenever a device exists); the "OpenCL" row of
``motion_refine`` (registered for numpy only) is the same case with ``--device opencl``.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import glob
import importlib.metadata
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: vendor -> library name patterns, best first (the loader needs ONE path per vendor)
GPU_VENDOR_LIBS = (
    ("nvidia", ("libnvidia-opencl.so.1", "libnvidia-opencl.so*")),
    ("amdocl64", ("libamdocl64.so", "libamdocl64.so*")),
    ("intel", ("libigdrcl.so", "libigdrcl.so*")),
)
#: used only when no GPU library is found and pyopencl sees no platform at all
FALLBACK_LIBS = (("pocl", ("libpocl.so.2", "libpocl.so*", "libpocl-*.so")),)
DEFAULT_LIB_DIRS = (
    "/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
    "/usr/lib64", "/usr/lib", "/usr/local/lib", "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
    "/opt/rocm/lib", "/opt/rocm/opencl/lib", "/opt/intel/opencl/lib64",
)

#: OpenCL tests: (stage name, pytest paths, -m expression, timeout s)
TEST_STAGES = (
    ("tests: kernels + TSC + motion kernels",
     ["polishplugin/tests/kernels", "polishplugin/tests/core/test_motion_tsc.py",
      "polishplugin/tests/core/test_motion_estimate.py"], "opencl", 150),
    ("tests: refine3d + motion_refine + polish programs on OpenCL",
     ["polishplugin/tests/programs/test_refine3d.py", "polishplugin/tests/programs/test_motion_refine.py",
      "polishplugin/tests/reliability/test_determinism.py"], "opencl and not slow", 150),
)
#: bench cases: (case, size, backends, timeout s per backend), in the order they run (the second test stage runs
#: before the last case, the whole refine: it gets what the budget has left)
BENCH_PLAN = (
    ("estep", "b32_c24_g2_n16", ("numpy", "opencl"), 60),
    ("estep", "b32_c24_l2_n16", ("numpy", "opencl"), 60),
    ("projector.project", "64", ("numpy", "opencl"), 60),
    ("backprojector.insert", "64", ("numpy", "opencl"), 60),
    ("reconstruct.round_trip", "64", ("numpy", "opencl"), 60),
    ("tsc.terms", "256", ("numpy", "opencl"), 60),
    ("refine3d.estep", "n100_b32_o2", ("numpy", "opencl"), 60),
    ("motion_refine", "tiny", ("numpy", "opencl"), 90),
    ("postprocess", "256", ("numpy",), 60),
    ("local_resolution.fast", "256", ("numpy",), 90),
    ("refine3d.program", "synthetic", ("numpy", "opencl"), 150),
)
MIN_STAGE_S = 10.0  # a stage is not started with less budget left


# ------------------------------------------------------------------------------------------ OpenCL drivers
def library_dirs(extra=(), ldconfig_text: str | None = None) -> list[str]:
    """Folders to search for vendor libraries: ``extra``, LD_LIBRARY_PATH, the usual places, then the folders of
    every OpenCL-looking library that ``ldconfig -p`` knows (``ldconfig_text``: its output, for tests)."""
    dirs = list(extra) + [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    dirs += list(DEFAULT_LIB_DIRS)
    if ldconfig_text is None:
        try:
            ldconfig_text = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            ldconfig_text = ""
    patterns = [p for _, pats in GPU_VENDOR_LIBS + FALLBACK_LIBS for p in pats]
    for line in ldconfig_text.splitlines():
        if "=>" not in line:
            continue
        path = line.split("=>", 1)[1].strip()
        if any(fnmatch.fnmatch(os.path.basename(path), p) for p in patterns):
            dirs.append(os.path.dirname(path))
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def find_vendor_libs(dirs, fallback: bool = False) -> dict[str, str]:
    """``{vendor: library path}`` of the OpenCL drivers found in ``dirs`` (first pattern, then first folder,
    then the shortest name wins: ``libnvidia-opencl.so.1`` before ``libnvidia-opencl.so.580.95``).
    ``fallback``: PoCL too, when no GPU driver is found."""
    def first(patterns):
        for pat in patterns:
            for d in dirs:
                hits = sorted((h for h in glob.glob(os.path.join(d, pat)) if os.path.isfile(h)),
                              key=lambda h: (len(os.path.basename(h)), h))
                if hits:
                    return os.path.abspath(hits[0])
        return None

    found = {}
    for vendor, patterns in GPU_VENDOR_LIBS:
        path = first(patterns)
        if path:
            found[vendor] = path
    if not found and fallback:
        for vendor, patterns in FALLBACK_LIBS:
            path = first(patterns)
            if path:
                found[vendor] = path
    return found


def write_icd_dir(libs: dict[str, str], dest: str) -> list[str]:
    """One ``<vendor>.icd`` per library in ``dest`` (the file holds the library's absolute path, as the ICD
    loader reads it); point ``OCL_ICD_VENDORS`` at ``dest``.  Returns the files written."""
    os.makedirs(dest, exist_ok=True)
    written = []
    for vendor, path in sorted(libs.items()):
        name = os.path.join(dest, f"{vendor}.icd")
        _write_text(name, path + "\n")
        written.append(name)
    return written


def existing_icds(folder: str = "/etc/OpenCL/vendors") -> dict[str, str]:
    """``{file: content}`` of the system's .icd files (reported, not changed)."""
    out = {}
    for f in sorted(glob.glob(os.path.join(folder, "*.icd"))):
        try:
            with open(f) as fh:
                out[f] = fh.read().strip()
        except OSError as exc:
            out[f] = f"unreadable: {exc}"
    return out


# ------------------------------------------------------------------------------------------ wheels
def install_wheels(wheels_dir: str, target: str, python: str = sys.executable) -> str:
    """Install every wheel of ``wheels_dir`` into ``target`` without network and without dependencies
    (pip when the interpreter has it, else each wheel unzipped: a wheel is a zip of its site-packages files)."""
    wheels = sorted(glob.glob(os.path.join(wheels_dir, "*.whl")))
    if not wheels:
        raise FileNotFoundError(f"no wheels in {wheels_dir}: run bash bench/gpu_wheels.sh where there is network")
    os.makedirs(target, exist_ok=True)
    try:
        has_pip = subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0
    except OSError:
        has_pip = False
    if has_pip:
        r = subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                            "--no-cache-dir", "--upgrade", "--target", target, *wheels],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return f"pip installed {len(wheels)} wheels into {target}"
        print(f"pip install failed ({r.stderr.strip()[-500:]}); unzipping the wheels instead", flush=True)
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            z.extractall(target)
    return f"unzipped {len(wheels)} wheels into {target}"


# ------------------------------------------------------------------------------------------ devices
def probe() -> dict:
    """Package versions and OpenCL devices of this interpreter (never raises)."""
    info: dict = {"python": platform.python_version(), "versions": {}, "devices": [], "error": None}
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    for mod in ("numpy", "scipy", "pandas", "pyopencl", "mrcfile", "starfile", "pytest"):
        try:
            m = __import__(mod)
            info["versions"][mod] = getattr(m, "__version__", None) or importlib.metadata.version(mod)
        except Exception as exc:  # a missing package is a finding, not a crash
            info["versions"][mod] = f"missing ({type(exc).__name__})"
    try:
        import pyopencl as cl

        from polishplugin.core.opencl import runtime

        extra = {}
        for pi, plat in enumerate(cl.get_platforms()):
            for di, dev in enumerate(plat.get_devices()):
                extra[(pi, di)] = (plat.version.strip(), dev.version.strip(), dev.driver_version.strip())
        for d in runtime.list_devices():
            pv, dv, drv = extra.get((d.platform_index, d.device_index), ("?", "?", "?"))
            info["devices"].append(dict(index=d.index, platform=d.platform, name=d.name, kind=d.kind,
                                        global_mem_mb=d.global_mem_mb, compute_units=d.compute_units,
                                        platform_version=pv, device_version=dv, driver=drv))
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def pick_device(devices: list[dict]) -> dict | None:
    """The device the check runs on: the first GPU, else the first device."""
    gpus = [d for d in devices if d.get("kind") == "GPU"]
    return (gpus or devices or [None])[0]


# ------------------------------------------------------------------------------------------ one bench case
def _size(text: str):
    return int(text) if text.isdigit() else text


def run_case(name: str, size: str, backend: str) -> dict:
    """Time one registered bench case in THIS process (one warm-up when the case has one, one timed run)."""
    if backend == "numpy":
        sys.modules["pyopencl"] = None  # type: ignore[assignment]  # import fails -> every path is numpy
    sys.path.insert(0, ROOT)
    from bench.__main__ import import_cases, time_case
    from bench.cases import CASES

    failed = import_cases()
    if name not in CASES:
        raise KeyError(f"no bench case {name!r} ({'; '.join(failed) or 'not registered'})")
    case = CASES[name]
    use = backend
    if backend not in case.backends:
        if backend != "opencl" or name != "motion_refine":
            raise ValueError(f"bench case {name} has no {backend} backend")
        from polishplugin.programs import motion_refine

        main = motion_refine.main

        def main_on_device(args):
            args.device = args.device or "opencl"
            return main(args)

        motion_refine.main = main_on_device
        use = "numpy"
    r = time_case(case, _size(size), use, True)
    return {"time_s": r["time_s"], "notes": r["notes"], "peak_mb": r["peak_mb"], "rss_mb": r["rss_mb"]}


# ------------------------------------------------------------------------------------------ processes
def run_limited(cmd: list[str], timeout: float, env: dict, log) -> tuple[int | None, float, str]:
    """Run ``cmd`` in its own process group under ``timeout`` seconds; output appended to ``log``.
    Returns (exit status or None on time-out, seconds, last 2000 characters of the output)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(1.0, timeout))
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        rc = None
    dt = time.time() - t0
    log.write(f"\n$ {' '.join(cmd)}\n{out}\n[exit {rc}, {dt:.1f} s]\n")
    log.flush()
    return rc, dt, out[-2000:]


def parse_junit(path: str) -> dict:
    """Counts and the failed/skipped test ids of a pytest ``--junitxml`` file."""
    res = {"passed": 0, "failed": 0, "skipped": 0, "failures": [], "skips": []}
    if not os.path.exists(path):
        return res
    for tc in ET.parse(path).getroot().iter("testcase"):
        tid = f"{tc.get('classname', '')}::{tc.get('name', '')}"
        bad = tc.find("failure") if tc.find("failure") is not None else tc.find("error")
        skip = tc.find("skipped")
        if bad is not None:
            res["failed"] += 1
            res["failures"].append(f"{tid}: {(bad.get('message') or '').strip()[:300]}")
        elif skip is not None:
            res["skipped"] += 1
            res["skips"].append(f"{tid}: {(skip.get('message') or '').strip()[:200]}")
        else:
            res["passed"] += 1
    return res


# ------------------------------------------------------------------------------------------ the table
def _fmt_s(r: dict | None) -> str:
    if not r:
        return "-"
    if r.get("status") == "ok":
        return f"{r['time_s']:.3g}"
    return r.get("status", "?")


def render_markdown(report: dict) -> str:
    """The report as markdown: a header, the test rows, the bench rows (case, size, numpy s, OpenCL s,
    numpy/OpenCL, device, date, notes) and the failures below."""
    dev = report.get("device") or {}
    devname = dev.get("name", "no OpenCL device")
    date = report.get("date", "")
    lines = [f"## GPU check: {report.get('host', '?')}, {date}", "",
             f"- command: `{report.get('command', '')}`; wall {report.get('wall_s', 0):.0f} s "
             f"(budget {report.get('budget_s', 0):.0f} s)",
             f"- python {report.get('python', '?')}; "
             + ", ".join(f"{k} {v}" for k, v in sorted(report.get("versions", {}).items())),
             f"- device: {devname} ({dev.get('platform', '-')}, {dev.get('device_version', '-')}, driver "
             f"{dev.get('driver', '-')}, {dev.get('global_mem_mb', '-')} MB, {dev.get('compute_units', '-')} CUs)",
             f"- OpenCL drivers: {report.get('icd', 'as the system has them')}"]
    for d in report.get("devices", []):
        lines.append(f"  - device {d['index']}: {d['kind']} {d['name']} ({d['platform']})")
    lines += ["", "| case | size | numpy s | OpenCL s | numpy/OpenCL | device | date | notes |",
              "|---|---|---|---|---|---|---|---|"]
    for t in report.get("tests", []):
        counts = f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped"
        status = "" if t["status"] == "ok" else f"{t['status']}; "
        lines.append(f"| {t['name']} | {t['passed'] + t['failed'] + t['skipped']} tests | - | {t['seconds']:.0f} "
                     f"| - | {devname} | {date} | {status}{counts} |")
    for row in report.get("bench", []):
        np_r, cl_r = row["results"].get("numpy"), row["results"].get("opencl")
        ratio = "-"
        if np_r and cl_r and np_r.get("status") == "ok" and cl_r.get("status") == "ok" and cl_r["time_s"] > 0:
            ratio = f"{np_r['time_s'] / cl_r['time_s']:.2f}"
        notes = "; ".join(f"{b}: {_fmt_notes(r)}" for b, r in row["results"].items() if _fmt_notes(r))
        lines.append(f"| {row['case']} | {row['size']} | {_fmt_s(np_r)} | {_fmt_s(cl_r)} | {ratio} | "
                     f"{devname if cl_r else '-'} | {date} | {notes} |")
    problems = [f for t in report.get("tests", []) for f in t.get("failures", []) + t.get("skips", [])]
    problems += [f"{row['case']} {row['size']} {b}: {r.get('error', '')}" for row in report.get("bench", [])
                 for b, r in row["results"].items() if r.get("status") != "ok"]
    if problems:
        lines += ["", "Failures, skips and time-outs:", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def _fmt_notes(r: dict) -> str:
    notes = r.get("notes") or {}
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in notes.items())


def _write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ the whole check
def check_all(args) -> int:
    t_start = time.time()
    deadline = t_start + args.budget
    os.makedirs(args.out, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(work, exist_ok=True)
    md_path = os.path.join(args.out, f"{args.name}.md")
    json_path = os.path.join(args.out, f"{args.name}.json")
    log = open(os.path.join(args.out, f"{args.name}.log"), "w")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONUNBUFFERED"] = "1"
    me = [args.python, os.path.join(HERE, "gpu_check.py")]
    report: dict = {"host": socket.gethostname(), "command": args.command or " ".join(sys.argv),
                    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    "budget_s": args.budget, "tests": [], "bench": [], "steps": []}

    def save():
        report["wall_s"] = time.time() - t_start
        _write_text(json_path, json.dumps(report, indent=1, sort_keys=True, default=str))
        _write_text(md_path, render_markdown(report))

    def say(msg):
        print(msg, flush=True)
        report["steps"].append(msg)

    def probe_env() -> dict:
        pj = os.path.join(work, "probe.json")
        if os.path.exists(pj):
            os.remove(pj)
        rc, _, out = run_limited(me + ["devices", "--json", pj], min(90.0, deadline - time.time()), env, log)
        if rc != 0 or not os.path.exists(pj):
            return {"devices": [], "versions": {}, "error": f"probe failed (exit {rc}): {out[-500:]}"}
        with open(pj) as fh:
            return json.load(fh)

    # 1. packages: the carried wheels when pyopencl/mrcfile/starfile are missing (or always, --wheels-always)
    info = probe_env()
    missing = [m for m in ("pyopencl", "mrcfile", "starfile") if str(info["versions"].get(m, "")).startswith("missing")]
    if missing or args.wheels_always:
        site = os.path.join(work, "site")
        try:
            say(install_wheels(args.wheels, site, args.python) + f" (missing: {', '.join(missing) or 'none'})")
            env["PYTHONPATH"] = os.pathsep.join([site, env["PYTHONPATH"]])
        except Exception as exc:
            say(f"wheel install failed: {type(exc).__name__}: {exc}")
        info = probe_env()
    # 2. the vendor's driver when no GPU is visible
    report["icd"] = "as the system has them: " + (json.dumps(existing_icds()) if existing_icds() else "none")
    if not any(d["kind"] == "GPU" for d in info["devices"]) and not args.no_icd:
        extra = [d for d in (args.search or "").split(":") if d]
        libs = find_vendor_libs(library_dirs(extra), fallback=not info["devices"])
        say(f"no GPU visible ({info.get('error') or 'devices: ' + str([d['name'] for d in info['devices']])});"
            f" vendor libraries found: {libs or 'none'}")
        if libs:
            icd_dir = os.path.join(work, "icd")
            files = write_icd_dir(libs, icd_dir)
            env["OCL_ICD_VENDORS"] = icd_dir
            again = probe_env()
            if len(again["devices"]) > len(info["devices"]):
                info = again
                report["icd"] = f"registered {', '.join(f'{k}: {v}' for k, v in libs.items())} " \
                                f"(OCL_ICD_VENDORS={icd_dir}: {', '.join(os.path.basename(f) for f in files)})"
            else:
                env.pop("OCL_ICD_VENDORS")
                say(f"registering {libs} did not add a device ({again.get('error')})")
    report.update(python=info.get("python"), versions=info["versions"], devices=info["devices"],
                  device=pick_device(info["devices"]), probe_error=info.get("error"))
    if report["device"] is not None:
        env["POLISHPLUGIN_OPENCL_DEVICE"] = str(report["device"]["index"])
    for d in info["devices"]:
        say(f"OpenCL device {d['index']}: {d['kind']} {d['name']} | {d['platform']} {d['platform_version']} | "
            f"{d['device_version']} | driver {d['driver']} | {d['global_mem_mb']} MB | {d['compute_units']} CUs")
    if not info["devices"]:
        say(f"no OpenCL device: {info.get('error')}")
    save()

    # 3. the OpenCL tests (against numpy), then 4. the bench cases
    def test_stage(name, paths, mark, timeout):
        left = deadline - time.time()
        if left < MIN_STAGE_S:
            report["tests"].append(dict(name=name, status="not run (budget)", seconds=0, passed=0, failed=0,
                                        skipped=0, failures=[], skips=[]))
            return
        xml = os.path.join(work, f"junit{len(report['tests'])}.xml")
        rc, dt, out = run_limited([args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", mark,
                                   f"--junitxml={xml}", *paths], min(timeout, left), env, log)
        res = parse_junit(xml)
        status = "ok" if rc == 0 and res["failed"] == 0 else ("time-out" if rc is None else f"exit {rc}")
        if rc not in (0, None) and res["passed"] + res["failed"] + res["skipped"] == 0:
            res["failures"].append(f"{name}: {out[-300:]}")
        report["tests"].append(dict(name=name, status=status, seconds=dt, **res))
        say(f"{name}: {status}, {res['passed']} passed, {res['failed']} failed, {res['skipped']} skipped, {dt:.0f} s")
        save()

    def bench_row(case, size, backends, timeout):
        row = {"case": case, "size": size, "results": {}}
        report["bench"].append(row)
        for b in backends:
            if b == "opencl" and report["device"] is None:
                row["results"][b] = {"status": "no device", "error": "no OpenCL device"}
                continue
            left = deadline - time.time()
            if left < MIN_STAGE_S:
                row["results"][b] = {"status": "not run (budget)", "error": "budget spent"}
                continue
            rj = os.path.join(work, "case.json")
            if os.path.exists(rj):
                os.remove(rj)
            rc, dt, out = run_limited(me + ["case", case, size, b, "--json", rj], min(timeout, left), env, log)
            if rc == 0 and os.path.exists(rj):
                with open(rj) as fh:
                    r = json.load(fh)
                r.update(status="ok", wall_s=dt)
            else:
                r = {"status": "time-out" if rc is None else "failed", "wall_s": dt,
                     "error": f"after {dt:.0f} s: " + " ".join(out.strip().splitlines()[-3:])[-400:]}
            row["results"][b] = r
            say(f"bench {case} {size} {b}: {_fmt_s(r)}{' s' if r['status'] == 'ok' else ''} "
                f"({dt:.0f} s with set-up)")
            save()

    stages = ([("test",) + TEST_STAGES[0]] + [("bench",) + p for p in BENCH_PLAN[:-1]]
              + [("test",) + TEST_STAGES[1], ("bench",) + BENCH_PLAN[-1]])
    for kind, *stage in stages:
        if args.only and not any(str(stage[0]).startswith(o) for o in args.only):
            continue
        (test_stage if kind == "test" else bench_row)(*stage)
    save()
    log.close()
    print(f"wrote {md_path} and {json_path} ({time.time() - t_start:.0f} s)", flush=True)
    with open(md_path) as fh:
        print(fh.read())
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/gpu_check.py", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("all", help="the whole check")
    a.add_argument("--out", required=True, help="folder for <name>.md/.json/.log")
    a.add_argument("--name", default="gpu_check", help="file name stem of the outputs")
    a.add_argument("--work", default="", help="scratch folder (wheels' site, .icd files); default: a temp folder")
    a.add_argument("--wheels", default=os.path.join(HERE, "wheels"))
    a.add_argument("--wheels-always", action="store_true", help="install the wheels even when nothing is missing")
    a.add_argument("--python", default=sys.executable, help="interpreter of the tests and cases")
    a.add_argument("--budget", type=float, default=450.0, help="seconds for everything (default 450)")
    a.add_argument("--search", default=os.environ.get("GPU_CHECK_ICD_SEARCH", ""),
                   help="extra folders (a:b) to search for vendor OpenCL libraries")
    a.add_argument("--no-icd", action="store_true", help="never register a driver")
    a.add_argument("--only", nargs="+", help="only the stages whose name starts so (case names, 'tests:')")
    a.add_argument("--command", default="", help="the command line to print in the report")
    d = sub.add_parser("devices")
    d.add_argument("--json", default="")
    f = sub.add_parser("find-icd")
    f.add_argument("--dest", required=True)
    f.add_argument("--search", default="")
    f.add_argument("--fallback", action="store_true", help="PoCL too when no GPU driver is found")
    i = sub.add_parser("install")
    i.add_argument("--wheels", default=os.path.join(HERE, "wheels"))
    i.add_argument("--target", required=True)
    c = sub.add_parser("case")
    c.add_argument("name")
    c.add_argument("size")
    c.add_argument("backend", choices=("numpy", "opencl"))
    c.add_argument("--json", default="")
    args = ap.parse_args(argv)
    if args.cmd == "all":
        return check_all(args)
    if args.cmd == "devices":
        info = probe()
        text = json.dumps(info, indent=1)
        if args.json:
            _write_text(args.json, text)
        print(text)
        return 0
    if args.cmd == "find-icd":
        libs = find_vendor_libs(library_dirs([x for x in args.search.split(":") if x]), fallback=args.fallback)
        for path in write_icd_dir(libs, args.dest):
            print(path)
        return 0 if libs else 1
    if args.cmd == "install":
        print(install_wheels(args.wheels, args.target))
        return 0
    r = run_case(args.name, args.size, args.backend)
    text = json.dumps(r, default=str)
    if args.json:
        _write_text(args.json, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
