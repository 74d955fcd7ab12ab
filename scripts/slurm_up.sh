#!/usr/bin/env bash
# A private single-node SLURM (slurmctld + slurmd + munged) on loopback, for tests and demos.
#
#   scripts/slurm_up.sh --install     install Debian's slurm-wlm + munge when missing (root + apt, CI only)
#   scripts/slurm_up.sh DIR           start munged/slurmctld/slurmd with everything inside DIR; prints
#                                     "export SLURM_CONF=DIR/slurm.conf" when the node is idle
#   scripts/slurm_up.sh --stop DIR    stop the daemons started in DIR (by their pid files)
#
# Environment: SLURM_PORT (slurmctld port, default 16817; slurmd uses +1), SLURM_CPUS (default nproc).
# Nothing outside DIR is written: own munge key and socket, own slurm.conf, state and spool folders.
set -euo pipefail

die() { echo "slurm_up.sh: $*" >&2; exit 1; }

have_slurm() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null; }

sbin_path() { export PATH="$PATH:/usr/sbin:/sbin"; }

if [ "${1:-}" = "--install" ]; then
    sbin_path
    if have_slurm; then echo "slurm_up.sh: SLURM already installed"; exit 0; fi
    [ "$(id -u)" = 0 ] || die "SLURM is not installed and installing it needs root (apt-get install slurm-wlm munge)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null \
        || die "apt-get install slurm-wlm munge failed (no network or no Debian repository?)"
    have_slurm || die "slurm-wlm installed but slurmctld/slurmd/munged/sbatch are still missing"
    echo "slurm_up.sh: installed $(slurmctld -V)"
    exit 0
fi

if [ "${1:-}" = "--stop" ]; then
    D="$(cd "${2:?usage: slurm_up.sh --stop DIR}" && pwd)"
    for name in slurmd slurmctld munged; do
        f="$D/$name.pid"
        if [ -s "$f" ]; then
            pid="$(cat "$f")"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$f"
        fi
    done
    exit 0
fi

D="${1:?usage: slurm_up.sh [--install | --stop DIR | DIR]}"
mkdir -p "$D"
D="$(cd "$D" && pwd)"
sbin_path
have_slurm || die "no SLURM: slurmctld/slurmd/munged/sbatch not found (apt-get install slurm-wlm munge)"
[ "$(id -u)" = 0 ] || die "this single-node SLURM runs its daemons as root (SlurmUser=root); run as root"

PORT="${SLURM_PORT:-16817}"
CPUS="${SLURM_CPUS:-$(nproc)}"
MEM_MB="$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)"
mkdir -p "$D/state" "$D/spool" "$D/munge"
chmod 700 "$D/munge"

# munge: own key, socket, pid, log and seed inside DIR
if [ ! -s "$D/munge/munge.key" ]; then
    dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$D/munge/munge.key"
fi
munged --force --socket="$D/munge/munge.socket" --key-file="$D/munge/munge.key" --pid-file="$D/munged.pid" \
    --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed" \
    || die "munged did not start (see $D/munge/munged.log)"

cat > "$D/slurm.conf" <<EOF
# written by scripts/slurm_up.sh: single node, loopback only
ClusterName=polishtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
export SLURM_CONF="$D/slurm.conf"

slurmctld -f "$SLURM_CONF" -i || die "slurmctld did not start (see $D/slurmctld.log)"
slurmd -f "$SLURM_CONF" -N localhost || die "slurmd did not start (see $D/slurmd.log)"

for _ in $(seq 120); do
    state="$(sinfo -h -n localhost -o %T 2>/dev/null || true)"
    case "$state" in
        idle*|mixed*|allocated*) echo "export SLURM_CONF=$SLURM_CONF"; exit 0 ;;
    esac
    sleep 0.5
done
echo "slurm_up.sh: node state '${state:-unknown}' after 60 s; logs:" >&2
tail -n 20 "$D/slurmctld.log" "$D/slurmd.log" >&2 || true
bash "$0" --stop "$D"
exit 1
