# Versions of the test environment's components. Sourced by the other scripts.
# Changing one of them changes the cache directory (or, for toxiproxy, the binary's
# name), so the binaries are rebuilt.
K8S_VERSION="${K8S_VERSION:-1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-0.8.0}"
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
TOXIPROXY_VERSION="${TOXIPROXY_VERSION:-2.12.0}"
HELM_VERSION="${HELM_VERSION:-3.21.4}"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/failover-testenv"
CACHE_DIR="$CACHE_ROOT/k8s-v${K8S_VERSION}-etcd-v${ETCD_VERSION}-kwok-v${KWOK_VERSION}"
BIN_DIR="$CACHE_DIR/bin"
VENV_DIR="$CACHE_ROOT/moto-${MOTO_VERSION}-venv"
# toxiproxy sits in BIN_DIR under a versioned name, so it does not change CACHE_DIR.
TOXIPROXY_SERVER="$BIN_DIR/toxiproxy-server-v${TOXIPROXY_VERSION}"
TOXIPROXY_CLI="$BIN_DIR/toxiproxy-cli-v${TOXIPROXY_VERSION}"
# helm too (the chart tests), under a versioned name in BIN_DIR.
HELM_BIN="$BIN_DIR/helm-v${HELM_VERSION}"
