#!/usr/bin/env bash
# Stops what `make demo` (tests/env/demo.sh) started in the background: both agents and the
# storage simulator, each by the pid recorded under target/demo/. The test environment
# (clusters, moto) keeps running; `make env-down` stops it. Idempotent.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
top="$(cd "$here/../.." && pwd)"
demo="$top/target/demo"

# stop <name> <binary>: SIGTERM the pid in $demo/<name>.pid if it still runs <binary>, then
# wait up to 10 s for it to exit (SIGKILL after that).
stop() {
  local name="$1" bin="$2" pidfile="$demo/$1.pid" pid i
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  # A recorded pid may have been reused by another process since: only stop ours.
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$bin"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      echo "demo: killed $name (pid $pid) after 10 s" >&2
    else
      echo "demo: stopped $name (pid $pid)" >&2
    fi
  fi
  rm -f "$pidfile"
}

stop agent-east failover-agent
stop agent-west failover-agent
stop storage-sim failover-storage-sim
exit 0
