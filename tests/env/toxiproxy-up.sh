#!/usr/bin/env bash
# Starts (or reuses) the toxiproxy server whose proxies put network faults between a
# test's clients and moto or a kube-apiserver (tests/src/faults.rs creates and removes
# them). Its API listens on loopback, on 8474 or the next free port. Writes
# target/testenv/toxiproxy.env with TOXIPROXY_URL. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/versions.sh"
. "$here/lib.sh"

state="$(state_dir)"
mkdir -p "$state"
exec 9>"$state/toxiproxy.lock"
flock 9

if [ ! -x "$TOXIPROXY_SERVER" ]; then
  bash "$here/build.sh" >/dev/null
fi

if [ -f "$state/toxiproxy.env" ] && [ -f "$state/toxiproxy.pid" ] \
   && kill -0 "$(cat "$state/toxiproxy.pid")" 2>/dev/null; then
  . "$state/toxiproxy.env"
  if curl -fsS -o /dev/null "$TOXIPROXY_URL/version"; then
    exit 0
  fi
fi

port=$(free_port 8474)
daemon "$state/toxiproxy.log" "$state/toxiproxy.pid" "$TOXIPROXY_SERVER" -host 127.0.0.1 -port "$port"
if ! wait_http "http://127.0.0.1:$port/version" 30; then
  echo "testenv: toxiproxy did not answer on port $port; log: $state/toxiproxy.log" >&2
  tail -n 20 "$state/toxiproxy.log" >&2
  exit 1
fi
cat >"$state/toxiproxy.env" <<ENV
export TOXIPROXY_URL=http://127.0.0.1:$port
ENV
echo "testenv: toxiproxy listening on 127.0.0.1:$port" >&2
