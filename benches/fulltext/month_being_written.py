#!/usr/bin/env python3
"""Full-text queries over the month being written, terms from rare to common: matches()
against LIKE on the same table, best of 5 (LIKE best of 3), answers compared.

Run after benches/fulltext/logs.sh, with a server restarted on its data folder (the
table then holds the 10M lines and the file of overwrites and late rows: two
overlapping files):

  benches/fulltext/month_being_written.py --dsn "host=127.0.0.1 port=25440 user=wattdb dbname=wattdb"
"""
import argparse
import time

import psycopg

TERMS = ["接地故障", "SN7F3A9C21", "E512", "T7", "网关7", "failed", "通讯超时"]
ROW_TERMS = ["接地故障", "SN7F3A9C21"]


def best(c, q, n):
    fastest, rows = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        rows = c.execute(q).fetchall()
        fastest = min(fastest, time.perf_counter() - t0)
    return fastest * 1000, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    a = ap.parse_args()
    c = psycopg.connect(a.dsn, autocommit=True)
    queries = [(f"`{t}`, `count(*)`",
                f"SELECT count(*) FROM device_log WHERE matches(msg, '{t}')",
                f"SELECT count(*) FROM device_log WHERE msg LIKE '%{t}%'") for t in TERMS]
    queries += [(f"`{t}`, the rows",
                 f"SELECT ts, device, msg FROM device_log WHERE matches(msg, '{t}') ORDER BY ts",
                 f"SELECT ts, device, msg FROM device_log WHERE msg LIKE '%{t}%' ORDER BY ts")
                for t in ROW_TERMS]
    print("| query | rows | `matches()` | `LIKE` | ratio | same answer |")
    print("|---|---:|---:|---:|---:|---|")
    for name, m, like in queries:
        tm, rm = best(c, m, 5)
        tl, rl = best(c, like, 3)
        n = rm[0][0] if "count" in name else len(rm)
        same = "ok" if sorted(map(str, rm)) == sorted(map(str, rl)) else "DIFFERENT"
        print(f"| {name} | {n:,} | {tm:,.1f} ms | {tl:,.1f} ms | ×{tl / tm:.1f} | {same} |",
              flush=True)


if __name__ == "__main__":
    main()
