#!/usr/bin/env bash
# make env-down: stops exactly what up.sh started (kwokctl stops each component by its
# pid file; moto and toxiproxy by their pids) and removes the clusters' state. Idempotent.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/versions.sh"
. "$here/lib.sh"

state="$(state_dir)"
[ -d "$state" ] || exit 0
export KWOK_WORKDIR="$state/kwok"
for c in east west; do
  if [ -d "$KWOK_WORKDIR/clusters/$c" ] && [ -x "$BIN_DIR/kwokctl" ]; then
    "$BIN_DIR/kwokctl" delete cluster --name "$c" --kubeconfig "$state/$c.kubeconfig" >/dev/null 2>&1 \
      && echo "testenv: stopped cluster $c" >&2
  fi
  rm -f "$state/$c.kubeconfig"
done
if [ -f "$state/moto.pid" ]; then
  pid=$(cat "$state/moto.pid")
  if kill "$pid" 2>/dev/null; then echo "testenv: stopped moto (pid $pid)" >&2; fi
  rm -f "$state/moto.pid" "$state/moto.env"
fi
if [ -f "$state/toxiproxy.pid" ]; then
  pid=$(cat "$state/toxiproxy.pid")
  if kill "$pid" 2>/dev/null; then echo "testenv: stopped toxiproxy (pid $pid)" >&2; fi
  rm -f "$state/toxiproxy.pid" "$state/toxiproxy.env"
fi
rm -f "$state/env.sh"
