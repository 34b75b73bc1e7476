#!/usr/bin/env bash
# A real one-node Slurm (Debian's 22.05) cluster on loopback, for tests.
#
#   bash slurm/local-cluster.sh start    # install packages if missing, start, wait until usable
#   bash slurm/local-cluster.sh stop     # cancel all jobs, then stop the daemons
#   bash slurm/local-cluster.sh status   # which daemons run, and sinfo
#
# Must run as root on Debian. Everything (config, munge key, MariaDB data, state, logs, pid files)
# lives under RLHI_SLURM_DIR (default /tmp/rlhi-slurm); nothing is written to /etc. Clients find
# the cluster through SLURM_CONF (`source slurm/env.sh`).
#
# Daemons, started in this order: munged, mariadbd, slurmdbd, slurmctld, slurmd; stopped in reverse
# (after all jobs are cancelled), by pid file. Ports: RLHI_SLURM_PORT_BASE (default 6817) for slurmctld, +1 slurmd, +2 slurmdbd,
# +3 MariaDB (all bound to 127.0.0.1 where the daemon allows it).
set -euo pipefail

DIR=${RLHI_SLURM_DIR:-/tmp/rlhi-slurm}
PORT_BASE=${RLHI_SLURM_PORT_BASE:-6817}
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
CLUSTER=rlhi
DB_USER=slurm
DB_PASS=slurm
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
PREEMPT_GRACE=10

ETC=$DIR/etc
RUN=$DIR/run
LOG=$DIR/log
export SLURM_CONF=$ETC/slurm.conf
MUNGE_SOCKET=$RUN/munge.socket
DB_SOCKET=$RUN/mysqld.sock
HOST=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)

# In start order; each name is the daemon's process name (/proc/PID/comm), its pid file RUN/NAME.pid.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
pid_file() { echo "$RUN/$1.pid"; }

say() { echo "local-cluster: $*"; }
die() {
    echo "local-cluster: error: $*" >&2
    exit 1
}

# Print the last lines of a daemon's log, to explain why it did not come up.
show_log() {
    local f=$LOG/$1.log
    [[ -s $f ]] && { echo "--- last lines of $f:" >&2; tail -n 15 "$f" >&2; }
    return 0
}

# ---------------------------------------------------------------- processes

