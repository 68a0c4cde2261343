#!/usr/bin/env bash
# make env-status: what of the test environment is running.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/versions.sh"
. "$here/lib.sh"

state="$(state_dir)"
echo "binaries: $BIN_DIR $( [ -x "$BIN_DIR/kube-apiserver" ] && echo '(built)' || echo '(not built)')"
if [ -f "$state/moto.env" ]; then
  . "$state/moto.env"
  if curl -fsS -o /dev/null "$AWS_ENDPOINT_URL/moto-api/" 2>/dev/null; then
    echo "moto: up at $AWS_ENDPOINT_URL (pid $(cat "$state/moto.pid" 2>/dev/null))"
  else
    echo "moto: DOWN (expected at $AWS_ENDPOINT_URL)"
  fi
else
  echo "moto: not started"
fi
if [ -f "$state/toxiproxy.env" ]; then
  . "$state/toxiproxy.env"
  if version=$(curl -fsS "$TOXIPROXY_URL/version" 2>/dev/null); then
    proxies=$(curl -fsS "$TOXIPROXY_URL/proxies" 2>/dev/null | python3 -c 'import json,sys;print(len(json.load(sys.stdin)))' 2>/dev/null)
    echo "toxiproxy: up at $TOXIPROXY_URL (pid $(cat "$state/toxiproxy.pid" 2>/dev/null), $version, ${proxies:-?} proxies)"
  else
    echo "toxiproxy: DOWN (expected at $TOXIPROXY_URL)"
  fi
else
  echo "toxiproxy: not started"
fi
for c in east west; do
  kc="$state/$c.kubeconfig"
  if [ -f "$kc" ] && timeout 5 "$BIN_DIR/kubectl" --kubeconfig "$kc" get --raw /readyz >/dev/null 2>&1; then
    nodes=$("$BIN_DIR/kubectl" --kubeconfig "$kc" get nodes --no-headers 2>/dev/null | awk '$2=="Ready"' | wc -l)
    echo "cluster $c: up at $(grep -m1 server: "$kc" | awk '{print $2}'), $nodes Ready nodes"
  elif [ -f "$kc" ]; then
    echo "cluster $c: DOWN"
  else
    echo "cluster $c: not started"
  fi
done
[ -f "$state/env.sh" ] && echo "env: . $state/env.sh"
exit 0
