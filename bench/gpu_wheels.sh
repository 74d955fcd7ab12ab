#!/usr/bin/env bash
# Download, HERE (with network), the wheels that the lent GPU machines lack, into bench/wheels/ (git-ignored),
# for `bash bench/gpu_check.sh` THERE (no network).  See bench/README.md, section "GPU check script".
#
# The GPU machines run CPython 3.12 on manylinux x86_64 with numpy 2, scipy, pandas, pyarrow, tifffile, mpi4py,
# matplotlib, pytest and typing-extensions, but no pyopencl, mrcfile or starfile.  We fetch those three and the
# requirements of theirs that are missing there (pytools, platformdirs, siphash24; typing_extensions too: pyopencl
# wants >= 4.6 and the wheel is 45 kB), each with --no-deps so that numpy/pandas/pyarrow are NOT downloaded (the
# machine's own are used).  The pyopencl wheel bundles an OpenCL ICD loader (pyopencl/.libs/libOpenCL-*.so);
# the vendor's driver (libnvidia-opencl.so.1) is found and registered there by bench/gpu_check.py.
# PoCL (pocl-binary-distribution, ~55 MB unpacked) is NOT fetched: a GPU does not need it.
#
# Usage: bash bench/gpu_wheels.sh [PYTHON]      (PYTHON: the interpreter whose pip downloads; default python3)
# Env:   GPU_WHEELS_PY=3.12 (target CPython version), GPU_WHEELS_MAX_MB=40 (size check).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${1:-python3}"
PYVER="${GPU_WHEELS_PY:-3.12}"
MAX_MB="${GPU_WHEELS_MAX_MB:-40}"
DEST=bench/wheels
# name[==version]: pinning keeps ONE version of each (two versions of a package stop a --no-deps install)
PACKAGES=(pyopencl mrcfile starfile pytools platformdirs siphash24 typing_extensions)

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
"$PY" -m pip download --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$DEST.tmp" "${PACKAGES[@]}" 2>&1 | grep -v "is ignored: it is neither" || true
for p in "${PACKAGES[@]}"; do
    n=$(ls "$DEST.tmp" | tr 'A-Z' 'a-z' | grep -c "^${p//-/_}-" || true)
    if [ "$n" != 1 ]; then
        echo "gpu_wheels: expected one wheel of $p in $DEST.tmp, found $n" >&2
        exit 1
    fi
done
size_kb=$(du -sk "$DEST.tmp" | cut -f1)
if [ "$size_kb" -gt $((MAX_MB * 1024)) ]; then
    echo "gpu_wheels: $((size_kb / 1024)) MiB of wheels is over the ${MAX_MB} MiB budget" >&2
    exit 1
fi
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
ls -l "$DEST"
echo "gpu_wheels: $(ls "$DEST" | wc -l) wheels, $((size_kb / 1024)) MiB ($size_kb kB) in $DEST"
