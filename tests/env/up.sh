#!/usr/bin/env bash
# make env-up: builds (once) and starts the whole test environment, or reuses what runs.
#   - moto (DynamoDB + SQS) on one loopback port
#   - toxiproxy (network faults between a test's clients and moto or an apiserver), its API
#     on 127.0.0.1:8474 or the next free port
#   - two Kubernetes control planes, east and west (etcd, kube-apiserver,
#     kube-controller-manager, kube-scheduler, kwok) wired by `kwokctl --runtime binary`
#   - two fake nodes per cluster and the third-party CRDs (VolumeReplication, ...)
# Writes target/testenv/env.sh. Idempotent; safe to run concurrently (flock).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/versions.sh"
. "$here/lib.sh"

state="$(state_dir)"
mkdir -p "$state"
exec 8>"$state/env.lock"
flock 8

t0=$SECONDS
bash "$here/build.sh" >/dev/null
bash "$here/moto-up.sh"
bash "$here/toxiproxy-up.sh"

export KWOK_WORKDIR="$state/kwok"
kwokctl="$BIN_DIR/kwokctl"
kubectl="$BIN_DIR/kubectl"
cat >"$state/kwokctl.yaml" <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  bindAddress: 127.0.0.1
YAML

cluster_ready() { # cluster_ready <name>
  local kc="$state/$1.kubeconfig"
  [ -f "$kc" ] && timeout 5 "$kubectl" --kubeconfig "$kc" get --raw /readyz >/dev/null 2>&1
}

start_cluster() { # start_cluster <name>
  local name="$1" kc="$state/$1.kubeconfig" log="$state/kwokctl-$1.log"
  if cluster_ready "$name"; then
    echo "testenv: cluster $name is running" >&2
    return 0
  fi
  # A half-started or stopped cluster: remove what is left (kwokctl stops it by pid).
  "$kwokctl" delete cluster --name "$name" --kubeconfig "$kc" >"$log" 2>&1 8>&- || true
  rm -f "$kc"
  echo "testenv: starting cluster $name" >&2
  if ! "$kwokctl" -c "$state/kwokctl.yaml" create cluster --name "$name" --runtime binary \
      --disable-qps-limits \
      --etcd-binary="$BIN_DIR/etcd" \
      --kube-apiserver-binary="$BIN_DIR/kube-apiserver" \
      --kube-controller-manager-binary="$BIN_DIR/kube-controller-manager" \
      --kube-scheduler-binary="$BIN_DIR/kube-scheduler" \
      --kwok-controller-binary="$BIN_DIR/kwok" \
      --kubeconfig="$kc" --wait 120s >>"$log" 2>&1 8>&-; then
    echo "testenv: FAILED to start cluster $name; log: $log (component logs: $KWOK_WORKDIR/clusters/$name/logs)" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
}

setup_cluster() { # setup_cluster <name>: nodes and third-party CRDs, waited for
  local k=("$kubectl" --kubeconfig "$state/$1.kubeconfig")
  "${k[@]}" apply -f "$here/manifests/nodes.yaml" -f "$here/manifests/crds-external.yaml" >/dev/null
  "${k[@]}" wait --for=condition=Established --timeout=60s crd --all >/dev/null
  "${k[@]}" wait --for=condition=Ready --timeout=60s node --all >/dev/null
}

for c in east west; do
  start_cluster "$c"
  setup_cluster "$c"
done

. "$state/moto.env"
. "$state/toxiproxy.env"
cat >"$state/env.sh" <<ENV
# Written by tests/env/up.sh: source it to reach the test environment.
export EAST_KUBECONFIG=$state/east.kubeconfig
export WEST_KUBECONFIG=$state/west.kubeconfig
export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
export AWS_REGION=$AWS_REGION
export AWS_DEFAULT_REGION=$AWS_REGION
export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export KWOK_WORKDIR=$KWOK_WORKDIR
export TOXIPROXY_URL=$TOXIPROXY_URL
export FAILOVER_TESTENV_BIN=$BIN_DIR
export HELM=$HELM_BIN
case ":\$PATH:" in *":$BIN_DIR:"*) ;; *) export PATH="$BIN_DIR:\$PATH" ;; esac
ENV
echo "testenv: ready in $((SECONDS - t0)) s; source $state/env.sh" >&2
