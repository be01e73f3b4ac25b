#!/usr/bin/env bash
# COPY FROM STDIN and COPY TO STDOUT through psql's \copy, wattdb and PostgreSQL side by
# side on the same CSV (UCI household power: 2,075,259 one-minute rows, 7 fields):
#
#   benches/copy/copy_vs_postgres.sh <uci.csv with a leading house column> [runs]
#
# Needs a release build (cargo build --release) and a PostgreSQL on 127.0.0.1:5432
# reachable as user postgres (see ../shared/SERVICES.md). wattdb runs with a 2 GiB write
# buffer: a COPY is held whole until it ends (README "Clients").
set -euo pipefail
CSV="$1"
RUNS="${2:-3}"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/wattdb-target}"
DIR="$(mktemp -d /tmp/wattdb-copy-bench.XXXXXX)"
PORT=15499
"$TARGET/release/wattdb" serve --data-dir "$DIR/data" --pg-listen 127.0.0.1:$PORT \
  --http-listen 127.0.0.1:18499 --mqtt-listen 127.0.0.1:11899 \
  --buffer-budget-bytes 2147483648 > "$DIR/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
W="psql -h 127.0.0.1 -p $PORT -U wattdb wattdb -X -q"
P="psql -h 127.0.0.1 -p 5432 -U postgres postgres -X -q"
DDL="CREATE TABLE uci (house TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL, gap DOUBLE PRECISION,
  grp DOUBLE PRECISION, voltage DOUBLE PRECISION, intensity DOUBLE PRECISION,
  sm1 DOUBLE PRECISION, sm2 DOUBLE PRECISION, sm3 DOUBLE PRECISION, PRIMARY KEY (house, ts))"
ROWS=$(($(wc -l < "$CSV") - 1))
VALUES=$((ROWS * 7))
timed() { # prints seconds
  local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
echo "rows $ROWS, values $VALUES"
for run in $(seq 1 "$RUNS"); do
  for db in wattdb postgres; do
    if [ $db = wattdb ]; then C="$W"; else C="$P"; fi
    $C -c "DROP TABLE IF EXISTS uci" 2>/dev/null || true
    $C -c "$DDL"
    s=$(timed $C -c "\\copy uci (house, ts, gap, grp, voltage, intensity, sm1, sm2, sm3) FROM '$CSV' WITH CSV HEADER")
    n=$($C -t -A -c "SELECT count(*) FROM uci")
    o=$(timed $C -c "\\copy uci TO '/dev/null' WITH CSV")
    echo "run $run $db: COPY FROM $s s ($(echo "$VALUES / $s" | bc) values/s, $n rows), COPY TO $o s"
  done
done
echo "wattdb peak RSS: $(grep VmHWM /proc/$PID/status)"
