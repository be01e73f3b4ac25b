#!/usr/bin/env python3
"""Alarm latency: from the PUBACK of a reading that trips an alarm to the webhook
request arriving at a local receiver, while background load runs (mqtt_load at a fixed
rate, started by latency.sh). Each probe is a reading of a fresh meter over the
threshold (the alarm has no `for`), so each fires once.

  latency.py --mqtt-port 21890 --dsn "host=127.0.0.1 port=25440 user=wattdb dbname=wattdb" --probes 200
"""
import argparse
import http.server
import json
import threading
import time

import paho.mqtt.client as mqtt
import psycopg

received = {}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        t = time.perf_counter()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()
        try:
            ev = json.loads(body)
        except ValueError:
            return
        for e in ev.get("events", [ev]):
            received.setdefault(e["series"], t)

    def log_message(self, *a):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--table", default="electric")
    a = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    db = psycopg.connect(a.dsn, autocommit=True)
    db.execute(f"""SELECT create_channel('probe_hook', 'webhook', '{{"url": "http://127.0.0.1:{port}/hook"}}')""")
    db.execute(f"""SELECT create_alarm('probe', '{a.table}', 'ua > 300', '{{"channels": ["probe_hook"], "where": "pid LIKE ''probe-%''"}}')""")

    acked = {}
    pending = {}
    lock = threading.Lock()

    def on_publish(client, userdata, mid, reason_code=None, properties=None):
        t = time.perf_counter()
        with lock:
            series = pending.pop(mid, None)
        if series:
            acked[series] = t

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="latency-probe")
    c.on_publish = on_publish
    c.connect("127.0.0.1", a.mqtt_port)
    c.loop_start()
    now_ms = int(time.time() * 1000)
    for i in range(a.probes):
        pid = f"probe-{i:05d}"
        payload = json.dumps({"ts": now_ms + i, "tags": {"pid": pid}, "fields": {"ua": 400.0}})
        with lock:
            info = c.publish(f"wattdb/{a.table}", payload, qos=1)
            pending[info.mid] = f"pid={pid}"
        time.sleep(0.05)
    deadline = time.time() + 30
    while len(received) < a.probes and time.time() < deadline:
        time.sleep(0.1)
    c.loop_stop()
    lat = sorted((received[s] - acked[s]) * 1000 for s in acked if s in received)
    if not lat:
        print("no notification arrived")
        return
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(f"{len(lat)}/{a.probes} notifications; PUBACK -> webhook: "
          f"p50 {q(0.5):.1f} ms, p90 {q(0.9):.1f} ms, p99 {q(0.99):.1f} ms, max {lat[-1]:.1f} ms")


if __name__ == "__main__":
    main()
