#!/usr/bin/env python3
"""N query clients in a loop against a running wattdb for a given time (meant to run
while mqtt_load ingests), reporting per-query latency percentiles and total queries/s.

  query_clients.py --dsn "..." --table electric --clients 8 --seconds 30
"""
import argparse
import statistics
import threading
import time

import psycopg

QUERIES = {
    "latest per meter (last_values)": "SELECT count(*) FROM last_values('{t}')",
    "one meter, last hour": "SELECT ts, p FROM {t} WHERE pid = 'meter-00042' AND ts > (SELECT max(ts) FROM last_values('{t}')) - INTERVAL '1 hour' ORDER BY ts",
    "count, last 15 minutes": "SELECT count(*) FROM {t} WHERE ts > (SELECT max(ts) FROM last_values('{t}')) - INTERVAL '15 minutes'",
    "avg per 15 min, last 2 hours": "SELECT date_bin(INTERVAL '15 minutes', ts) AS b, avg(p) FROM {t} WHERE ts > (SELECT max(ts) FROM last_values('{t}')) - INTERVAL '2 hours' GROUP BY b ORDER BY b",
}


def client(dsn, table, stop, out, errors):
    c = psycopg.connect(dsn, autocommit=True)
    names = list(QUERIES)
    k = 0
    while not stop.is_set():
        name = names[k % len(names)]
        k += 1
        t = time.perf_counter()
        try:
            c.execute(QUERIES[name].format(t=table)).fetchall()
        except Exception as e:  # noqa: BLE001 - counted and reported
            errors.append(f"{name}: {e}")
            continue
        out.setdefault(name, []).append(time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    a = ap.parse_args()
    stop = threading.Event()
    results = [dict() for _ in range(a.clients)]
    errors = []
    threads = [threading.Thread(target=client, args=(a.dsn, a.table, stop, results[i], errors))
               for i in range(a.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(a.seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    merged = {}
    for r in results:
        for k, v in r.items():
            merged.setdefault(k, []).extend(v)
    total = sum(len(v) for v in merged.values())
    print(f"{a.clients} clients, {elapsed:.1f}s: {total} queries, {total / elapsed:.1f} queries/s, {len(errors)} errors")
    everything = [x for v in merged.values() for x in v]
    for name, v in list(merged.items()) + [("all queries", everything)]:
        v.sort()
        if not v:
            continue
        p = lambda q: v[min(len(v) - 1, int(q * len(v)))] * 1e3  # noqa: E731
        print(f"  {name:32s} n={len(v):5d}  p50 {p(0.5):8.1f} ms  p95 {p(0.95):8.1f} ms  "
              f"p99 {p(0.99):8.1f} ms  max {v[-1] * 1e3:8.1f} ms")
    for e in errors[:5]:
        print("  error:", e)


if __name__ == "__main__":
    main()
