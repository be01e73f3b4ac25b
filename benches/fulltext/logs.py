#!/usr/bin/env python3
"""Full-text search over device logs (issue 17): wattdb's matches() against LIKE on the same
table and against DuckDB's LIKE over the same Parquet files.

Generates N log lines (default 10M) of 2,000 devices over October 2026, Chinese and English
mixed, from templates whose frequencies are fixed by construction, and loads them twice
with COPY: into `log_plain` (no full-text column) and into `device_log` (`WITH (fulltext =
'msg')`), timing load + flush of each (the difference is the cost of indexing). Then, for
the files as persisted and again after compaction, times (best of N):

  selective   matches(msg, '接地故障')   exactly PLANTED rows (a planted phrase)
  selective   matches(msg, 'SN7F3A9C21') exactly PLANTED_SN rows (a serial number)
  common      matches(msg, '通讯超时')   about 12% of the rows

as count(*) and as the rows themselves (selective ones), on wattdb with matches(), wattdb
with LIKE '%…%', and DuckDB with LIKE over the table's Parquet files; and the 20 most
relevant rows for a common query (score(), ORDER BY relevance). Every answer is
checked against the count the generator planted. Prints index size against Parquet size.
Last, the month being written: a file of overwrites (1% of the keys) and late rows over the
whole month is added, so every query merges overlapping files (DuckDB, which would count
every version, is left out there).

  logs.py --dsn "host=127.0.0.1 port=25433 user=wattdb dbname=wattdb" --objects DIR/data/objects
"""
import argparse
import glob
import os
import random
import sys
import time

import duckdb
import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "shared", "tools"))
from vs_duckdb import best  # noqa: E402

DEVICES = 2000
MONTH_START = 1790812800  # 2026-10-01T00:00:00Z
MONTH_SECONDS = 31 * 86400
PLANTED = 50
PLANTED_SN = 20
LATE = 10

# (weight, template) — the common phrase 通讯超时 appears in the first two (12% together).
TEMPLATES = [
    (8, "网关{g}通讯超时，重试{r}次"),
    (4, "gateway {g} 通讯超时 after {r} retries"),
    (20, "心跳正常 seq={n}"),
    (15, "heartbeat ok seq={n} rssi=-{r}dBm"),
    (10, "上报数据{r}条，耗时{ms}ms"),
    (8, "电压越限 A相 {v}V 持续{r}秒"),
    (6, "breaker tripped on feeder {f}, auto reclose {ok}"),
    (6, "modbus read error code E{code} on register {reg}"),
    (5, "设备离线，最后在线 {hh}:{mm}"),
    (5, "设备上线，固件版本 v{x}.{y}.{z}"),
    (5, "firmware update v{x}.{y}.{z} applied, reboot in {r}s"),
    (4, "电表{g}读数跳变 {v}kWh"),
    (4, "temperature {t}C above threshold on transformer T{f}"),
]


def lines(n, seed=17):
    """(ts, device, level, msg) rows in time order, and the row numbers that carry the
    planted phrase and serial number."""
    rnd = random.Random(seed)
    weights = [w for w, _ in TEMPLATES]
    planted, planted_sn = planted_rows(rnd, n)
    step = MONTH_SECONDS * 1_000_000 // n  # microseconds between lines
    for i in range(n):
        t = rnd.choices(TEMPLATES, weights)[0][1]
        msg = t.format(g=rnd.randrange(64), r=rnd.randrange(1, 9), n=rnd.randrange(10**6),
                       ms=rnd.randrange(5, 900), v=rnd.randrange(180, 260), f=rnd.randrange(1, 40),
                       ok=rnd.choice(["ok", "failed"]), code=rnd.randrange(100, 999),
                       reg=rnd.randrange(40001, 40100), hh=rnd.randrange(24), mm=rnd.randrange(60),
                       x=rnd.randrange(1, 4), y=rnd.randrange(10), z=rnd.randrange(30),
                       t=rnd.randrange(70, 120))
        if i in planted:
            msg = f"接地故障 告警，{msg}"
        elif i in planted_sn:
            msg = f"{msg} device SN7F3A9C21 replaced"
        level = "error" if "超时" in msg or "error" in msg or "故障" in msg else "info"
        us = MONTH_START * 1_000_000 + i * step
        yield us, f"dev{i % DEVICES:05d}", level, msg


