#!/usr/bin/env bash
# make demo: a CONSISTENCY failover of a sample application from east to west, on the
# local test environment, with the real binaries.
#
#   1. starts (or reuses) the test environment and builds the binaries;
#   2. creates a fresh table (failover-demo-<timestamp>) and the inboxes (failover-demo-*);
#   3. installs the failover CRDs and deploy/examples/demo-app.yaml in both clusters
#      (namespace shop, re-created): active in east, passive in west;
#   4. starts the storage simulator and one agent per cluster in the background
#      (pids and logs under target/demo/);
#   5. registers shop/shop active in east and fails it over to west, then prints the
#      records and both clusters' objects;
#   6. leaves everything running. `bash tests/env/demo-down.sh` stops the demo's processes,
#      `make env-down` the environment.
#
# Running it again stops the previous demo's processes first and starts from scratch.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
top="$(cd "$here/../.." && pwd)"
. "$here/lib.sh"
cd "$top"

demo="$top/target/demo"
group=shop/shop
ns=shop
prefix=failover-demo-
table="failover-demo-$(date -u +%Y%m%d%H%M%S)"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { echo "demo: FAILED: $*" >&2; exit 1; }

# --- 0. the previous demo -------------------------------------------------------------------
bash "$here/demo-down.sh"
mkdir -p "$demo"
rm -f "$demo"/*.log "$demo/violations.json"

# --- 1. environment and binaries ------------------------------------------------------------
step "test environment (make env-up)"
bash "$here/up.sh"
step "building failover-agent, failoverctl, failover-storage-sim"
cargo build -p failover-agent -p failover-coordinator -p failover-tests --bins
agent_bin="$top/target/debug/failover-agent"
ctl_bin="$top/target/debug/failoverctl"
sim_bin="$top/target/debug/failover-storage-sim"

# --- 2. table and queues --------------------------------------------------------------------
. "$top/target/testenv/env.sh"
# What the agents and failoverctl read when no flag is given: `. target/demo/env.sh` and
# failoverctl talks to this demo's table.
cat >"$demo/env.sh" <<ENV
# Written by tests/env/demo.sh: source it to use failoverctl against the running demo.
. $top/target/testenv/env.sh
export FAILOVER_TABLE=$table
export FAILOVER_QUEUE_PREFIX=$prefix
case ":\$PATH:" in *":$top/target/debug:"*) ;; *) export PATH="$top/target/debug:\$PATH" ;; esac
ENV
ctl() { "$ctl_bin" --table "$table" --queue-prefix "$prefix" --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }
has_aws() { command -v aws >/dev/null 2>&1 && aws --version >/dev/null 2>&1; }

step "table $table, queues ${prefix}east/west (failoverctl setup)"
ctl setup --cluster east --cluster west
if has_aws; then
  # Wake-ups a previous demo left behind name operations of another table: drop them.
  for q in "${prefix}east" "${prefix}west"; do
    url="$(aws sqs get-queue-url --queue-name "$q" --query QueueUrl --output text 2>/dev/null)" &&
      aws sqs purge-queue --queue-url "$url" >/dev/null 2>&1 || true
  done
fi

# --- 3. CRDs and the application ------------------------------------------------------------
kc() { # kc <cluster> <kubectl args...>
  local c="$1"; shift
  local cfg="$EAST_KUBECONFIG"
  [ "$c" = west ] && cfg="$WEST_KUBECONFIG"
  kubectl --kubeconfig "$cfg" "$@"
}

# A previous demo's namespace goes first (both clusters at once: deleting takes a while).
step "namespace $ns: deleting a previous demo's in east and west"
for c in east west; do
  kc "$c" delete namespace "$ns" --ignore-not-found --wait=false
done
for c in east west; do
  kc "$c" wait --for=delete "namespace/$ns" --timeout=180s 2>/dev/null || true
  kc "$c" get namespace "$ns" >/dev/null 2>&1 && die "namespace $ns in $c is still being deleted"
done
for c in east west; do
  step "$c: failover CRDs and deploy/examples/demo-app.yaml"
  "$agent_bin" crd | kc "$c" apply --server-side --force-conflicts --field-manager failover-demo -f -
  kc "$c" wait --for=condition=Established --timeout=60s \
    crd/failovergroups.failover.io crd/failovers.failover.io >/dev/null
  kc "$c" apply -f deploy/examples/demo-app.yaml
done

step "west: the passive side (replicas 0, traffic ignored, volumes secondary, suspended)"
kc west -n "$ns" scale deployment/api statefulset/db --replicas=0
kc west -n "$ns" patch cronjob/backup --type=merge -p '{"spec":{"suspend":true}}'
kc west -n "$ns" annotate --overwrite ingress/shop virtualservice/shop \
  external-dns.alpha.kubernetes.io/controller=ignore
kc west -n "$ns" patch helmrelease/shop --type=merge -p '{"spec":{"suspend":true}}'
kc west -n "$ns" patch volumereplication/db-data volumereplication/api-data --type=merge \
  -p '{"spec":{"replicationState":"secondary"}}'
# The apply started west's pods for a moment; the simulator starts only once they are gone.
kc west -n "$ns" wait --for=delete pod --all --timeout=60s

# --- 4. storage simulator and agents --------------------------------------------------------
step "storage simulator and agents (background; logs and pids in target/demo/)"
daemon "$demo/storage-sim.log" "$demo/storage-sim.pid" "$sim_bin" \
  --cluster "east=$EAST_KUBECONFIG" --cluster "west=$WEST_KUBECONFIG" \
  --namespace "$ns" --latency 500ms --violations "$demo/violations.json"
echo "storage simulator: pid $(cat "$demo/storage-sim.pid"), log target/demo/storage-sim.log" >&2

echo "waiting: east's volumes Primary, west's Secondary, east's workloads ready" >&2
kc east -n "$ns" wait --for=jsonpath='{.status.state}'=Primary --timeout=60s \
  volumereplication/db-data volumereplication/api-data >/dev/null
kc west -n "$ns" wait --for=jsonpath='{.status.state}'=Secondary --timeout=60s \
  volumereplication/db-data volumereplication/api-data >/dev/null
kc east -n "$ns" rollout status --timeout=60s deployment/api >/dev/null
kc east -n "$ns" rollout status --timeout=60s statefulset/db >/dev/null

port=9190
for c in east west; do
  port="$(free_port "$port")"
  cfg="$EAST_KUBECONFIG"
  [ "$c" = west ] && cfg="$WEST_KUBECONFIG"
  RUST_LOG="${RUST_LOG:-info}" daemon "$demo/agent-$c.log" "$demo/agent-$c.pid" "$agent_bin" \
    --cluster "$c" --kubeconfig "$cfg" --table "$table" --queue-prefix "$prefix" \
    --endpoint-url "$AWS_ENDPOINT_URL" --admin-addr "127.0.0.1:$port" \
    --reread-interval 2s --heartbeat-interval 2s
  echo "$port" >"$demo/agent-$c.port"
  echo "agent $c: pid $(cat "$demo/agent-$c.pid"), admin http://127.0.0.1:$port, log target/demo/agent-$c.log" >&2
  port=$((port + 1))
done

wait_ready() { # wait_ready <cluster>: /ready answers 200 within 60 s, or the agent died
  local c="$1" port pid deadline=$((SECONDS + 60))
  port="$(cat "$demo/agent-$c.port")"
  pid="$(cat "$demo/agent-$c.pid")"
  until curl -fsS -o /dev/null "http://127.0.0.1:$port/ready" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$demo/agent-$c.log" >&2
      die "agent $c exited; log: target/demo/agent-$c.log"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$demo/agent-$c.log" >&2
      die "agent $c is not ready after 60 s; log: target/demo/agent-$c.log"
    fi
    sleep 0.2
  done
  echo "agent $c: ready" >&2
}
wait_ready east
wait_ready west

# --- 5. register and fail over --------------------------------------------------------------
step "failoverctl register $group --active east"
ctl register "$group" --active east

step "failoverctl failover $group --to west --wait"
set +e
ctl failover "$group" --to west --reason "make demo" --wait --timeout 5m | tee "$demo/failover.out"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  echo >&2
  for f in agent-east agent-west storage-sim; do
    echo "--- last lines of target/demo/$f.log" >&2
    tail -n 25 "$demo/$f.log" >&2
  done
  ctl status "$group" >&2 || true
  die "failoverctl failover exited $rc (see target/demo/*.log; the processes keep running)"
fi

# "shop/shop: operation <id> started (east -> west, ...)"
op="$(sed -n 's/^.*: operation \([0-9a-f-]*\) started .*$/\1/p' "$demo/failover.out" | head -n 1)"
[ -n "$op" ] || die "no operation id in the output of failoverctl failover (target/demo/failover.out)"

step "handoff of operation $op: the group state (DynamoDB table $table)"
if has_aws; then
  # The query the README documents: the group state carries the handoff of the operation in
  # flight, or of the last one (lastOpId).
  aws dynamodb get-item --table-name "$table" --consistent-read \
    --key "{\"PK\":{\"S\":\"GROUP#$group\"},\"SK\":{\"S\":\"STATE\"}}" \
    --query '{op: Item.opId.S, last: Item.lastOpId.S, epoch: Item.epoch.N, groupReadyAt: Item.groupReadyAt.N, claimedAt: Item.promotionStartedAt.N, ready: Item.ready.M, promoted: Item.promoted.M}' \
    --output json
else
  # No aws CLI: failoverctl watch on the finished operation shows each volume's record.
  ctl watch "$op" --timeout 10s 2>&1
fi
step "failoverctl status $group / history"
ctl status "$group" -o yaml
ctl history "$group"

for c in east west; do
  step "$c: kubectl -n $ns get failovers,failovergroups,deployments,statefulsets,cronjobs,volumereplications"
  kc "$c" -n "$ns" get failovers
  kc "$c" -n "$ns" get failovergroups
  kc "$c" -n "$ns" get deployments,statefulsets,cronjobs
  kc "$c" -n "$ns" get volumereplications
  kc "$c" -n "$ns" get ingress,virtualservices \
    -o custom-columns='KIND:.kind,NAME:.metadata.name,DNS-CONTROLLER:.metadata.annotations.external-dns\.alpha\.kubernetes\.io/controller'
  kc "$c" -n "$ns" get helmreleases -o custom-columns='KIND:.kind,NAME:.metadata.name,SUSPEND:.spec.suspend'
done

step "storage simulator violations"
if [ -s "$demo/violations.json" ]; then cat "$demo/violations.json"; echo; else echo "(no violations file yet)"; fi

# --- 6. what next ---------------------------------------------------------------------------
east_port="$(cat "$demo/agent-east.port")"
west_port="$(cat "$demo/agent-west.port")"
cat <<HINT

The demo keeps running: shop/shop is now active in west.
Try next (after \`. target/demo/env.sh\`, which sets FAILOVER_TABLE=$table and PATH):
  failoverctl failover $group --to east --wait     # fail back
  failoverctl status $group; failoverctl history; failoverctl clusters
  kubectl --kubeconfig "\$WEST_KUBECONFIG" -n $ns get failovers,failovergroups,deploy,sts,vr
  curl -s http://127.0.0.1:$east_port/metrics     # east agent (west: port $west_port)
  tail -f target/demo/agent-east.log target/demo/agent-west.log target/demo/storage-sim.log
Stop:
  bash tests/env/demo-down.sh   # the agents and the storage simulator (by pid)
  make env-down                 # the clusters and moto
HINT
