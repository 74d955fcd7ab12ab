#!/usr/bin/env bash
# Install (if needed), lint (ruff; mypy on core and io, as configured in pyproject.toml; any report fails
# the script) and run the whole test suite headless: unit, program, kernel (PoCL) and Scipion protocol tests.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k convert`).
# The real RELION tutorial files are used when POLISHPLUGIN_TEST_DATA (or ../shared/data) exists;
# with CI=true they are required.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# shellcheck source=scripts/scipion_env.sh
source scripts/scipion_env.sh
if [ "${CI:-}" = "true" ] && [ ! -d "${POLISHPLUGIN_TEST_DATA:-/nonexistent}" ]; then
    echo "test.sh: CI=true but POLISHPLUGIN_TEST_DATA (${POLISHPLUGIN_TEST_DATA:-unset}) is not a folder" >&2
    exit 1
fi
.venv/bin/ruff check polishplugin bench
.venv/bin/mypy polishplugin/core polishplugin/io
# No path: pyproject.toml testpaths (polishplugin/tests).
exec .venv/bin/python -m pytest -q --durations=15 "$@" </dev/null
