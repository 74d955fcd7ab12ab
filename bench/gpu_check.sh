#!/usr/bin/env bash
# The GPU check (bench/README.md, "GPU check script"): on a machine with no network, install the carried wheels
# (bench/wheels, made by bench/gpu_wheels.sh) when pyopencl/mrcfile/starfile are missing, register the vendor's
# OpenCL driver when pyopencl sees no GPU, print the devices, run the OpenCL tests and time the bench cases with
# numpy and with OpenCL, and write the table: $OUT/gpu_check.md (+ .json, .log), or bench/gpu_check_<host>.md when
# $OUT is unset.  Every stage has its own time limit inside a budget of 450 s; failures are rows of the table.
#
# Usage: bash bench/gpu_check.sh [--python PY] [--budget S] [--wheels-always] [--only STAGE...]
#   --python PY (or GPU_CHECK_PYTHON=PY): the interpreter (default python3); an existing environment that
#                already has pyopencl/mrcfile/starfile is used as it is.
#   other options: see `python3 bench/gpu_check.py all --help`.
#   GPU_CHECK_ICD_SEARCH=a:b  extra folders searched for vendor OpenCL libraries.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${GPU_CHECK_PYTHON:-python3}"
cmdline="bash bench/gpu_check.sh${*:+ $*}"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --python) PY="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ -n "${OUT:-}" ]; then
    dest="$OUT"; name=gpu_check
else
    dest=bench; name="gpu_check_$(hostname -s 2>/dev/null || echo host)"
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "gpu_check: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])'), scratch $work, out $dest/$name.*"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
# 470 s: the Python budget (450 s) plus its last stage's kill and the table's writing
timeout -k 5 470 "$PY" bench/gpu_check.py all --out "$dest" --name "$name" --work "$work" --python "$PY" \
    --command "$cmdline" "${args[@]}"
rc=$?
rm -rf "$work"
exit $rc
