# shellcheck shell=bash
# shellcheck disable=SC2034  # settings used by the scripts that source this file
# Shared settings and helpers for e2e/cluster/* and e2e/prometheus/*. Source it, don't run it.

# --- versions and locations -------------------------------------------------------------------
K8S_VERSION=v1.34.4
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
KSM_VERSION=v2.16.0
# Upstream Prometheus with kubernetes_sd (e2e/prometheus/build), for the real node's stack.
PROM_K8S_VERSION=v2.55.1
# The PromQL engine of tests/victoriametrics.rs (e2e/victoriametrics/build).
VM_VERSION=v1.151.0

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_SRC="$E2E_ROOT/cluster"

CACHE_DIR="${HOMEOSTAT_CACHE:-$HOME/.cache/homeostat}"
K8S_BIN="$CACHE_DIR/k8s-$K8S_VERSION/bin"
KWOK_BIN="$CACHE_DIR/kwok-$KWOK_VERSION/bin"
HELM_BIN="$CACHE_DIR/helm-$HELM_VERSION/bin"
KSM_BIN="$CACHE_DIR/kube-state-metrics-$KSM_VERSION/bin"
PROM_K8S_BIN="$CACHE_DIR/prometheus-$PROM_K8S_VERSION/bin"
KWOK_STAGES="$CACHE_DIR/kwok-$KWOK_VERSION/stages.yaml"

STATE_DIR="${HOMEOSTAT_E2E_DIR:-/tmp/homeostat-e2e}"
PKI="$STATE_DIR/pki"
LOGS="$STATE_DIR/logs"
PIDS="$STATE_DIR/pids"

# --- ports (all on 127.0.0.1; override with the environment if they clash) -------------------
# set_ports: defaults <- HOMEOSTAT_*_PORT environment <- $STATE_DIR/ports (a cluster's ports, as
# `up` chose them, win, so later commands need no environment).
set_ports() {
  ETCD_CLIENT_PORT="${HOMEOSTAT_ETCD_PORT:-23790}"
  ETCD_PEER_PORT="${HOMEOSTAT_ETCD_PEER_PORT:-23800}"
  APISERVER_PORT="${HOMEOSTAT_APISERVER_PORT:-26443}"
  KCM_PORT="${HOMEOSTAT_KCM_PORT:-26257}"
  SCHEDULER_PORT="${HOMEOSTAT_SCHEDULER_PORT:-26259}"
  KWOK_PORT="${HOMEOSTAT_KWOK_PORT:-26247}"
  PROM_PORT="${HOMEOSTAT_PROM_PORT:-29090}"
  # The real node (realnode.sh): kubelet API and healthz, containerd's CRI stream server,
  # kube-state-metrics (pods of the real node; owners) and their telemetry ports.
  KUBELET_PORT="${HOMEOSTAT_KUBELET_PORT:-26250}"
  KUBELET_HEALTHZ_PORT="${HOMEOSTAT_KUBELET_HEALTHZ_PORT:-26248}"
  CONTAINERD_STREAM_PORT="${HOMEOSTAT_CONTAINERD_STREAM_PORT:-26251}"
  KSM_PORT="${HOMEOSTAT_KSM_PORT:-26280}"
  KSM_TELEMETRY_PORT="${HOMEOSTAT_KSM_TELEMETRY_PORT:-26281}"
  KSM_OWNERS_PORT="${HOMEOSTAT_KSM_OWNERS_PORT:-26282}"
  KSM_OWNERS_TELEMETRY_PORT="${HOMEOSTAT_KSM_OWNERS_TELEMETRY_PORT:-26283}"
  # 1: up starts the real node too (fails with the reason when this host cannot run it).
  REAL_NODE="${HOMEOSTAT_E2E_REAL_NODE:-1}"
  # Its name must resolve to 127.x (the apiserver reaches the kubelet by Hostname): the host name
  # when /etc/hosts maps it so, else localhost.
  REAL_NODE_NAME="${HOMEOSTAT_REAL_NODE_NAME:-$(default_node_name)}"
  # Pod network: the bridge's name and a /24 (gateway .1), so two clusters can coexist.
  CNI_BRIDGE="${HOMEOSTAT_CNI_BRIDGE:-hs-cni0}"
  POD_SUBNET="${HOMEOSTAT_POD_SUBNET:-10.244.0.0/24}"
  if [[ -f $STATE_DIR/ports ]]; then
    # shellcheck source=/dev/null
    source "$STATE_DIR/ports"
  fi
  APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"
  POD_GATEWAY="${POD_SUBNET%.0/24}.1"
  # The kubelet's cgroup root (kubepods below it), one per bridge name.
  CGROUP_ROOT="/homeostat-$CNI_BRIDGE"
}
default_node_name() {
  local h
  h=$(hostname 2>/dev/null || true)
  if [[ $h =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ && $(getent ahostsv4 "$h" 2>/dev/null | awk 'NR == 1 { print $1 }') == 127.* ]]; then
    echo "$h"
  else
    echo localhost
  fi
}
set_ports
PROMETHEUS_PORT_DEFAULT=29090

