#!/usr/bin/env bash
# Issue 14: ingest throughput with appliance detection on vs off. Single-reading MQTT
# messages flat out from 10,000 meters (mqtt_load; each reading carries p and q among
# its 10 values) into a table created first; with DETECT=1 detection runs on p/q of
# every series. Needs a release build (target/release/{wattdb,mqtt_load}).
# Usage: DETECT=0|1 [READINGS=2000000] benches/appliances/ingest_with_detection.sh [WORKDIR]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/../read/serve.sh"
WORK="${1:-/tmp/bench/appliances}"
DETECT=${DETECT:-1}
READINGS=${READINGS:-2000000}
fresh_workdir "$WORK"
serve "$WORK" 7
psql_() { psql -h 127.0.0.1 -p "$PG_PORT" -U wattdb wattdb -Atc "$1"; }
psql_ "CREATE TABLE electric (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, ua DOUBLE PRECISION, ub DOUBLE PRECISION, uc DOUBLE PRECISION, ia DOUBLE PRECISION, ib DOUBLE PRECISION, ic DOUBLE PRECISION, p DOUBLE PRECISION, q DOUBLE PRECISION, pf DOUBLE PRECISION, kwh DOUBLE PRECISION, PRIMARY KEY (pid, ts))" > /dev/null
if [ "$DETECT" = 1 ]; then
  psql_ "SELECT set_appliance_detection('electric', '{\"power\": \"p\", \"reactive\": \"q\"}')"
fi
echo "== detection $DETECT: $READINGS single-reading messages from 10000 meters, flat out"
"$TARGET/mqtt_load" --mqtt "$MQTT" --pg "$PG" --meters 10000 --connections 1000 \
  --readings "$READINGS" --batch 1 --no-rollup-check --table electric --server-pid $SERVER
psql_ "SELECT count(*) AS runs, count(DISTINCT pid) AS meters FROM appliance_events" 2>/dev/null || true
