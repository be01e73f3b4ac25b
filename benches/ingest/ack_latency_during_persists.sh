#!/usr/bin/env bash
# Publish-to-PUBACK latency at a fixed message rate while the persister runs often
# (partitions persist every 4 MiB), for each wattdb binary given, one after the other on
# the same machine. The load generator (mqtt_load) reports p50/p90/p99/p99.9/max; the
# number of Parquet files written during the run comes from /metrics.
#
#   benches/ingest/ack_latency_during_persists.sh ./wattdb-old ./wattdb-new
#   RATE=20000 READINGS=600000 ROUNDS=2 benches/ingest/ack_latency_during_persists.sh ...
#
# A slow disk, simulated: with binaries built with `--features wattdb-storage/failpoints`,
# SLOW_SYNC_MS=30 makes every catalog fsync (sled flush) take 30 ms longer
# (FAILPOINTS=catalog-sync=sleep(30) in the server's environment).
set -euo pipefail
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/wattdb-target}"
LOAD="$TARGET/release/mqtt_load"
RATE="${RATE:-20000}"
READINGS="${READINGS:-600000}"
ROUNDS="${ROUNDS:-2}"
[ -x "$LOAD" ] || { echo "build it first: cargo build --release -p wattdb-benches"; exit 1; }

run() {
  local bin=$1 data
  data=$(mktemp -d "${TMPDIR:-/var/tmp}/wattdb-acklat.XXXXXX")
  local envs=()
  if [ -n "${SLOW_SYNC_MS:-}" ]; then envs=("FAILPOINTS=catalog-sync=sleep($SLOW_SYNC_MS)"); fi
  env "${envs[@]}" "$bin" serve --data-dir "$data/d" --pg-listen 127.0.0.1:35433 \
    --mqtt-listen 127.0.0.1:31883 --http-listen 127.0.0.1:38080 \
    --persist-partition-bytes 4194304 > "$data/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null http://127.0.0.1:38080/health && break
    sleep 0.1
  done
  echo "== $bin"
  "$LOAD" --mqtt 127.0.0.1:31883 --pg "host=127.0.0.1 port=35433 user=wattdb dbname=wattdb" \
    --meters 1000 --connections 50 --readings "$READINGS" --rate "$RATE" \
    --no-rollup-check --server-pid "$pid" | grep -E "latency|values/s durable"
  curl -s http://127.0.0.1:38080/metrics | grep -E "^wattdb_persisted_files_total"
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$data"
}

for _ in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    run "$bin"
  done
done
