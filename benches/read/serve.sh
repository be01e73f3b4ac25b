# Sourced by the read benchmarks: the release binaries, the Python venv, and a wattdb
# server on a fresh work directory.
#   fresh_workdir DIR        empty DIR (created)
#   serve DIR K [ARGS...]    start `wattdb serve` on DIR/data with SQL on 127.0.0.1:(25433+K),
#                            HTTP on 28080+K, MQTT on 21883+K; sets SERVER (its pid), PG
#                            (its DSN), PG_PORT and MQTT (its address), stops it on exit
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/wattdb-target}/release"
VENV="${VENV:-/tmp/bench/venv}"

fresh_workdir() {
  rm -rf "$1"; mkdir -p "$1"
}

serve() {
  local dir=$1 k=$2
  shift 2
  "$TARGET/wattdb" serve "$@" --data-dir "$dir/data" --pg-listen 127.0.0.1:$((25433 + k)) \
    --http-listen 127.0.0.1:$((28080 + k)) --mqtt-listen 127.0.0.1:$((21883 + k)) \
    > "$dir/server.log" 2>&1 &
  SERVER=$!
  PG_PORT=$((25433 + k))
  PG="host=127.0.0.1 port=$PG_PORT user=wattdb dbname=wattdb"
  MQTT="127.0.0.1:$((21883 + k))"
  trap 'kill $SERVER 2>/dev/null || true' EXIT
  sleep 2
}
