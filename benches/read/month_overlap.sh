#!/usr/bin/env bash
# Issue 12's month benchmark: 43.2M one-minute readings of 1,000 meters, written the way a
# platform sees them — 900 live meters, then a gateway's backlog of 100 more meters for
# the same days — so the files of each month overlap in time. Runs the five queries of
# month_queries.sql on wattdb and on DuckDB deduplicating the same files (DISTINCT ON),
# samples the server's RSS meanwhile, then compacts and runs them again against DuckDB
# over the compacted files.
#
# With COMPACTION=live the background compaction runs every 5 s during ingest (size
# tiers, fan-in 8) and the script reports how often rows were rewritten before the
# queries run over the tiered files.
#
# REWRITE=off starts the server with --rollup-rewrite false (every query on the raw path).
#
# Needs a release build (target/release/{wattdb,mqtt_load}) and a venv with duckdb and
# psycopg at $VENV. Usage: [COMPACTION=live] benches/read/month_overlap.sh [WORKDIR]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$HERE/../.."
. "$HERE/serve.sh"
WORK="${1:-/tmp/bench/month}"
LIVE_METERS=${LIVE_METERS:-900}
BACKLOG_METERS=${BACKLOG_METERS:-100}
MINUTES=${MINUTES:-43200}
fresh_workdir "$WORK"
if [ "${COMPACTION:-off}" = live ]; then
  printf 'compaction_interval_secs = 5\ncompaction_min_files = 8\ncompaction_cold_secs = 86400\ncompaction_grace_secs = 0\n' > "$WORK/wattdb.toml"
else
  printf 'compaction_interval_secs = 86400\n' > "$WORK/wattdb.toml"
fi
serve "$WORK" 0 --config "$WORK/wattdb.toml" --rollup-rewrite "$([ "${REWRITE:-on}" = on ] && echo true || echo false)"
echo "== live meters"
"$TARGET/mqtt_load" --mqtt "$MQTT" --pg "$PG" --meters "$LIVE_METERS" \
  --connections 90 --readings $((LIVE_METERS * MINUTES)) --batch 100 --inflight 8 \
  --no-rollup-check --table electric --server-pid $SERVER
echo "== backlog of another fleet for the same days"
"$TARGET/mqtt_load" --mqtt "$MQTT" --pg "$PG" --meters "$BACKLOG_METERS" \
  --first-meter "$LIVE_METERS" --connections 10 --readings $((BACKLOG_METERS * MINUTES)) \
  --batch 100 --inflight 8 --no-rollup-check --table electric --server-pid $SERVER
psql_() { psql -h 127.0.0.1 -p "$PG_PORT" -U wattdb wattdb -Atc "$1"; }
if [ "${COMPACTION:-off}" = live ]; then
  sleep 10   # one more pass over the last persists
  echo "== background compaction during ingest (merges, rows rewritten, per ingested row)"
  psql_ "SELECT count(*), sum(rows_before), round(sum(rows_before) / $(( (LIVE_METERS + BACKLOG_METERS) * MINUTES )).0, 2), sum(bytes_before) FROM system.compactions"
fi
psql_ "SELECT month, count(*), sum(rows) FROM system.files WHERE table_name = 'electric' GROUP BY month ORDER BY month"
grep VmRSS /proc/$SERVER/status
run() {
  "$HERE/rss.sh" $SERVER > "$WORK/rss.$1" &
  SAMPLER=$!
  shift
  "$VENV/bin/python" "$ROOT/../shared/tools/vs_duckdb.py" --dsn "$PG" --table electric \
    --files "$WORK/data/objects/electric/**/*.parquet" --reps 3 "$@" "$HERE/month_queries.sql"
  kill $SAMPLER; wait $SAMPLER || true
}
# The daily average is answered from the rollups (real-time rollup rewrite) once the
# rollup worker has caught up with the ingest; REWRITE=off measures the raw path.
if [ "${REWRITE:-on}" = on ]; then
  t=$(date +%s)
  settled() {
    local plan
    plan=$(psql_ "EXPLAIN SELECT date_trunc('day', ts) AS d, avg(p) FROM electric GROUP BY d")
    grep -q electric_1d <<<"$plan" && ! grep -q rollup_region_raw <<<"$plan"
  }
  until settled; do
    [ $(( $(date +%s) - t )) -lt 900 ] || { echo "rollups did not settle"; exit 1; }
    sleep 2
  done
  echo "rollups settled $(( $(date +%s) - t )) s after the ingest"
fi
echo "== overlapping files: wattdb vs DuckDB DISTINCT ON (pid, ts)"
run overlap --dedup pid,ts
echo "server peak RSS during the queries: $(cat "$WORK/rss.overlap") MiB"
t=$(date +%s.%N)
psql_ "SELECT compact('electric')" > /dev/null
echo "compact(): $(echo "$(date +%s.%N) - $t" | bc) s"
psql_ "SELECT month, count(*), sum(rows) FROM system.files WHERE table_name = 'electric' GROUP BY month ORDER BY month"
echo "== compacted: wattdb vs DuckDB over the compacted files"
run compacted
echo "server peak RSS during the queries: $(cat "$WORK/rss.compacted") MiB"
