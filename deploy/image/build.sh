#!/usr/bin/env bash
# make image: assembles an OCI image of failover-agent without pulling a base image.
#
# The image is one layer on nothing (scratch): the agent binary, the shared libraries
# `ldd` names for it (with the dynamic loader), the CA certificates, and /etc/passwd and
# /etc/group with the non-root user 65532 it runs as. umoci (Debian package) writes the OCI
# layout; the result:
#
#   target/image/oci/                 OCI image layout, tag failover-agent:<version>
#   target/image/failover-agent.tar   the same layout as one archive
#                                     (podman load < it; skopeo copy oci-archive:it ...)
#
#   PROFILE=release (default) builds `cargo build --release -p failover-agent` first;
#   AGENT_BIN=<path> packages that binary instead (no build), e.g. the debug build.
#   IMAGE_DIR=<dir> writes there instead of target/image.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
profile="${PROFILE:-release}"
out="${IMAGE_DIR:-$root/target/image}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
command -v umoci >/dev/null || { echo "image: umoci is missing (apt-get install umoci, or make env-build)" >&2; exit 1; }

bin="${AGENT_BIN:-}"
if [ -z "$bin" ]; then
  if [ "$profile" = release ]; then
    cargo build --release --locked -p failover-agent --bin failover-agent
  else
    cargo build --profile "$profile" --locked -p failover-agent --bin failover-agent
  fi
  dir="$profile"; [ "$profile" = dev ] && dir=debug
  bin="$target_dir/$dir/failover-agent"
fi
[ -x "$bin" ] || { echo "image: $bin is not an executable" >&2; exit 1; }
version="$("$bin" --version | awk '{print $2}')"
[ -n "$version" ] || { echo "image: $bin --version printed no version" >&2; exit 1; }

rm -rf "$out" && mkdir -p "$out"
rootfs="$out/rootfs"
mkdir -p "$rootfs"/{usr/local/bin,etc/ssl/certs,tmp}
chmod 1777 "$rootfs/tmp"
install -m 0755 "$bin" "$rootfs/usr/local/bin/failover-agent"

# Every library the dynamic linker resolves for the binary, and the loader itself, at the
# same paths as here (the binary's PT_INTERP names the loader's path).
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
[ -n "$libs" ] || { echo "image: ldd named no libraries for $bin" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done

# CA certificates (rustls reads the platform's roots for AWS endpoints).
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"

# The user the Deployment runs as (runAsUser 65532); no shell in the image.
cat >"$rootfs/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/usr/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin
PASSWD
cat >"$rootfs/etc/group" <<GROUP
root:x:0:
nonroot:x:65532:
GROUP
mkdir -p "$rootfs/home/nonroot"

# Reproducible timestamps: the commit's time, else the epoch.
epoch="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
find "$rootfs" -exec touch -h -d "@$epoch" {} +

layout="$out/oci"
image="$layout:failover-agent"
umoci init --layout "$layout"
umoci new --image "$image"
umoci insert --rootless --image "$image" "$rootfs" /
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
umoci config --image "$image" --tag "$version" \
  --created "$created" \
  --author "failover" \
  --os linux --architecture amd64 \
  --config.user 65532:65532 \
  --config.workingdir / \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.entrypoint /usr/local/bin/failover-agent \
  --config.cmd --admin-addr --config.cmd 0.0.0.0:9090 \
  --config.exposedports 9090/tcp \
  --config.label org.opencontainers.image.title=failover-agent \
  --config.label "org.opencontainers.image.version=$version"
umoci rm --image "$image"
umoci gc --layout "$layout"
tar -C "$layout" -cf "$out/failover-agent.tar" .
rm -rf "$rootfs"
echo "image: failover-agent:$version in $layout ($(du -sh "$out/failover-agent.tar" | cut -f1) as $out/failover-agent.tar)" >&2
