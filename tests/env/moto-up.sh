#!/usr/bin/env bash
# Starts (or reuses) the moto server that plays DynamoDB and SQS on loopback, with its
# DynamoDB backend serialised (moto_linearizable.py) so transactions are atomic as on AWS.
# Writes target/testenv/moto.env with AWS_ENDPOINT_URL and friends. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/versions.sh"
. "$here/lib.sh"

state="$(state_dir)"
mkdir -p "$state"
exec 9>"$state/moto.lock"
flock 9

if [ ! -x "$VENV_DIR/bin/moto_server" ]; then
  bash "$here/build.sh" >/dev/null
fi

if [ -f "$state/moto.env" ] && [ -f "$state/moto.pid" ] && kill -0 "$(cat "$state/moto.pid")" 2>/dev/null; then
  . "$state/moto.env"
  if curl -fsS -o /dev/null "$AWS_ENDPOINT_URL/moto-api/"; then
    exit 0
  fi
fi

port=$(free_port 5055)
daemon "$state/moto.log" "$state/moto.pid" "$VENV_DIR/bin/python" "$here/moto_linearizable.py" -H 127.0.0.1 -p "$port"
if ! wait_http "http://127.0.0.1:$port/moto-api/" 30; then
  echo "testenv: moto did not answer on port $port; log: $state/moto.log" >&2
  tail -n 20 "$state/moto.log" >&2
  exit 1
fi
cat >"$state/moto.env" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
ENV
echo "testenv: moto listening on 127.0.0.1:$port" >&2
