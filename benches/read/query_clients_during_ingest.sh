#!/usr/bin/env bash
# 8 query clients while 1,000 meters publish one reading per message at a fixed rate
# (default 100,000 msgs/s): ingest rate, query latencies, server peak RSS.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/serve.sh"
WORK="${1:-/tmp/bench/clients}"
RATE=${RATE:-100000}
SECONDS_=${SECONDS_:-40}
fresh_workdir "$WORK"
serve "$WORK" 4
# An hour of another fleet first, so that the table exists and queries have rows.
"$TARGET/mqtt_load" --mqtt "$MQTT" --pg "$PG" --meters 1000 --first-meter 1000 --connections 100 \
  --readings 60000 --batch 100 --no-rollup-check --table electric > /dev/null
"$HERE/rss.sh" $SERVER > "$WORK/rss" &
SAMPLER=$!
"$TARGET/mqtt_load" --mqtt "$MQTT" --pg "$PG" --meters 1000 \
  --readings $((RATE * SECONDS_)) --batch 1 --rate "$RATE" --no-rollup-check --table electric \
  --server-pid $SERVER > "$WORK/ingest.log" 2>&1 &
LOAD=$!
sleep 3
"$VENV/bin/python" "$HERE/query_clients.py" --dsn "$PG" --table electric --clients 8 --seconds $((SECONDS_ - 6))
wait $LOAD
grep -E "acknowledged|durable|queryable" "$WORK/ingest.log"
kill $SAMPLER; wait $SAMPLER || true
echo "server peak RSS: $(cat "$WORK/rss") MiB"
