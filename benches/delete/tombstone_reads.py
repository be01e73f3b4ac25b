#!/usr/bin/env python3
"""What DELETE tombstones cost reads, and what compaction gives back.

Against a running wattdb holding the UCI household power table `uci` (one house `h1`,
2,075,259 rows, one file per month): times a full scan, a one-month scan and a
rollup-shaped query (median of 5 runs each) before any delete, after three deletes
(one day, one week, and a whole series of a second house — the last has no time range,
so its tombstone applies to every file), and after `compact('uci')` applied them.
Also times each DELETE. Prints a Markdown table.

    python3 benches/delete/tombstone_reads.py --port 25433
"""
import argparse
import statistics
import time

import psycopg

QUERIES = {
    "full scan: count(*), avg(gap)": "SELECT count(*), avg(gap) FROM uci",
    "one month: avg(voltage)": "SELECT avg(voltage) FROM uci WHERE ts >= '2008-03-01' AND ts < '2008-04-01'",
    "daily avg(gap) over 2008 (rollup rewrite)": "SELECT date_trunc('day', ts) AS d, avg(gap) FROM uci WHERE ts >= '2008-01-01' AND ts < '2009-01-01' GROUP BY 1",
}


def median_ms(conn, sql, runs=5):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        conn.execute(sql).fetchall()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def measure(conn):
    return {name: median_ms(conn, sql) for name, sql in QUERIES.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=5433)
    args = ap.parse_args()
    conn = psycopg.connect(f"host=127.0.0.1 port={args.port} user=wattdb dbname=wattdb", autocommit=True)
    rows = conn.execute("SELECT count(*) FROM uci").fetchone()[0]
    phases = [("before", measure(conn))]
    # A second house, persisted, so that deleting it leaves a tombstone on every file.
    conn.execute(
        "INSERT INTO uci (ts, house, gap) SELECT ts, 'h2', gap FROM uci WHERE ts < '2007-01-01'"
    )
    conn.execute("SELECT flush()")
    deletes = [
        "DELETE FROM uci WHERE house = 'h1' AND ts >= '2008-03-10' AND ts < '2008-03-11'",
        "DELETE FROM uci WHERE ts >= '2009-06-01' AND ts < '2009-06-08'",
        "DELETE FROM uci WHERE house = 'h2'",
    ]
    timings = []
    for d in deletes:
        t = time.perf_counter()
        n = conn.execute(d).rowcount
        timings.append((d, n, (time.perf_counter() - t) * 1000))
    time.sleep(2)  # the rollup worker recomputes the changed buckets
    phases.append(("after 3 deletes (reads filter)", measure(conn)))
    t = time.perf_counter()
    conn.execute("SELECT compact('uci')")
    compact_ms = (time.perf_counter() - t) * 1000
    phases.append(("after compact('uci')", measure(conn)))
    print(f"uci: {rows} rows before the deletes\n")
    print("| DELETE | rows | ms |\n|---|---|---|")
    for d, n, ms in timings:
        print(f"| `{d}` | {n} | {ms:.0f} |")
    print(f"\ncompact('uci'): {compact_ms:.0f} ms\n")
    names = list(QUERIES)
    print("| phase | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for phase, res in phases:
        print(f"| {phase} | " + " | ".join(f"{res[n]:.0f} ms" for n in names) + " |")


if __name__ == "__main__":
    main()
