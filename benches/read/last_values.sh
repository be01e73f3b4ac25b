#!/usr/bin/env bash
# Last values of 10,000 meters (see last_values.py). Needs a release build and $VENV.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/wattdb-target}/release"
WORK="${1:-/tmp/bench/lv}"
VENV="${VENV:-/tmp/bench/venv}"
rm -rf "$WORK"; mkdir -p "$WORK"
"$TARGET/wattdb" serve --data-dir "$WORK/data" --pg-listen 127.0.0.1:25435 \
  --http-listen 127.0.0.1:28082 --mqtt-listen 127.0.0.1:21885 > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
sleep 2
"$VENV/bin/python" "$HERE/last_values.py" --dsn "host=127.0.0.1 port=25435 user=wattdb dbname=wattdb" \
  --files "$WORK/data/objects/lv/**/*.parquet"
