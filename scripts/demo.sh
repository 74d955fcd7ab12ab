#!/usr/bin/env bash
# The main job: install (if needed), simulate the `demo` dataset and run the whole polishing stage
# (train 25, polish 26, refine 27, post-process 28, local resolution 29); prints a summary table and
# writes plots/logfiles under demo_output/.  Extra arguments go to `polishplugin demo`
# (e.g. `bash scripts/demo.sh --preset tiny --o demo_tiny`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# shellcheck source=scripts/scipion_env.sh
source scripts/scipion_env.sh
exec .venv/bin/polishplugin demo "$@" </dev/null
