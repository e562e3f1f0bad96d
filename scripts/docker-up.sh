#!/usr/bin/env bash
# Make sure a Docker engine answers on the default socket. Idempotent.
#
# - If `docker info` already works, exit 0 at once.
# - Otherwise install Debian's docker.io (and debootstrap) when dockerd is
#   missing, clear pid/socket files left behind by a killed dockerd or
#   containerd (only when the process they name is not alive), and start
#   dockerd fully detached from the caller (own session, stdio to a log,
#   no inherited descriptors), then wait until `docker info` answers.
# - overlay2 is tried first; if dockerd cannot come up with it, vfs is tried.
#
# Session containers use host networking, so the daemon runs with
# --bridge=none and without iptables.
#
# Environment:
#   BERTH_DOCKERD_LOG       log file        (default /var/log/berth-dockerd.log)
#   BERTH_DOCKERD_TIMEOUT   seconds to wait (default 60)
#   BERTH_STORAGE_DRIVER    force one storage driver instead of overlay2 then vfs
set -euo pipefail
set +m  # no job control: background children must not lead their own group

LOG=${BERTH_DOCKERD_LOG:-/var/log/berth-dockerd.log}
TIMEOUT=${BERTH_DOCKERD_TIMEOUT:-60}
PIDFILE=/var/run/docker.pid
SOCK=/var/run/docker.sock

say() { printf 'docker-up: %s\n' "$*" >&2; }

docker_answers() {
    timeout 10 docker info >/dev/null 2>&1
}

if command -v docker >/dev/null 2>&1 && docker_answers; then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    say "no Docker engine answers and this is not root: cannot start dockerd"
    exit 1
fi

start_ts=$(date +%s.%N)

# --- install ---------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    say "installing docker.io and debootstrap from apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
fi
if ! command -v docker >/dev/null 2>&1; then
    say "no docker client on PATH even after installing docker.io"
    exit 1
fi

# --- stale state -------------------------------------------------------------
# proc_alive PID: true if PID is a live process (a zombie is not).
proc_alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != [ZX] ]]
}

# proc_is PID NAME: true if PID is alive and its command name is NAME.
proc_is() {
    local pid=$1 name=$2 comm
    proc_alive "$pid" || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name" ]]
}

# pid_in FILE: the pid written in FILE, or nothing.
pid_in() {
    local pid=""
    [[ -f $1 ]] && pid=$(tr -dc '0-9' <"$1" 2>/dev/null || true)
    printf '%s' "$pid"
}

# socket_alive PATH: true if something accepts connections on the unix socket.
socket_alive() {
    [[ -S $1 ]] || return 1
    python3 - "$1" <<'EOF' >/dev/null 2>&1
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(2)
s.connect(sys.argv[1])
EOF
}

clear_stale() {
    local dir cpid s
    if [[ -e $PIDFILE ]]; then
        say "removing stale $PIDFILE"
        rm -f "$PIDFILE"
    fi
    if [[ -e $SOCK ]] && ! socket_alive "$SOCK"; then
        say "removing stale $SOCK"
        rm -f "$SOCK"
    fi
    # containerd that dockerd supervises itself
    for dir in /var/run/docker/containerd /run/docker/containerd; do
        cpid=$(pid_in "$dir/containerd.pid")
        if [[ -e $dir/containerd.pid ]] && ! proc_is "$cpid" containerd; then
            say "removing stale $dir/containerd.pid"
            rm -f "$dir/containerd.pid"
        fi
        for s in "$dir/containerd.sock" "$dir/containerd-debug.sock"; do
            if [[ -e $s ]] && ! socket_alive "$s"; then
                say "removing stale $s"
                rm -f "$s"
            fi
        done
    done
    # A system containerd socket makes dockerd use it instead of its own
    # containerd, so a dead one there must go.
    for s in /run/containerd/containerd.sock /run/containerd/containerd.sock.ttrpc; do
        if [[ -e $s ]] && ! socket_alive /run/containerd/containerd.sock; then
            say "removing stale $s"
            rm -f "$s"
        fi
    done
}

# --- start -------------------------------------------------------------------
mkdir -p "$(dirname "$LOG")"

# Start dockerd in its own session (not in the caller's process group), with
# stdin from /dev/null, stdout/stderr to the log, and every other inherited
# descriptor closed, so a CI runner waiting on its pipes is not held open.
# Prints the pid of dockerd.
launch_dockerd() {
    local driver=$1
    printf '\n==== %s docker-up: starting dockerd --storage-driver=%s\n' \
        "$(date -u +%FT%TZ)" "$driver" >>"$LOG"
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then
                eval "exec $fd>&-" 2>/dev/null || true
            fi
        done
        exec setsid nohup dockerd \
            --storage-driver="$driver" \
            --bridge=none \
            --iptables=false \
            --ip6tables=false \
            --pidfile="$PIDFILE" \
            --host="unix://$SOCK" \
            </dev/null >>"$LOG" 2>&1
    ) &
    printf '%s' "$!"
}

# wait_up PID: poll until docker answers; fail early if PID exits.
# PID may be empty (waiting on a dockerd that was not started here).
wait_up() {
    local pid=$1 deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        if docker_answers; then
            return 0
        fi
        if [[ -n $pid ]] && ! proc_alive "$pid"; then
            return 2
        fi
        sleep 0.25
    done
    return 1
}

fail() {
    say "$1"
    if [[ -f $LOG ]]; then
        say "last lines of $LOG:"
        grep -v 'module=grpc' "$LOG" | tail -n 30 >&2
    fi
    exit 1
}

# A live dockerd that does not answer yet may still be starting: wait for it.
# If it dies meanwhile, clean up after it and start a new one.
up=""
dockerd_pid=$(pid_in "$PIDFILE")
if proc_is "$dockerd_pid" dockerd; then
    say "dockerd (pid $dockerd_pid) is alive but not answering yet; waiting"
    rc=0
    wait_up "$dockerd_pid" || rc=$?
    if ((rc == 0)); then
        up=existing
    elif ((rc == 1)); then
        fail "dockerd (pid $dockerd_pid) is running but did not answer within ${TIMEOUT}s"
    else
        say "dockerd (pid $dockerd_pid) exited; starting a new one"
    fi
fi

if [[ -z $up ]]; then
    if [[ -n ${BERTH_STORAGE_DRIVER:-} ]]; then
        drivers=("$BERTH_STORAGE_DRIVER")
    else
        drivers=(overlay2 vfs)
    fi
    for driver in "${drivers[@]}"; do
        clear_stale
        pid=$(launch_dockerd "$driver")
        rc=0
        wait_up "$pid" || rc=$?
        if ((rc == 0)); then
            up=$driver
            break
        fi
        if ((rc == 1)); then
            fail "dockerd --storage-driver=$driver started (pid $pid) but did not answer within ${TIMEOUT}s"
        fi
        say "dockerd exited while starting with --storage-driver=$driver"
        grep -v 'module=grpc' "$LOG" | tail -n 3 >&2 || true
    done
    [[ -n $up ]] || fail "could not start dockerd with any of: ${drivers[*]}"
fi

elapsed=$(awk -v a="$start_ts" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
driver_now=$(docker info --format '{{.Driver}}' 2>/dev/null || echo '?')
say "Docker engine up (storage driver $driver_now) in ${elapsed}s; log: $LOG"
