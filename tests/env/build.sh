#!/usr/bin/env bash
# Builds the test environment's binaries from Go modules into a cache outside the
# repository, and the moto venv. Every step is skipped when its output exists.
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  <- k8s.io/kubernetes
#   etcd                                                              <- go.etcd.io/etcd/server/v3
#   kwok, kwokctl                                                     <- sigs.k8s.io/kwok
#   toxiproxy-server, toxiproxy-cli (versioned names)                 <- github.com/Shopify/toxiproxy/v2
#   helm (versioned name)                                             <- helm.sh/helm/v3
#   moto_server                                                       <- PyPI moto[dynamodb,sqs]
#   promtool, chromium, umoci, podman + runc (when missing)           <- Debian packages
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/versions.sh"

mkdir -p "$BIN_DIR" "$CACHE_DIR/logs" "$CACHE_DIR/build"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

step() { # step <name> <log> <command...>: runs a build step, names it and its log on failure
  local name="$1" log="$2"; shift 2
  local t0=$SECONDS
  echo "testenv: building $name (log: $log)" >&2
  if ! "$@" >"$log" 2>&1; then
    echo "testenv: FAILED step '$name'; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  echo "testenv: built $name in $((SECONDS - t0)) s" >&2
}

build_kubernetes() {
  local dir="$CACHE_DIR/build/kubernetes" v="$K8S_VERSION" s="0.${K8S_VERSION#1.}"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init local/k8sbin
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$v" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  # k8s.io/kubernetes points its staging modules at ./staging; as a dependency those
  # replaces are ignored, so pin each one to its published v0.X.Y.
  for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod"); do
    go mod edit -replace="$m=$m@v$s"
  done
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v$v" "k8s.io/kubernetes/cmd/kube-controller-manager@v$v" \
    "k8s.io/kubernetes/cmd/kube-scheduler@v$v" "k8s.io/kubernetes/cmd/kubectl@v$v"
  local minor p=k8s.io/component-base/version c=k8s.io/client-go/pkg/version
  minor=$(echo "$v" | cut -d. -f2)
  local ldf="-s -w -X $p.gitVersion=v$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $c.gitVersion=v$v -X $c.gitMajor=1 -X $c.gitMinor=$minor"
  go build -trimpath -ldflags "$ldf" -o "$BIN_DIR/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  local dir="$CACHE_DIR/build/etcd"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init local/etcdbin
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3
}

build_kwok() {
  local dir="$CACHE_DIR/build/kwok"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init local/kwokbin
  go get "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@v$KWOK_VERSION"
  go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" -o "$BIN_DIR/" \
    sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
}

build_toxiproxy() {
  local dir="$CACHE_DIR/build/toxiproxy" m=github.com/Shopify/toxiproxy/v2
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init local/toxiproxybin
  go get "$m/cmd/server@v$TOXIPROXY_VERSION" "$m/cmd/cli@v$TOXIPROXY_VERSION"
  local ldf="-s -w -X $m.Version=v$TOXIPROXY_VERSION"
  go build -trimpath -ldflags "$ldf" -o "$TOXIPROXY_SERVER" "$m/cmd/server"
  go build -trimpath -ldflags "$ldf" -o "$TOXIPROXY_CLI" "$m/cmd/cli"
}

build_helm() {
  local dir="$CACHE_DIR/build/helm" m=helm.sh/helm/v3
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init local/helmbin
  go get "$m/cmd/helm@v$HELM_VERSION"
  # As helm's own Makefile: the Kubernetes version `helm template` and `helm lint` assume
  # is the one of the client-go it is built with (v0.X.Y -> 1.X).
  local kv kmaj kmin
  kv=$(go list -m -f '{{.Version}}' k8s.io/client-go)
  kv="${kv#v}"; kmaj=$(( ${kv%%.*} + 1 )); kmin=$(echo "$kv" | cut -d. -f2)
  local ldf="-s -w -X $m/internal/version.version=v$HELM_VERSION"
  for p in pkg/lint/rules pkg/chartutil; do
    ldf="$ldf -X $m/$p.k8sVersionMajor=$kmaj -X $m/$p.k8sVersionMinor=$kmin"
  done
  go build -trimpath -ldflags "$ldf" -o "$HELM_BIN" "$m/cmd/helm"
  ln -sf "$(basename "$HELM_BIN")" "$BIN_DIR/helm"
}

build_moto() {
  rm -rf "$VENV_DIR"
  python3 -m venv "$VENV_DIR"
  "$VENV_DIR/bin/pip" install --disable-pip-version-check -q "moto[dynamodb,sqs,server]==$MOTO_VERSION"
}

# debian_packages <package...>: installs Debian packages with apt (as root, else sudo).
debian_packages() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"
}

want() { [ ! -x "$1" ]; }

# promtool checks the alerting rules, chromium renders the operation report, umoci
# assembles the agent's image (make image), podman with runc runs it in a test.
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium fonts-dejavu-core)
command -v umoci >/dev/null || missing+=(umoci)
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
if [ ${#missing[@]} -gt 0 ]; then
  step "Debian packages: ${missing[*]}" "$CACHE_ROOT/apt.log" debian_packages "${missing[@]}"
fi
if want "$VENV_DIR/bin/moto_server"; then step moto "$CACHE_DIR/logs/moto.log" build_moto; fi
if want "$BIN_DIR/kwokctl" || want "$BIN_DIR/kwok"; then step kwok "$CACHE_DIR/logs/kwok.log" build_kwok; fi
if want "$TOXIPROXY_SERVER" || want "$TOXIPROXY_CLI"; then
  step toxiproxy "$CACHE_DIR/logs/toxiproxy.log" build_toxiproxy
fi
if want "$HELM_BIN" || want "$BIN_DIR/helm"; then step helm "$CACHE_DIR/logs/helm.log" build_helm; fi
if want "$BIN_DIR/etcd"; then step etcd "$CACHE_DIR/logs/etcd.log" build_etcd; fi
if want "$BIN_DIR/kube-apiserver" || want "$BIN_DIR/kube-controller-manager" \
   || want "$BIN_DIR/kube-scheduler" || want "$BIN_DIR/kubectl"; then
  step kubernetes "$CACHE_DIR/logs/kubernetes.log" build_kubernetes
fi
echo "$BIN_DIR"
