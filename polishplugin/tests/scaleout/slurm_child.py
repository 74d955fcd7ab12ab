"""Run one protocol through Scipion's queue submission (SLURM), in a fresh process and Scipion home.

``python -m polishplugin.tests.scaleout.slurm_child WORKDIR SLURM_CONF [N_MPI]``: writes a Scipion home
in WORKDIR whose hosts.conf has a SLURM queue (:func:`slurm_hosts_conf`), imports two planted half maps
(locally), launches ProtPolishMaskCreate (N_MPI > 1: ProtPolishLocalRes with N_MPI processes) with
``_useQueue=True`` on the queue "debug" and polls the project database until the protocol finishes,
fails or the time limit passes.  Prints one JSON line
(``RESULT {...}``: status, SLURM job id, output mask path, the job script path).

A separate process because pyworkflow reads SCIPION_HOME/hosts.conf when first imported, and the
other protocol tests of a pytest session keep their own local-only home.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

#: The hosts.conf [localhost] section for a SLURM cluster (also shown in docs/cluster.rst).
SLURM_HOSTS_CONF = """[localhost]
PARALLEL_COMMAND = mpirun --allow-run-as-root --oversubscribe -np %_(JOB_NODES)d %_(COMMAND)s
ADDRESS = localhost
NAME = SLURM
MANDATORY = 0
SUBMIT_PREFIX = scipion
SUBMIT_COMMAND = {env}sbatch %_(JOB_SCRIPT)s
CANCEL_COMMAND = {env}scancel %_(JOB_ID)s
CHECK_COMMAND = {env}squeue -h -j %_(JOB_ID)s
SUBMIT_TEMPLATE = #!/bin/bash
    ### Job name
    #SBATCH -J %_(JOB_NAME)s
    ### Outputs (we need to escape the job id as %%j)
    #SBATCH -o %_(JOB_LOGS)s.out
    #SBATCH -e %_(JOB_LOGS)s.err
    ### Partition (queue) name
    #SBATCH -p %_(JOB_QUEUE)s
    ### Specify time, number of nodes (tasks), cores and memory(MB) for your job
    #SBATCH --time=%_(JOB_HOURS)d:00:00
    #SBATCH --ntasks=%_(JOB_NODES)d
    #SBATCH --cpus-per-task=%_(JOB_THREADS)d
    #SBATCH --mem=%_(JOB_MEMORY)s
    # Use as working dir the path where sbatch was launched
    WORKDIR=$SLURM_SUBMIT_DIR
    cd $WORKDIR
    echo "polishplugin SLURM job $SLURM_JOB_ID on $(hostname) in $WORKDIR"
    %_(JOB_COMMAND)s
    echo "polishplugin SLURM job $SLURM_JOB_ID done"
QUEUES = {{"debug": [["JOB_MEMORY", "1024", "Memory (MB)", "Memory (MB) per job"]]}}
QUEUES_DEFAULT = {{"JOB_GPUS": "0"}}
"""


def slurm_hosts_conf(slurm_conf: str | None = None) -> str:
    """hosts.conf text; ``slurm_conf`` (a private cluster's slurm.conf) is put before each command."""
    return SLURM_HOSTS_CONF.format(env=f"SLURM_CONF={slurm_conf} " if slurm_conf else "")


def _planted_half_maps(folder: Path, box: int = 32, angpix: float = 2.0) -> tuple[str, str]:
    from polishplugin.io.mrc import write_mrc
    from polishplugin.core.filters import raised_cosine_sphere

    rng = np.random.default_rng(5)
    sphere = raised_cosine_sphere((box,) * 3, 8.0, 3.0).astype(np.float32)
    files = []
    for h in (1, 2):
        path = folder / f"run_half{h}_class001_unfil.mrc"
        write_mrc(path, sphere + 0.05 * rng.standard_normal(sphere.shape).astype(np.float32), angpix)
        files.append(str(path))
    return files[0], files[1]


def run(workdir: Path, slurm_conf: str, n_mpi: int = 1, timeout: float = 420.0) -> dict:
    home = workdir / "scipion_home"
    (home / "config").mkdir(parents=True, exist_ok=True)
    hosts = home / "config" / "hosts.conf"
    hosts.write_text(slurm_hosts_conf(slurm_conf))
    os.environ["SCIPION_HOME"] = str(home)
    os.environ["SLURM_CONF"] = slurm_conf
    for var in ("SCIPION_USER_DATA", "SCIPION_TESTS", "SCIPION_TESTS_OUTPUT", "SCIPION_SOFTWARE"):
        os.environ.pop(var, None)  # the child gets its own, inside WORKDIR
    from polishplugin.stage.scipion_env import setup_scipion_env

    setup_scipion_env(home)
    from pyworkflow.project import Manager

    from polishplugin.protocols import ProtPolishImport, ProtPolishMaskCreate

    half1, half2 = _planted_half_maps(workdir)
    proj = Manager().createProject("slurm_queue")
    os.chdir(proj.getPath())  # Scipion's paths are relative to the project folder
    imp = proj.newProtocol(ProtPolishImport, objLabel="import half maps", halfMap1=half1, halfMap2=half2)
    proj.launchProtocol(imp, wait=True)
    imp = proj.getProtocol(imp.getObjId())
    if not imp.isFinished():
        return {"status": "import " + imp.getStatus(), "error": imp.getErrorMessage()}
    if n_mpi <= 1:
        prot = proj.newProtocol(ProtPolishMaskCreate, objLabel="mask through SLURM", inputVolume=imp.outputVolume,
                                lowpass=10.0, iniThreshold=0.5, extendInimask=1, widthSoftEdge=3)
        output = "outputMask"
    else:  # local resolution: the one protocol here with an MPI count, split over sample points
        from polishplugin.protocols import ProtPolishLocalRes

        prot = proj.newProtocol(ProtPolishLocalRes, objLabel="local resolution through SLURM",
                                inputVolume=imp.outputVolume, sampling=12.0)
        prot.numberOfMpi.set(n_mpi)
        output = None
    return _through_queue(proj, prot, output, timeout)


def _through_queue(proj, prot, output: str | None, timeout: float) -> dict:
    """Launch ``prot`` with _useQueue on queue "debug" and poll until it ends; the result dict."""
    prot._useQueue.set(True)
    prot.setQueueParams(["debug", {"JOB_MEMORY": "1024"}])
    proj.launchProtocol(prot)
    prot_id = prot.getObjId()
    job_id = prot.getJobIds()[0] if prot.getJobIds() else None
    start = time.time()
    while True:
        proj._updateProtocol(prot)  # what the GUI does: copy the run.db state into the project
        if prot.isFinished() or prot.isFailed() or time.time() - start > timeout:
            break
        time.sleep(2)
    seconds = round(time.time() - start, 1)
    prot = proj.getProtocol(prot_id)
    outputs = [name for name, _ in prot.iterOutputAttributes()]
    out = getattr(prot, output, None) if output else None
    script = prot.getSubmitDict().get("JOB_SCRIPT")
    return {"status": prot.getStatus(), "error": prot.getErrorMessage(), "job_id": job_id,
            "jobs": list(prot.getJobIds()), "use_queue": bool(prot.useQueue()), "outputs": outputs,
            "mask": out.getFileName() if out is not None else None, "job_script": script,
            "seconds": seconds, "stdout_log": prot.getStdoutLog(), "extra": prot._getExtraPath()}


if __name__ == "__main__":
    result = run(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    print("RESULT " + json.dumps(result, default=str), flush=True)
