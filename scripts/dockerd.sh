#!/usr/bin/env bash
# Starts, stops and reports the Docker engine the job runner needs, on machines without systemd.
#
#   scripts/dockerd.sh start   start dockerd in the background unless an engine already answers;
#                              waits until `docker info` works (at most RAAS_DOCKERD_WAIT_S, 30 s)
#   scripts/dockerd.sh stop    stop the engine only if this script started it (pid file below)
#   scripts/dockerd.sh status  print whether an engine answers and who started it
#
# Idempotent. The pid file var/dockerd.pid marks "we started it", so `stop` never kills an engine
# that someone else manages. Storage driver: overlay2 first; if the engine cannot use it (nested
# overlay in a sandbox), restart with vfs. iptables: when the kernel refuses iptables rules the engine
# is started with --iptables=false --bridge=none — job containers run with network_mode=none and the
# runner image is built with --network none, so no bridge is needed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="$ROOT/var"
PIDFILE="$VAR/dockerd.pid"
LOG="$VAR/dockerd.log"
WAIT_S="${RAAS_DOCKERD_WAIT_S:-30}"

engine_up() { timeout 5 docker info >/dev/null 2>&1; }

our_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" == dockerd ]] \
    && echo "$pid"
}

wait_up() {  # $1 = pid of the dockerd we launched
  local deadline=$((SECONDS + WAIT_S))
  while ((SECONDS < deadline)); do
    engine_up && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.3
  done
  return 1
}

launch() {  # extra dockerd flags as arguments; echoes nothing, sets PIDFILE on success
  : >"$LOG.try"
  dockerd --host unix:///var/run/docker.sock "$@" >>"$LOG.try" 2>&1 &
  local pid=$!
  if wait_up "$pid"; then
    echo "$pid" >"$PIDFILE"
    cat "$LOG.try" >>"$LOG"; rm -f "$LOG.try"
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  cat "$LOG.try" >>"$LOG"; rm -f "$LOG.try"
  rm -f /var/run/docker.pid
  return 1
}

iptables_ok() { command -v iptables >/dev/null && iptables -t nat -L -n >/dev/null 2>&1; }

start() {
  if engine_up; then echo "dockerd: running"; return 0; fi
  if ! command -v dockerd >/dev/null; then
    echo "dockerd: not installed (scripts/install-system-deps.sh installs docker.io)" >&2; return 1
  fi
  [[ "$(id -u)" == 0 ]] || { echo "dockerd: must be root to start the engine" >&2; return 1; }
  mkdir -p "$VAR"
  local net=()
  iptables_ok || net=(--iptables=false --ip6tables=false --bridge=none)
  local t0=$SECONDS
  if launch "${net[@]}" && docker info --format '{{.Driver}}' 2>/dev/null | grep -q overlay; then
    echo "dockerd: started (pid $(cat "$PIDFILE"), overlay2, $((SECONDS - t0)) s), log $LOG"
    return 0
  fi
  # overlay2 refused (or the daemon silently picked another driver): stop ours, use vfs.
  stop_ours quiet || true
  if launch "${net[@]}" --storage-driver vfs; then
    echo "dockerd: started (pid $(cat "$PIDFILE"), vfs, $((SECONDS - t0)) s), log $LOG"
    return 0
  fi
  echo "dockerd: failed to start within ${WAIT_S} s; see $LOG" >&2
  tail -n 20 "$LOG" >&2 || true
  return 1
}

stop_ours() {
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$PIDFILE"
    [[ "${1:-}" == quiet ]] || { engine_up && echo "dockerd: not started by us; left running" || echo "dockerd: not running"; }
    return 0
  fi
  kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$PIDFILE"
  [[ "${1:-}" == quiet ]] || echo "dockerd: stopped (pid $pid)"
}

status() {
  if engine_up; then
    local who="someone else"; our_pid >/dev/null && who="scripts/dockerd.sh (pid $(our_pid))"
    echo "dockerd: running, driver $(docker info --format '{{.Driver}}'), started by $who"
  else
    echo "dockerd: not running"; return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop_ours ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
