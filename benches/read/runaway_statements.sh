#!/usr/bin/env bash
# Runaway statements (see runaway_statements.py). Needs a release build and $VENV
# (psycopg). Also the read-path cost of the interrupt checks: household.sh's queries with
# the checks on and off (WATTDB_INTERRUPT_CHECKS=off), see BENCHMARKS.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/serve.sh"
WORK="${1:-/tmp/bench/runaway}"
fresh_workdir "$WORK"
serve "$WORK" 7
"$VENV/bin/python" "$HERE/runaway_statements.py" --dsn "$PG"
