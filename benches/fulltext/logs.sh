#!/usr/bin/env bash
# Issue 17's full-text benchmark (see logs.py): 10M generated device log lines, matches()
# vs LIKE vs DuckDB's LIKE over the same Parquet files, before and after compaction; the
# cost of indexing on load; index size. Needs a release build and a venv with duckdb and
# psycopg at $VENV. Usage: benches/fulltext/logs.sh [WORKDIR] [logs.py options]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/../read/serve.sh"
WORK="${1:-/tmp/bench/fulltext}"
fresh_workdir "$WORK"
# No background compaction: the script compacts when it wants to.
printf 'compaction_interval_secs = 86400\ncompaction_grace_secs = 0\n' > "$WORK/wattdb.toml"
serve "$WORK" 3 --config "$WORK/wattdb.toml"
"$VENV/bin/python" "$HERE/logs.py" --dsn "$PG" --objects "$WORK/data/objects" \
  --lines "$WORK/logs.tsv" "${@:2}"
echo "server RSS: $(awk '/^VmRSS/ {print $2 / 1024 " MiB"}' /proc/$SERVER/status), peak $(awk '/^VmHWM/ {print $2 / 1024 " MiB"}' /proc/$SERVER/status)"
