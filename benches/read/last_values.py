#!/usr/bin/env python3
"""Last values of 10,000 meters: time `last_values()` and the DISTINCT ON query it serves
on a running wattdb, against the same DISTINCT ON computed by DuckDB over the table's
Parquet files.

  last_values.py --dsn "host=127.0.0.1 port=25435 user=wattdb dbname=wattdb" --files 'DATA/objects/lv/**/*.parquet'
"""
import argparse
import glob
import os
import sys
import time

import duckdb
import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "shared", "tools"))
from vs_duckdb import best, same  # noqa: E402

METERS = 10_000
READINGS = 100  # per meter, one a minute


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--files", required=True)
    a = ap.parse_args()
    w = psycopg.connect(a.dsn, autocommit=True)
    w.execute("CREATE TABLE lv (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, p DOUBLE PRECISION, "
              "kwh DOUBLE PRECISION, PRIMARY KEY (pid, ts))")
    w.execute(f"""INSERT INTO lv (ts, pid, p, kwh) SELECT
        to_timestamp_micros(1790000000000000 + (value / {METERS}) * 60000000),
        concat('meter-', lpad(CAST(value % {METERS} AS VARCHAR), 5, '0')),
        CAST(value % 997 AS DOUBLE), CAST(value AS DOUBLE)
        FROM generate_series(0, {METERS * READINGS - 1}) AS g(value)""")
    w.execute("SELECT flush()")
    t = time.perf_counter()
    n = len(w.execute("SELECT * FROM last_values('lv')").fetchall())
    print(f"first last_values('lv') (builds the cache from {METERS * READINGS} stored rows): "
          f"{(time.perf_counter() - t) * 1e3:.1f} ms, {n} rows")
    files = glob.glob(a.files, recursive=True)
    d = duckdb.connect()
    d.execute(f"CREATE VIEW lv AS SELECT * FROM read_parquet({files!r})")
    for sql in ["SELECT * FROM last_values('lv')",
                "SELECT DISTINCT ON (pid) pid, ts, p, kwh FROM lv ORDER BY pid, ts DESC"]:
        tw = best(lambda: w.execute(sql).fetchall(), 10)
        line = f"wattdb {tw * 1e3:7.2f} ms  {sql}"
        if "DISTINCT" in sql:
            td = best(lambda: d.execute(sql).fetchall(), 10)
            ok = same(w.execute(sql).fetchall(), d.execute(sql).fetchall())
            line += f"   | DuckDB {td * 1e3:7.2f} ms ({'same' if ok else 'DIFFERENT'})"
        print(line)


if __name__ == "__main__":
    main()
