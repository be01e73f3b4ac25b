#!/usr/bin/env python3
"""Statements that would stall a server, against a running wattdb (issue 33):

1. time to refuse each statement past the limits (54001), and to plan one just under;
2. a fresh connection's `SELECT 1` (connect + query) while N runaway CPU-bound
   statements run (N = 0, 1, cores, 4 x cores);
3. how long a runaway takes to stop after its statement_timeout / a cancel request.

  runaway_statements.py --dsn "host=127.0.0.1 port=25440 user=wattdb dbname=wattdb"
"""
import argparse
import os
import statistics
import threading
import time

import psycopg

RUNAWAY = ("SELECT count(*) FROM generate_series(1, 200000) a CROSS JOIN "
           "generate_series(1, 200000) b WHERE (a.value * 7 + b.value) % 1000003 = 5")


def chain(first, op, item, n):
    return "SELECT " + first + (op + item) * n


def shapes():
    ors = " OR ".join(f"x = {i}" for i in range(50_000))
    return {
        "1+1+... 50,000 terms": chain("1", "+", "1", 50_000),
        "1+1+... 500,000 terms": chain("1", "+", "1", 500_000),
        "cast chain x20,000": chain("1", "::bigint", "", 20_000),
        "OR list 50,000": f"SELECT count(*) FROM generate_series(1, 3) t(x) WHERE {ors}",
        "10,000 nested parentheses": "SELECT " + "(" * 10_000 + "1" + ")" * 10_000,
        "5,000 nested abs()": "SELECT " + "abs(" * 5_000 + "1" + ")" * 5_000,
        "concat() of 100,000 arguments (54023)": "SELECT length(concat("
        + ",".join(str(i) for i in range(100_000)) + "))",
        "3,000 nested CASE": "SELECT " + "CASE WHEN random() < 0.5 THEN 1 ELSE " * 3_000
        + "0" + " END" * 3_000,
    }


def under_limits():
    items = ", ".join(f"{i} + 1" for i in range(1664))
    return {
        "1+1+... 495 terms (depth limit 500)": chain("1", "+", "1", 495),
        "SELECT of 1,664 items (PostgreSQL's limit)": f"SELECT {items}",
        "concat() of 100 arguments (PostgreSQL's limit)": "SELECT length(concat("
        + ",".join(str(i) for i in range(100)) + "))",
        "coalesce() of 100,000 arguments": "SELECT coalesce("
        + ",".join(["NULL"] * 99_999) + ", 1)",
        "VALUES of 100,000 rows": "SELECT count(*) FROM (VALUES "
        + ",".join(f"({i})" for i in range(100_000)) + ") v(x)",
        "100,000-item IN list": "SELECT count(*) FROM generate_series(1, 150000) t(x) WHERE x IN ("
        + ",".join(str(2 * i) for i in range(1, 100_001)) + ")",
    }


def timed(dsn, sql):
    with psycopg.connect(dsn, autocommit=True) as c:
        t = time.perf_counter()
        try:
            c.execute(sql).fetchall()
            code = "ok"
        except psycopg.Error as e:
            code = e.sqlstate
        return time.perf_counter() - t, code


def fresh_select_1(dsn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("SELECT 1").fetchall()
        out.append(time.perf_counter() - t)
        time.sleep(0.05)
    return out


def runaway(dsn, stop, conns):
    with psycopg.connect(dsn, autocommit=True) as c:
        conns.append(c)
        c.execute("SET statement_timeout = '120s'")
        while not stop.is_set():
            try:
                c.execute(RUNAWAY).fetchall()
            except psycopg.Error:
                pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    a = ap.parse_args()
    cores = os.cpu_count() or 2
    print("## refusals (54001) and plans under the limits, ms (best of 3)")
    for name, sql in {**shapes(), **under_limits()}.items():
        runs = [timed(a.dsn, sql) for _ in range(3)]
        print(f"{name:45s} {min(r[0] for r in runs) * 1000:9.1f} ms  {runs[0][1]}")
    print("\n## fresh connection + SELECT 1 while N runaways run, ms (20 tries)")
    for n in [0, 1, cores, 4 * cores]:
        stop = threading.Event()
        conns = []
        threads = [threading.Thread(target=runaway, args=(a.dsn, stop, conns))
                   for _ in range(n)]
        for t in threads:
            t.start()
        time.sleep(2 if n else 0)
        lat = sorted(fresh_select_1(a.dsn, 20))
        print(f"N={n:2d}: p50 {statistics.median(lat) * 1000:7.1f}  p95 {lat[18] * 1000:7.1f}  "
              f"max {lat[-1] * 1000:7.1f}")
        stop.set()
        for c in conns:  # each runaway stops at its cancel request
            c.cancel()
        for t in threads:
            t.join()
    print("\n## stopping a runaway: statement_timeout 1500 ms, and a cancel after 1000 ms")
    for _ in range(3):
        with psycopg.connect(a.dsn, autocommit=True) as c:
            c.execute("SET statement_timeout = '1500ms'")
            t = time.perf_counter()
            try:
                c.execute(RUNAWAY)
            except psycopg.Error as e:
                print(f"timeout: answered after {(time.perf_counter() - t) * 1000:.0f} ms ({e.sqlstate})")
        with psycopg.connect(a.dsn, autocommit=True) as c:
            timer = threading.Timer(1.0, c.cancel)
            t = time.perf_counter()
            timer.start()
            try:
                c.execute(RUNAWAY)
            except psycopg.Error as e:
                print(f"cancel:  answered {(time.perf_counter() - t - 1.0) * 1000:.0f} ms after the "
                      f"cancel ({e.sqlstate})")


if __name__ == "__main__":
    main()
