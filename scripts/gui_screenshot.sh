#!/usr/bin/env bash
# Screenshots of the Scipion GUI for the polishing stage: the project window with the stage's
# protocols and the forms of steps 26 and 25 with the tutorial's values.  Starts a private Xvfb
# (apt-get install xvfb) unless DISPLAY is set.  Usage: bash scripts/gui_screenshot.sh [OUT_DIR]
# (default artifacts/gui); extra arguments go to python -m polishplugin.tests.gui.gui_screenshot.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-artifacts/gui}"
shift || true
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
xvfb_pid=""
cleanup() { if [ -n "$xvfb_pid" ]; then kill "$xvfb_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT
if [ -z "${DISPLAY:-}" ]; then
    command -v Xvfb >/dev/null || { echo "gui_screenshot.sh: no Xvfb (apt-get install xvfb)" >&2; exit 3; }
    for n in $(seq 90 140); do
        [ -e "/tmp/.X${n}-lock" ] || [ -e "/tmp/.X11-unix/X${n}" ] || break
    done
    Xvfb ":$n" -screen 0 1600x1000x24 -nolisten tcp >/dev/null 2>&1 &
    xvfb_pid=$!
    export DISPLAY=":$n"
    for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X${n}" ] && break; sleep 0.2; done
fi
"$PY" -m polishplugin.tests.gui.gui_screenshot --out "$out" "$@"
