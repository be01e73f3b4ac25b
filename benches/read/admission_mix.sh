#!/usr/bin/env bash
# The 32-client query mix while MQTT ingest runs, with and without admission: a month of
# 1,000 meters (360,000 rows) loaded first, then ingest at RATE msgs/s while first 1 and
# then 32 query clients loop (and both without ingest) over query_clients.py's four queries. Run once with
# --max-active-statements 64 (every statement runs at once, as before admission) and
# once with the default (one slot per core). Prints per-query p50/p95/p99 and the ingest
# figures of each run.
#   benches/read/admission_mix.sh [WORKDIR]     # RATE=3000 SECONDS_=30
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/serve.sh"
WORK="${1:-/tmp/bench/admission}"
RATE=${RATE:-3000}
SECONDS_=${SECONDS_:-30}

run() {
  local label=$1
  shift
  fresh_workdir "$WORK"
  serve "$WORK" 5 "$@"
  "$TARGET/mqtt_load" --mqtt "$MQTT" --pg "$PG" --meters 1000 --first-meter 1000 --connections 100 \
    --readings 360000 --batch 100 --no-rollup-check --table electric > /dev/null
  echo "== $label ($*)"
  echo "-- 1 client, no ingest"
  "$VENV/bin/python" "$HERE/query_clients.py" --dsn "$PG" --table electric --clients 1 --seconds 15
  echo "-- 32 clients, no ingest"
  "$VENV/bin/python" "$HERE/query_clients.py" --dsn "$PG" --table electric --clients 32 --seconds 20
  "$TARGET/mqtt_load" --mqtt "$MQTT" --pg "$PG" --meters 1000 \
    --readings $((RATE * (SECONDS_ + 25))) --batch 1 --rate "$RATE" --no-rollup-check --table electric \
    > "$WORK/ingest.log" 2>&1 &
  local load=$!
  sleep 3
  echo "-- 1 client, ingest at $RATE msgs/s"
  "$VENV/bin/python" "$HERE/query_clients.py" --dsn "$PG" --table electric --clients 1 --seconds 15
  echo "-- 32 clients, ingest at $RATE msgs/s"
  "$VENV/bin/python" "$HERE/query_clients.py" --dsn "$PG" --table electric --clients 32 --seconds "$SECONDS_"
  wait $load
  grep -E "acknowledged|durable|latency" "$WORK/ingest.log" || true
  kill $SERVER; wait $SERVER 2>/dev/null || true
}

run "every statement at once" --max-active-statements 64
run "admission (default: one slot per core)"