# Components in start order; `down` stops them in reverse (the real node's first, by realnode.sh).
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
REAL_NODE_COMPONENTS=(containerd kubelet kube-state-metrics kube-state-metrics-owners)
# binary_of COMPONENT: the binary a component runs.
binary_of() { if [[ $1 == kube-state-metrics-owners ]]; then echo kube-state-metrics; else echo "$1"; fi; }

# --- output -----------------------------------------------------------------------------------
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# now: seconds since the epoch with microseconds; elapsed START -> "12.3s"
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v s="$1" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", e - s }'; }

# Print the last lines of a log file to stderr (for failure messages).
show_log() {
  local f=$1
  [[ -f $f ]] || return 0
  printf -- '----- last 25 lines of %s -----\n' "$f" >&2
  tail -n 25 "$f" >&2
  printf -- '-----\n' >&2
}

# --- process bookkeeping ----------------------------------------------------------------------
# Prometheus keeps everything (config, tsdb, log, PID) in its own directory, which `up` leaves alone
# while Prometheus runs and `down` removes with the rest.
PROM_DIR="$STATE_DIR/prometheus"

# pidfile_of NAME / logfile_of NAME
pidfile_of() { if [[ $1 == prometheus ]]; then echo "$PROM_DIR/prometheus.pid"; else echo "$PIDS/$1.pid"; fi; }
logfile_of() { if [[ $1 == prometheus ]]; then echo "$PROM_DIR/prometheus.log"; else echo "$LOGS/$1.log"; fi; }

# pid_of NAME: the PID recorded for component NAME, if that process is alive and still runs the
# binary we started (guards against PID reuse). Prints nothing and returns 1 otherwise.
pid_of() {
  local name=$1 pidfile pid cmd
  pidfile=$(pidfile_of "$name")
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"/$(binary_of "$name") "* ]] || return 1
  echo "$pid"
}

# start_bg NAME BINARY ARGS...: run in its own session (survives the caller's process group),
# stdout+stderr to $LOGS/NAME.log, PID to $PIDS/NAME.pid.
start_bg() {
  local name=$1 pidfile logfile; shift
  pidfile=$(pidfile_of "$name") logfile=$(logfile_of "$name")
  mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
  # Not a process-group leader here, so setsid calls setsid(2) and execs: $! is the real PID.
  setsid "$@" </dev/null >>"$logfile" 2>&1 &
  local pid=$! i cmd
  echo "$pid" >"$pidfile"
  # Until the forked shell has exec'd, /proc/PID/cmdline is this script's, and pid_of (which
  # matches the binary to guard against PID reuse) would call a healthy start dead: on a loaded
  # machine a wait_until right after start_bg saw exactly that. Wait (at most 10 s) for the exec,
  # or for the process to end, which the caller's wait_until then reports with the log.
  for ((i = 0; i < 100; i++)); do
    running "$pid" || break
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || break
    [[ $cmd == *"/$(binary_of "$name") "* ]] && break
    sleep 0.1
  done
}

# running PID: the process exists and is not a zombie (an exited child stays a zombie until its
# reaper, which can be slow, collects it).
running() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# stop_pid NAME [TIMEOUT_SECONDS]: TERM the recorded process, KILL after the timeout.
stop_pid() {
  local name=$1 timeout=${2:-15} pid i
  if ! pid=$(pid_of "$name"); then
    rm -f "$(pidfile_of "$name")"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    running "$pid" || break
    sleep 0.1
  done
  if running "$pid"; then
    log "$name (pid $pid) still running after ${timeout}s: KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do running "$pid" || break; sleep 0.1; done
  fi
  rm -f "$(pidfile_of "$name")"
  log "stopped $name (pid $pid)"
}

# wait_until TIMEOUT_SECONDS WHAT NAME COMMAND...: poll COMMAND every 0.2s until it succeeds.
# Fails early, with the component's log, if process NAME dies ("-" = no process to watch).
wait_until() {
  local timeout=$1 what=$2 name=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ $name != - ]] && ! pid_of "$name" >/dev/null; then
      show_log "$(logfile_of "$name")"
      die "$name exited while waiting for $what (log: $(logfile_of "$name"))"
    fi
    if ((SECONDS >= deadline)); then
      if [[ $name != - ]]; then
        show_log "$(logfile_of "$name")"
        die "timed out after ${timeout}s waiting for $what (log: $(logfile_of "$name"))"
      fi
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep 0.2
  done
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Admin kubectl against the e2e cluster.
kc() { "$K8S_BIN/kubectl" --kubeconfig "$STATE_DIR/kubeconfig" "$@"; }
