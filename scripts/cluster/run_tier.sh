#!/usr/bin/env bash
# The cluster tier (`make test-cluster`): a one-node SLURM cluster on localhost, with accounting,
# in a temporary folder of its own; the tests of tests/cluster run against it through the real
# sbatch/srun/squeue/sacct/scontrol; every daemon started here is stopped by PID on exit, also
# when a test fails.
#   scripts/cluster/run_tier.sh [PYTHON] [pytest args...]
# Own ports (free ones, picked at start), state, spool, log, pid folders, munge socket and key,
# MariaDB data dir and socket: a second copy of the tier on the same machine does not collide.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${1:-$ROOT/.venv/bin/python}
shift || true
started=$(date +%s)

status=0
"$ROOT/scripts/cluster/install.sh" || status=$?
if [ $status -eq 77 ]; then
    echo "cluster tier SKIPPED: slurm-wlm/munge/mariadb cannot be installed here (see above)" >&2
    exit 0
elif [ $status -ne 0 ]; then
    echo "cluster tier: package install failed (status $status)" >&2
    exit $status
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "cluster tier SKIPPED: the SLURM daemons must start as root (SlurmUser=root)" >&2
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hnet-cluster.XXXXXX")
chmod 755 "$WORK"
PIDS=()  # daemons in start order; stopped in reverse
stop_daemons() {
    local rc=$?
    for (( i=${#PIDS[@]}-1; i>=0; i-- )); do
        local pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ $rc -ne 0 ] && [ -d "$WORK/log" ]; then
        echo "cluster tier failed (status $rc); daemon logs, last lines:" >&2
        for f in "$WORK"/log/slurm*.log; do echo "== $f" >&2; tail -n 15 "$f" >&2; done
    fi
    [ "${HNET_CLUSTER_KEEP:-0}" = 1 ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
    echo "cluster tier: $(( $(date +%s) - started )) s in all (install, daemons, tests, teardown)" >&2
    exit $rc
}
trap stop_daemons EXIT
trap 'exit 130' INT TERM

read -r CTLD_PORT SLURMD_PORT DBD_PORT DB_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
mkdir -p "$WORK"/{etc,state,spool,log,run,munge,mysql,jobs}
chmod 711 "$WORK/munge"

# munge: its own key and socket (AuthInfo points SLURM at the socket)
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$WORK/munge/munge.key"
munged --foreground --force --key-file="$WORK/munge/munge.key" \
    --socket="$WORK/munge/munge.socket" --pid-file="$WORK/run/munged.pid" \
    --log-file="$WORK/log/munged.log" --seed-file="$WORK/munge/munge.seed" \
    > "$WORK/log/munged.out" 2>&1 &
PIDS+=($!)

# MariaDB for slurmdbd: own data dir, socket and port, bound to 127.0.0.1
mariadb-install-db --no-defaults --user=root --datadir="$WORK/mysql" \
    --auth-root-authentication-method=socket --skip-test-db > "$WORK/log/mariadb-install.log" 2>&1
mariadbd --no-defaults --user=root --datadir="$WORK/mysql" --socket="$WORK/run/mysql.sock" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$WORK/run/mariadb.pid" \
    --log-error="$WORK/log/mariadb.log" --innodb-buffer-pool-size=32M \
    --innodb-log-file-size=16M --skip-name-resolve > "$WORK/log/mariadb.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    mariadb --no-defaults --socket="$WORK/run/mysql.sock" -u root -e "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.2
done
mariadb --no-defaults --socket="$WORK/run/mysql.sock" -u root -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'hnet-cluster-tier';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

export SLURM_CONF="$WORK/etc/slurm.conf"
cat > "$WORK/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$WORK/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=hnet-cluster-tier
StorageLoc=slurm_acct_db
PidFile=$WORK/run/slurmdbd.pid
LogFile=$WORK/log/slurmdbd.log
DebugLevel=info
CONF
chmod 600 "$WORK/etc/slurmdbd.conf"
cat > "$SLURM_CONF" <<CONF
ClusterName=hnetci
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also delays a requeued job's restart (default 120 s)
AuthInfo=socket=$WORK/munge/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
# a requeued job may start as soon as its credential expired, not at the next 30-60 s pass
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# for accounting_storage/slurmdbd this names the munge socket (not a password)
AccountingStoragePass=$WORK/munge/munge.socket
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

slurmdbd -D > "$WORK/log/slurmdbd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$DBD_PORT") 2>/dev/null && break
    sleep 0.2
done
slurmctld -D -i > "$WORK/log/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -N "$NODE" > "$WORK/log/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    state=$(timeout 5 sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.2
done
[ "${state:-}" = idle ] || { echo "cluster tier: node $NODE is '$state', not idle" >&2; exit 1; }
echo "cluster tier: $(sinfo --version) up on $NODE ($CPUS CPUs, $MEM_MB MB) in $WORK," \
     "slurmctld :$CTLD_PORT, slurmd :$SLURMD_PORT, slurmdbd :$DBD_PORT, mariadb :$DB_PORT" >&2

export HNET_CLUSTER_TESTS=1 HNET_CLUSTER_WORK="$WORK/jobs" OMP_NUM_THREADS=1
cd "$ROOT"
"$PY" -m pytest -q -p no:cacheprovider -rA --durations=0 tests/cluster "$@"