daemon_pid() { # prints the pid of a running daemon, fails if it does not run
    local name=$1 f pid
    f=$(pid_file "$name")
    [[ -s $f ]] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [[ -n $pid && -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
    echo "$pid"
}

is_running() { daemon_pid "$1" >/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "local-cluster: timed out after ${secs}s waiting for $what" >&2; return 1; }
        sleep 0.2
    done
}

stop_daemon() {
    local name=$1 pid i
    pid=$(daemon_pid "$name") || { rm -f "$(pid_file "$name")"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do # 20 s
        [[ -d /proc/$pid ]] || break
        sleep 0.2
    done
    if [[ -d /proc/$pid ]]; then
        say "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$(pid_file "$name")"
}

# ---------------------------------------------------------------- packages

ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "packages missing (${missing[*]}) and apt-get is not available; install them by hand"
    say "installing ${missing[*]} (apt-get)"
    # Keep the packages' own init scripts from starting system-wide daemons during installation.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
    fi
    local out rc=0
    out=$(DEBIAN_FRONTEND=noninteractive apt-get update -qq 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" 2>&1) || rc=$?
    ((added_policy)) && rm -f "$policy"
    ((rc == 0)) || { echo "$out" | tail -n 30 >&2; die "apt-get install ${missing[*]} failed (exit $rc)"; }
}

# ---------------------------------------------------------------- configuration

# Sets CPUS SOCKETS CORES THREADS REAL_MEM from `slurmd -C` (falls back to nproc / meminfo).
detect_hardware() {
    local line
    line=$(slurmd -C 2>/dev/null | head -n 1) || line=
    field() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$line"; }
    CPUS=$(field CPUs)
    SOCKETS=$(field SocketsPerBoard)
    CORES=$(field CoresPerSocket)
    THREADS=$(field ThreadsPerCore)
    local mem
    mem=$(field RealMemory)
    if [[ -z $CPUS || -z $SOCKETS || -z $CORES || -z $THREADS ]]; then
        CPUS=$(nproc)
        SOCKETS=1
        CORES=$CPUS
        THREADS=1
    fi
    [[ -n $mem ]] || mem=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
    # A bit below what slurmd measures, or the node is drained for "Low RealMemory".
    local margin=$((mem / 20))
    ((margin < 256)) && margin=256
    REAL_MEM=$((mem - margin))
}

# Two fake GPUs: character devices with NVIDIA's major number (195).
make_fake_gpus() {
    mkdir -p "$DIR/dev"
    local i
    for i in 0 1; do
        local dev=$DIR/dev/nvidia$i
        [[ -c $dev ]] && continue
        rm -f "$dev"
        if ! mknod "$dev" c 195 "$i" 2>/dev/null; then
            # No CAP_MKNOD: any character device works, since task/none enforces nothing.
            ln -s "$([[ $i == 0 ]] && echo /dev/null || echo /dev/zero)" "$dev"
        fi
    done
}

write_slurm_conf() {
    local oversub=4
    # Default memory per CPU such that a fully oversubscribed node still fits in RealMemory.
    local def_mem=$((REAL_MEM / (CPUS * oversub)))
    cat >"$ETC/slurm.conf" <<EOF
# Generated by slurm/local-cluster.sh; rewritten on every start.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job may start again after 10 s instead of 120 s.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$DIR/state/slurmctld
SlurmdSpoolDir=$DIR/state/slurmd
SlurmctldPidFile=$(pid_file slurmctld)
SlurmdPidFile=$(pid_file slurmd)
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
# Slurm 22.05: the job's --signal is sent at preemption (PreemptParameters= is a fatal error here).
SlurmctldParameters=preempt_send_user_signal
DependencyParameters=kill_invalid_depend
JobRequeue=1
MaxArraySize=100001
MaxJobCount=200000
KillWait=2
# A loaded 2-core test box can take long to reap a killed task: do not drain the node for it.
UnkillableStepTimeout=300
MinJobAge=30
InactiveLimit=0
Waittime=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# The munge socket for connections to slurmdbd (AuthInfo= covers only the other daemons).
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
MailProg=/bin/true
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$CPUS Boards=1 SocketsPerBoard=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$REAL_MEM Gres=gpu:2 State=UNKNOWN
# debug: default and preemptible; up to $oversub jobs share a core. A preempted job gets its --signal
# (else SIGTERM) at once and has GraceTime seconds to checkpoint and requeue itself (submitit does);
# one still running then gets SIGTERM, SIGKILL KillWait s later, and is requeued by Slurm.
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=$PREEMPT_GRACE OverSubscribe=FORCE:$oversub
# urgent: preempts jobs of debug when it needs their resources.
PartitionName=urgent Nodes=$HOST MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF OverSubscribe=NO
EOF
    cat >"$ETC/gres.conf" <<EOF
AutoDetect=off
NodeName=$HOST Name=gpu File=$DIR/dev/nvidia[0-1]
EOF
}

write_slurmdbd_conf() {
    cat >"$ETC/slurmdbd.conf" <<EOF
# Generated by slurm/local-cluster.sh; rewritten on every start.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$(pid_file slurmdbd)
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"
}

prepare() {
    mkdir -p "$ETC" "$RUN" "$LOG" "$DIR/state/slurmctld" "$DIR/state/slurmd" "$DIR/state/munge"
    chmod 755 "$DIR" "$ETC" "$RUN" "$LOG"
    # munged refuses world-writable or group-writable directories on the paths it uses.
    chmod 700 "$DIR/state/munge"
    if [[ ! -s $ETC/munge.key ]]; then
        mungekey --create --keyfile="$ETC/munge.key" 2>/dev/null ||
            dd if=/dev/urandom of="$ETC/munge.key" bs=1 count=1024 status=none
    fi
    chmod 400 "$ETC/munge.key"
    detect_hardware
    make_fake_gpus
    write_slurm_conf
    write_slurmdbd_conf
}

# ---------------------------------------------------------------- daemons

start_munged() {
    is_running munged && return 0
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    munged --key-file="$ETC/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$(pid_file munged)" \
        --log-file="$LOG/munged.log" --seed-file="$DIR/state/munge/munged.seed" --force \
        >>"$LOG/munged.log" 2>&1 || { show_log munged; die "munged did not start"; }
    wait_for 15 munged bash -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'" ||
        { show_log munged; die "munged does not answer on $MUNGE_SOCKET"; }
}

db_sql() { mariadb --no-defaults --socket="$DB_SOCKET" -uroot -N -e "$1"; }

start_mariadbd() {
    is_running mariadbd && return 0
    local data=$DIR/mysql
    if [[ ! -d $data/mysql ]]; then
        rm -rf "$data"
        mariadb-install-db --no-defaults --user=root --datadir="$data" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 ||
            { show_log mariadb-install; die "mariadb-install-db failed"; }
    fi
    rm -f "$DB_SOCKET"
    setsid -f mariadbd --no-defaults --user=root --datadir="$data" --socket="$DB_SOCKET" \
        --pid-file="$(pid_file mariadbd)" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --skip-name-resolve --skip-log-bin --log-error="$LOG/mariadbd.log" \
        --innodb-buffer-pool-size=128M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
        --innodb-flush-log-at-trx-commit=2 </dev/null >/dev/null 2>&1
    wait_for 30 mariadbd db_sql "SELECT 1" || { show_log mariadbd; die "mariadbd did not start"; }
    db_sql "CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'127.0.0.1';" ||
        die "could not create the MariaDB user for slurmdbd"
}

start_slurmdbd() {
    is_running slurmdbd && return 0
    slurmdbd >>"$LOG/slurmdbd.log" 2>&1 || { show_log slurmdbd; die "slurmdbd did not start"; }
    # The first start creates the tables: sacctmgr answers once that is done.
    wait_for 45 slurmdbd sacctmgr -n -P list cluster || { show_log slurmdbd; die "slurmdbd does not answer"; }
}

ensure_accounts() {
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" ||
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
    sacctmgr -n -P list account format=account | grep -qx root ||
        sacctmgr -i add account root cluster="$CLUSTER" >/dev/null || die "sacctmgr add account root failed"
    sacctmgr -n -P list user format=user | grep -qx root ||
        sacctmgr -i add user root account=root cluster="$CLUSTER" >/dev/null || die "sacctmgr add user root failed"
}

start_slurmctld() {
    is_running slurmctld && return 0
    slurmctld >>"$LOG/slurmctld.log" 2>&1 || { show_log slurmctld; die "slurmctld did not start"; }
    wait_for 30 slurmctld scontrol ping || { show_log slurmctld; die "slurmctld does not answer"; }
}

start_slurmd() {
    is_running slurmd && return 0
    slurmd -N "$HOST" >>"$LOG/slurmd.log" 2>&1 || { show_log slurmd; die "slurmd did not start"; }
}

node_state() { sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n 1; }

node_usable() { [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]]; }

wait_node_ready() {
    local deadline=$((SECONDS + 30)) state
    while ! node_usable; do
        state=$(node_state)
        # A node left drained or down by an earlier run is returned to service.
        if [[ $state =~ drain|down|fail ]]; then
            scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        fi
        if ((SECONDS >= deadline)); then
            show_log slurmd
            show_log slurmctld
            die "node $HOST is '$state', not idle, after 30 s ($(sinfo -h -N -o '%T %E' 2>/dev/null))"
        fi
        sleep 0.3
    done
}

all_running() {
    local d
    for d in "${DAEMONS[@]}"; do is_running "$d" || return 1; done
}

# ---------------------------------------------------------------- commands

cmd_start() {
    if all_running && node_usable; then
        say "already running (SLURM_CONF=$SLURM_CONF)"
        echo "export SLURM_CONF=$SLURM_CONF"
        return 0
    fi
    ensure_packages
    local t0=$SECONDS
    prepare
    start_munged
    start_mariadbd
    start_slurmdbd
    ensure_accounts
    start_slurmctld
    start_slurmd
    wait_node_ready
    say "cluster '$CLUSTER' up on $HOST in $((SECONDS - t0)) s: $CPUS CPUs, ${REAL_MEM} MB, 2 fake GPUs; partitions debug (default), urgent"
    echo "export SLURM_CONF=$SLURM_CONF"
}

queue_empty() { [[ -z $(squeue -h -o %A 2>/dev/null) ]]; }

cancel_all_jobs() {
    is_running slurmctld || return 0
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u) || return 0
    [[ -z $jobs ]] && return 0
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    wait_for 30 "jobs to end" queue_empty || say "some jobs still listed; stopping anyway"
}

cmd_stop() {
    cancel_all_jobs
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon slurmdbd
    # Both served only slurmdbd: stop them together.
    stop_daemon mariadbd &
    stop_daemon munged &
    wait
    say "stopped"
}

cmd_status() {
    local d pid rc=0
    for d in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$d"); then
            printf '%-10s running (pid %s)\n' "$d" "$pid"
        else
            printf '%-10s stopped\n' "$d"
            rc=3
        fi
    done
    if is_running slurmctld; then sinfo || rc=3; fi
    echo "SLURM_CONF=$SLURM_CONF"
    return $rc
}

main() {
    local cmd=${1:-}
    case $cmd in
    start | stop | status) ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
    esac
    ((EUID == 0)) || die "must run as root (it installs packages and starts system daemons); try: sudo bash $0 $cmd"
    [[ $cmd == status ]] || command -v dpkg-query >/dev/null || die "this script needs Debian (dpkg/apt-get)"
    "cmd_$cmd"
}

main "$@"
