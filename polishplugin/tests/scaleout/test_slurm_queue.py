"""A protocol through Scipion's queue submission on a real (single-node, loopback) SLURM.

``scripts/slurm_up.sh`` starts munged + slurmctld + slurmd with everything inside a temporary folder
(own munge key/socket, own slurm.conf with ClusterName, SlurmctldHost=localhost, NodeName=localhost,
PartitionName=debug, proctrack/linuxproc, task/none, select/cons_tres, SlurmUser=root).  A child
process (:mod:`polishplugin.tests.scaleout.slurm_child`) writes a Scipion hosts.conf with a SLURM queue
(QUEUE_SYSTEM name, SUBMIT_COMMAND ``sbatch %_(JOB_SCRIPT)s``, SUBMIT_TEMPLATE, CANCEL_COMMAND,
CHECK_COMMAND, QUEUES ``{"debug": [...]}``) and runs ProtPolishMaskCreate with ``_useQueue=True``.

Without SLURM: in CI (``CI=true``, root) the packages are installed (``slurm_up.sh --install``, apt);
elsewhere the tests skip with "no SLURM".
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "slurm_up.sh"
SBIN = os.pathsep.join(["/usr/sbin", "/sbin"])


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + os.pathsep + SBIN
    return env


def _have_slurm() -> bool:
    path = _env()["PATH"]
    return all(shutil.which(p, path=path) for p in ("slurmctld", "slurmd", "munged", "sbatch", "squeue"))


def _ensure_slurm() -> None:
    """Install SLURM in CI (root + apt); skip with "no SLURM" elsewhere."""
    if _have_slurm():
        if os.geteuid() != 0:
            pytest.skip("no SLURM daemons we may start: the single-node SLURM needs root (SlurmUser=root)")
        return
    if os.environ.get("CI") == "true" and os.geteuid() == 0:
        res = subprocess.run(["bash", str(SCRIPT), "--install"], capture_output=True, text=True, env=_env(),
                             timeout=1200)
        assert res.returncode == 0 and _have_slurm(), f"installing SLURM failed: {res.stdout}{res.stderr}"
        return
    pytest.skip("no SLURM (slurmctld/slurmd/munged/sbatch not installed; CI installs slurm-wlm + munge)")


def _free_port_pair() -> int:
    """A port p with p and p + 1 free on loopback (slurmctld, slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of loopback ports")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    _ensure_slurm()
    folder = tmp_path_factory.mktemp("slurm")
    env = dict(_env(), SLURM_PORT=str(_free_port_pair()))
    res = subprocess.run(["bash", str(SCRIPT), str(folder)], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, f"slurm_up.sh failed:\n{res.stdout}\n{res.stderr}"
    conf = folder / "slurm.conf"
    assert f"export SLURM_CONF={conf}" in res.stdout
    yield {"dir": folder, "conf": str(conf), "env": dict(env, SLURM_CONF=str(conf))}
    subprocess.run(["bash", str(SCRIPT), "--stop", str(folder)], env=env, timeout=60)


def test_sbatch_runs_a_job(slurm, tmp_path):
    """The private cluster itself: one idle node in partition debug, a batch job runs and writes output."""
    env = slurm["env"]
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%P %t %D"], capture_output=True, text=True, env=env, timeout=30)
    assert sinfo.stdout.split()[:3] == ["debug*", "idle", "1"], sinfo.stdout + sinfo.stderr
    out = tmp_path / "job.out"
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH -o {out}\necho answer $((6 * 7))\n")
    res = subprocess.run(["sbatch", "--wait", str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert out.read_text().strip() == "answer 42"


def test_protocol_through_scipion_slurm_queue(slurm, tmp_path):
    """ProtPolishMaskCreate with _useQueue=True: submitted by Scipion with sbatch, runs to FINISHED."""
    pytest.importorskip("pyworkflow", reason="pyworkflow not installed (Scipion tests skipped)")
    env = {k: v for k, v in slurm["env"].items() if not k.startswith("SCIPION_")}
    env.update(MPLBACKEND="Agg", PATH=str(Path(sys.executable).parent) + os.pathsep + env["PATH"])
    res = subprocess.run([sys.executable, "-m", "polishplugin.tests.scaleout.slurm_child", str(tmp_path),
                          slurm["conf"]], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res.returncode == 0 and lines, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["status"] == "finished", result
    assert result["use_queue"] is True
    project = next((tmp_path / "scipion_home" / "user_data" / "projects").glob("slurm_queue"))
    # Scipion wrote the job script from SUBMIT_TEMPLATE and SLURM ran it (its -o file has our echo lines)
    job_script = project / result["job_script"]
    text = job_script.read_text()
    assert "#SBATCH -p debug" in text and "pw_protocol_run" in text
    job_out = Path(str(job_script)[:-len(".job")] + ".out").read_text()
    assert f"polishplugin SLURM job {result['job_id']} " in job_out and "done" in job_out
    # the protocol's output is registered and the mask file exists
    assert result["mask"] and (project / result["mask"]).is_file()
    # SLURM knows the job as completed (MinJobAge keeps it for 300 s)
    show = subprocess.run(["scontrol", "show", "job", str(result["job_id"])], capture_output=True, text=True,
                          env=slurm["env"], timeout=30)
    assert "JobState=COMPLETED" in show.stdout, show.stdout + show.stderr


def test_mpi_protocol_through_scipion_slurm_queue(slurm, tmp_path):
    """ProtPolishLocalRes with 2 MPI processes through the SLURM queue: --ntasks=2, mpirun inside the job."""
    pytest.importorskip("pyworkflow", reason="pyworkflow not installed (Scipion tests skipped)")
    env = {k: v for k, v in slurm["env"].items() if not k.startswith("SCIPION_")}
    env.update(MPLBACKEND="Agg", PATH=str(Path(sys.executable).parent) + os.pathsep + env["PATH"])
    res = subprocess.run([sys.executable, "-m", "polishplugin.tests.scaleout.slurm_child", str(tmp_path),
                          slurm["conf"], "2"], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res.returncode == 0 and lines, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    project = next((tmp_path / "scipion_home" / "user_data" / "projects").glob("slurm_queue"))
    assert "#SBATCH --ntasks=2" in (project / result["job_script"]).read_text()
    assert result["status"] == "finished", result
    assert "mpirun" in (project / result["stdout_log"]).read_text()
    assert list((project / result["extra"]).glob("*locres*.mrc")), "no local-resolution map written"
