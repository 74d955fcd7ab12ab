# Source me: the headless Scipion environment for tests and scripts (no GUI, no downloads).
# SCIPION_HOME gets config/hosts.conf (localhost, mpirun) unless it already has one.
_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SCIPION_HOME="${SCIPION_HOME:-$_repo/scipion_home}"
mkdir -p "$SCIPION_HOME/config" "$SCIPION_HOME/user_data" "$SCIPION_HOME/data/tests" "$SCIPION_HOME/software/em"
if [ ! -f "$SCIPION_HOME/config/hosts.conf" ]; then
    cat > "$SCIPION_HOME/config/hosts.conf" <<'HOSTS'
[localhost]
PARALLEL_COMMAND = mpirun --allow-run-as-root --oversubscribe -np %_(JOB_NODES)d %_(COMMAND)s
ADDRESS = localhost
HOSTS
fi
[ -f "$SCIPION_HOME/config/scipion.conf" ] || printf '[PYWORKFLOW]\n\n[PLUGINS]\n' > "$SCIPION_HOME/config/scipion.conf"
export SCIPION_DOMAIN=pwem
export SCIPION_TEST_NOSYNC=1
export SCIPION_USER_DATA="${SCIPION_USER_DATA:-$SCIPION_HOME/user_data}"
export SCIPION_TESTS="${SCIPION_TESTS:-$SCIPION_HOME/data/tests}"
export SCIPION_TESTS_OUTPUT="${SCIPION_TESTS_OUTPUT:-$SCIPION_USER_DATA/Tests}"
export SCIPION_SOFTWARE="${SCIPION_SOFTWARE:-$SCIPION_HOME/software}"
export MPLBACKEND=Agg
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PATH="$_repo/.venv/bin:$PATH"
if [ -z "${POLISHPLUGIN_TEST_DATA:-}" ] && [ -d "$_repo/../shared/data" ]; then
    export POLISHPLUGIN_TEST_DATA="$(cd "$_repo/../shared/data" && pwd)"
fi
unset _repo
