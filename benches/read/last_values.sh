#!/usr/bin/env bash
# Last values of 10,000 meters (see last_values.py). Needs a release build and $VENV.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/serve.sh"
WORK="${1:-/tmp/bench/lv}"
fresh_workdir "$WORK"
serve "$WORK" 2
"$VENV/bin/python" "$HERE/last_values.py" --dsn "$PG" \
  --files "$WORK/data/objects/lv/**/*.parquet"
