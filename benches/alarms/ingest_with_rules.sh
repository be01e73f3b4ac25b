#!/usr/bin/env bash
# Issue 13: ingest throughput with 10 alarm rules active vs none. Single-reading MQTT
# messages flat out from 1,000 meters (mqtt_load), into a table created first; with
# RULES=10, 8 threshold alarms (voltage, current, power factor, with `for`, `clear` and
# scopes) and 2 data-gap alarms are created before the load.
# Needs a release build (target/release/{wattdb,mqtt_load}).
# Usage: RULES=0|10 [READINGS=2000000] benches/alarms/ingest_with_rules.sh [WORKDIR]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/../read/serve.sh"
WORK="${1:-/tmp/bench/alarms}"
RULES=${RULES:-10}
READINGS=${READINGS:-2000000}
fresh_workdir "$WORK"
serve "$WORK" 6
psql_() { psql -h 127.0.0.1 -p "$PG_PORT" -U wattdb wattdb -Atc "$1" > /dev/null; }
psql_ "CREATE TABLE electric (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, ua DOUBLE PRECISION, ub DOUBLE PRECISION, uc DOUBLE PRECISION, ia DOUBLE PRECISION, ib DOUBLE PRECISION, ic DOUBLE PRECISION, p DOUBLE PRECISION, q DOUBLE PRECISION, pf DOUBLE PRECISION, kwh DOUBLE PRECISION, PRIMARY KEY (pid, ts))"
if [ "$RULES" -gt 0 ]; then
  psql_ "SELECT create_alarm('ua_band', 'electric', 'ua > 235.4 OR ua < 198', '{\"for\": \"30 seconds\", \"clear\": \"ua <= 233 AND ua >= 200\", \"severity\": \"major\"}')"
  psql_ "SELECT create_alarm('ub_band', 'electric', 'ub > 235.4 OR ub < 198', '{\"for\": \"30 seconds\"}')"
  psql_ "SELECT create_alarm('uc_band', 'electric', 'uc > 235.4 OR uc < 198', '{\"for\": \"30 seconds\"}')"
  psql_ "SELECT create_alarm('ia_high', 'electric', 'ia > 60', '{\"severity\": \"critical\"}')"
  psql_ "SELECT create_alarm('unbalance', 'electric', 'greatest(ia, ib, ic) - least(ia, ib, ic) > 0.2 * greatest(ia, ib, ic)', '{\"for\": \"5 minutes\"}')"
  psql_ "SELECT create_alarm('low_pf', 'electric', 'pf < 0.9', '{\"for\": \"15 minutes\", \"clear\": \"pf >= 0.92\"}')"
  psql_ "SELECT create_alarm('reverse_power', 'electric', 'p < 0', '{\"where\": \"pid LIKE ''meter-000%''\"}')"
  psql_ "SELECT create_alarm('overload', 'electric', 'p > 9000', '{\"for\": \"1 minute\"}')"
  psql_ "SELECT create_gap_alarm('silent', 'electric', '15 minutes')"
  psql_ "SELECT create_gap_alarm('silent_dorm', 'electric', '5 minutes', '{\"where\": \"pid LIKE ''meter-001%''\"}')"
fi
echo "== $RULES rules: $READINGS single-reading messages from 1000 meters, flat out"
"$TARGET/mqtt_load" --mqtt "$MQTT" --pg "$PG" --meters 1000 --readings "$READINGS" --batch 1 \
  --no-rollup-check --table electric --server-pid $SERVER
psql -h 127.0.0.1 -p "$PG_PORT" -U wattdb wattdb -Atc "SELECT count(*) FROM system.alarms"
psql -h 127.0.0.1 -p "$PG_PORT" -U wattdb wattdb -Atc "SELECT alarm, state, count(*) FROM system.alarm_state GROUP BY alarm, state ORDER BY alarm, state"
