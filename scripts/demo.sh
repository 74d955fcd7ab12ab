#!/usr/bin/env bash
# The main job: install (if needed), simulate the `demo` dataset and run the whole polishing stage
# as a Scipion project made from the workflow template (import, train 25, polish 26, refine 27,
# post-process 28, local resolution 29), headless; prints a summary table and writes plots and
# logfiles under demo_output/; each protocol's progress (refine: iteration, resolution, ETA) is printed
# while it runs.  Running it again resumes: finished runs of demo_output/scipion_project are kept.
# Extra arguments go to `polishplugin demo`
# (e.g. `bash scripts/demo.sh --preset tiny --o demo_tiny`; drop Scipion with `--no_scipion`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# shellcheck source=scripts/scipion_env.sh
source scripts/scipion_env.sh
exec .venv/bin/polishplugin demo --o demo_output "$@" </dev/null