def planted_rows(rnd, n):
    """The rows carrying the planted phrase and the serial number (drawn first)."""
    planted = set(rnd.sample(range(n), PLANTED))
    planted_sn = set(rnd.sample(sorted(set(range(n)) - planted), PLANTED_SN))
    return planted, planted_sn


def key_of(i, n):
    return MONTH_START * 1_000_000 + i * (MONTH_SECONDS * 1_000_000 // n), f"dev{i % DEVICES:05d}"


def write_late(w, n):
    """The month being written: one more file over the whole month, overwriting every
    100th row with a heartbeat (a few planted rows among them lose the phrase), and
    LATE new rows between the existing ones carrying it. Returns the new count of the
    planted phrase."""
    planted, planted_sn = planted_rows(random.Random(17), n)
    lost = sorted(planted)[:5]
    rows = []
    for i in sorted(set(range(0, n, 100)) - planted - planted_sn) + lost:
        us, dev = key_of(i, n)
        rows.append(f"{ts_text(us)}\t{dev}\tinfo\t心跳正常 seq=overwritten{i}\n")
    for j in range(LATE):
        us, dev = key_of(j * (n // LATE) + 7, n)
        rows.append(f"{ts_text(us + 1)}\t{dev}\terror\t接地故障 告警，late line {j}\n")
    with w.cursor().copy("COPY device_log (ts, device, level, msg) FROM STDIN") as cp:
        cp.write("".join(rows))
    w.execute("SELECT flush()")
    print(f"\nwrote {len(rows)} overwrites and late rows as one file over the whole month")
    return PLANTED - len(lost) + LATE


def ts_text(us):
    s, frac = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s)) + f".{frac:06d}+00"


def generate(path, n):
    with open(path, "w") as out:
        for us, dev, level, msg in lines(n):
            out.write(f"{ts_text(us)}\t{dev}\t{level}\t{msg}\n")


def load(w, table, path, chunk):
    """COPY the file in chunks of `chunk` lines; (COPY seconds, COPY + flush seconds)."""
    t0 = time.perf_counter()

    def send(text):
        with w.cursor().copy(f"COPY {table} (ts, device, level, msg) FROM STDIN") as cp:
            cp.write(text)

    with open(path) as src:
        while True:
            part = [line for _, line in zip(range(chunk), src)]
            if not part:
                break
            send("".join(part))
    t_copy = time.perf_counter() - t0
    w.execute("SELECT flush()")
    return t_copy, time.perf_counter() - t0


def files_of(w, objects, table):
    listed = [p for (p,) in w.execute(
        "SELECT path FROM system.files WHERE table_name = %s", (table,)).fetchall()]
    return [os.path.join(objects, p) for p in listed]


def run_queries(a, w, d, state, planted=PLANTED):
    """`d` is None when the files overlap: DuckDB over them would count every version."""
    print(f"\n== {state}")
    cases = [
        ("selective phrase", "接地故障", planted),
        ("selective serial", "SN7F3A9C21", PLANTED_SN),
        ("common phrase", "通讯超时", None),
    ]

    def duck(q, n_m):
        if d is None:
            return n_m, "   DuckDB n/a (overlapping files)"
        n_d = d.execute(q).fetchone()[0] if n_m is not None else None
        td = best(lambda: d.execute(q).fetchall(), a.reps)
        return n_d, f"   DuckDB LIKE {td * 1e3:8.1f} ms (x{td / tm:6.1f})"

    for label, term, want in cases:
        m = f"SELECT count(*) FROM device_log WHERE matches(msg, '{term}')"
        like = f"SELECT count(*) FROM device_log WHERE msg LIKE '%{term}%'"
        n_m = w.execute(m).fetchone()[0]
        n_l = w.execute(like).fetchone()[0]
        tm = best(lambda: w.execute(m).fetchall(), a.reps)
        tl = best(lambda: w.execute(like).fetchall(), a.reps)
        n_d, duck_text = duck(like, n_m)
        ok = n_m == n_l == n_d and (want is None or n_m == want)
        print(f"{label:18} count  {n_m:>9} rows {'ok' if ok else 'DIFFERENT ' + str((n_m, n_l, n_d))}"
              f"  matches {tm * 1e3:8.1f} ms   LIKE {tl * 1e3:8.1f} ms (x{tl / tm:6.1f})"
              + duck_text)
        if want is not None:
            m = f"SELECT ts, device, msg FROM device_log WHERE matches(msg, '{term}') ORDER BY ts"
            like = f"SELECT ts, device, msg FROM device_log WHERE msg LIKE '%{term}%' ORDER BY ts"
            rows = w.execute(m).fetchall()
            ok = len(rows) == want and [r[2] for r in rows] == [r[2] for r in w.execute(like).fetchall()]
            tm = best(lambda: w.execute(m).fetchall(), a.reps)
            tl = best(lambda: w.execute(like).fetchall(), a.reps)
            _, duck_text = duck(like, None)
            print(f"{label:18} rows   {len(rows):>9} rows {'ok' if ok else 'DIFFERENT'}"
                  f"  matches {tm * 1e3:8.1f} ms   LIKE {tl * 1e3:8.1f} ms (x{tl / tm:6.1f})"
                  + duck_text)


    q = ("SELECT ts, device, msg, score(msg, '通讯超时 OR 网关7') AS s FROM device_log "
         "WHERE matches(msg, '通讯超时 OR 网关7') ORDER BY s DESC, ts LIMIT 20")
    top = w.execute(q).fetchall()
    ok = len(top) == 20 and all(a[3] >= b[3] for a, b in zip(top, top[1:]))
    tq = best(lambda: w.execute(q).fetchall(), a.reps)
    print(f"{'ranked top 20':18} score() ORDER BY relevance {'ok' if ok else 'NOT ORDERED'}"
          f"  {tq * 1e3:8.1f} ms")


def duck_over(w, objects):
    files = files_of(w, objects, "device_log")
    d = duckdb.connect()
    d.execute("CREATE VIEW device_log AS SELECT * FROM read_parquet([{}])".format(
        ", ".join(f"'{f}'" for f in files)))
    return d, files


def sizes(w, files):
    parquet = sum(os.path.getsize(f) for f in files)
    (index,) = w.execute(
        "SELECT index_bytes FROM system.fulltext WHERE table_name = 'device_log'").fetchone()
    print(f"Parquet {parquet / 2**20:.1f} MiB in {len(files)} files, index {index / 2**20:.1f} MiB"
          f" = {100 * index / parquet:.1f}% of the Parquet")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--objects", required=True, help="the server's local object store folder")
    ap.add_argument("--lines", required=True, help="where to write the generated lines (TSV)")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--chunk", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    w = psycopg.connect(a.dsn, autocommit=True)
    cols = "ts TIMESTAMPTZ NOT NULL, device TEXT NOT NULL, level TEXT, msg TEXT, PRIMARY KEY (device, ts)"
    w.execute(f"CREATE TABLE log_plain ({cols})")
    w.execute(f"CREATE TABLE device_log ({cols}) WITH (fulltext = 'msg')")
    t = time.perf_counter()
    generate(a.lines, a.rows)
    print(f"generated {a.rows} lines in {time.perf_counter() - t:.0f} s "
          f"({os.path.getsize(a.lines) / 2**20:.0f} MiB of text)")
    for table in ("log_plain", "device_log"):
        t_copy, t_all = load(w, table, a.lines, a.chunk)
        print(f"{table:10} {a.rows} rows: COPY {t_copy:.1f} s, COPY + flush {t_all:.1f} s"
              f" ({a.rows / t_all:,.0f} rows/s)")
    w.execute("DROP TABLE log_plain")
    d, files = duck_over(w, a.objects)
    sizes(w, files)
    run_queries(a, w, d, f"as persisted: {len(files)} files")
    w.execute("SELECT compact('device_log')")
    d, files = duck_over(w, a.objects)
    sizes(w, files)
    run_queries(a, w, d, f"after compaction: {len(files)} file(s)")
    planted = write_late(w, a.rows)
    files = files_of(w, a.objects, "device_log")
    run_queries(a, w, None, f"month being written: {len(files)} overlapping files", planted)


if __name__ == "__main__":
    main()
