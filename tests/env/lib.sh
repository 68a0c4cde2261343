# Helpers shared by the test environment scripts.

# state_dir: where the running environment keeps pids, logs and env files.
state_dir() {
  local top
  top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  echo "${FAILOVER_TESTENV_DIR:-$top/target/testenv}"
}

# port_free <port>: true when nothing listens on 127.0.0.1:<port>.
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port <preferred>: the preferred port if it is free, else the next free one.
free_port() {
  local p="$1"
  while ! port_free "$p"; do p=$((p + 1)); done
  echo "$p"
}

# wait_http <url> <seconds>: waits until the url answers (any HTTP status).
wait_http() {
  local url="$1" deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    if curl -ksS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

# daemon <log> <pidfile> <command...>: starts a long-running process in its own session,
# detached from every inherited file descriptor, and records its pid.
daemon() {
  local log="$1" pidfile="$2"; shift 2
  (
    for fd in /proc/$BASHPID/fd/*; do
      n="${fd##*/}"
      if [ "$n" -gt 2 ] 2>/dev/null; then eval "exec $n>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@" >"$log" 2>&1 </dev/null
  ) &
  echo $! >"$pidfile"
}
