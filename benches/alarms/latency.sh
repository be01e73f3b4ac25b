#!/usr/bin/env bash
# Issue 13: alarm latency (PUBACK of the tripping reading -> webhook request) while
# 1,000 meters publish single readings at RATE msgs/s (default 20,000) with 10 rules
# active (9 like those of ingest_with_rules.sh, plus the probe alarm with a webhook).
# Needs a release build and $VENV with psycopg and paho-mqtt.
# Usage: [RATE=20000] benches/alarms/latency.sh [WORKDIR]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/../read/serve.sh"
WORK="${1:-/tmp/bench/alarm_latency}"
RATE=${RATE:-20000}
fresh_workdir "$WORK"
serve "$WORK" 7
psql_() { psql -h 127.0.0.1 -p "$PG_PORT" -U wattdb wattdb -Atc "$1" > /dev/null; }
psql_ "CREATE TABLE electric (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, ua DOUBLE PRECISION, ub DOUBLE PRECISION, uc DOUBLE PRECISION, ia DOUBLE PRECISION, ib DOUBLE PRECISION, ic DOUBLE PRECISION, p DOUBLE PRECISION, q DOUBLE PRECISION, pf DOUBLE PRECISION, kwh DOUBLE PRECISION, PRIMARY KEY (pid, ts))"
psql_ "SELECT create_alarm('ua_band', 'electric', 'ua > 235.4 OR ua < 198', '{\"for\": \"30 seconds\", \"clear\": \"ua <= 233 AND ua >= 200\"}')"
psql_ "SELECT create_alarm('ia_high', 'electric', 'ia > 60')"
psql_ "SELECT create_alarm('unbalance', 'electric', 'greatest(ia, ib, ic) - least(ia, ib, ic) > 0.2 * greatest(ia, ib, ic)', '{\"for\": \"5 minutes\"}')"
psql_ "SELECT create_alarm('low_pf', 'electric', 'pf < 0.9', '{\"for\": \"15 minutes\"}')"
psql_ "SELECT create_alarm('overload', 'electric', 'p > 9000', '{\"for\": \"1 minute\"}')"
psql_ "SELECT create_alarm('ub_band', 'electric', 'ub > 235.4 OR ub < 198', '{\"for\": \"30 seconds\"}')"
psql_ "SELECT create_alarm('uc_band', 'electric', 'uc > 235.4 OR uc < 198', '{\"for\": \"30 seconds\"}')"
psql_ "SELECT create_alarm('reverse_power', 'electric', 'p < 0')"
psql_ "SELECT create_gap_alarm('silent', 'electric', '15 minutes')"
"$TARGET/mqtt_load" --mqtt "$MQTT" --pg "$PG" --meters 1000 --readings $((RATE * 40)) --batch 1 \
  --rate "$RATE" --no-rollup-check --table electric > "$WORK/load.log" 2>&1 &
LOAD=$!
sleep 5
"$VENV/bin/python" "$HERE/latency.py" --mqtt-port "${MQTT##*:}" --dsn "$PG" --probes 200
wait $LOAD
grep -E "durable" "$WORK/load.log"
