"""The Python PostgreSQL clients our users have, against a running wattdb.

    python_clients.py --port 5433 [--only psycopg3,sqlalchemy]

Each client creates its own table, writes known rows and checks what it reads back
against values computed here from those rows (never against wattdb's own output).
Prints one line per check; exits non-zero when any check failed.
"""

import argparse
import asyncio
import datetime as dt
import math
import sys
import traceback

UTC = dt.timezone.utc
BASE = dt.datetime(2026, 3, 1, tzinfo=UTC)

# Known readings: (ts, meter, p, energy, ok, note); one meter has a NULL note.
ROWS = [
    (BASE + dt.timedelta(minutes=15 * i), f"m{i % 3}", 100.5 + i, 1000 + 7 * i, i % 2 == 0,
     None if i % 3 == 1 else f"reading {i}")
    for i in range(12)
]

failures = []


def check(name, got, want):
    if got == want:
        print(f"ok    {name}")
    else:
        print(f"FAIL  {name}: got {got!r}, want {want!r}")
        failures.append(name)


def run(name, fn, *args):
    try:
        fn(*args)
    except Exception:  # a client error is a failed check, then go on with the others
        print(f"FAIL  {name}: raised\n{traceback.format_exc()}")
        failures.append(name)


def ddl(table):
    return (f"CREATE TABLE {table} (ts TIMESTAMPTZ NOT NULL, meter TEXT NOT NULL, "
            f"p DOUBLE PRECISION, energy BIGINT, ok BOOLEAN, note TEXT, "
            f"PRIMARY KEY (meter, ts))")


def expected_per_meter():
    out = {}
    for ts, meter, p, energy, ok, note in ROWS:
        n, s, e = out.get(meter, (0, 0.0, 0))
        out[meter] = (n + 1, s + p, e + energy)
    return out


def psycopg3(port):
    import psycopg

    dsn = f"host=127.0.0.1 port={port} user=wattdb dbname=wattdb"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS py3_meter")
        conn.execute(ddl("py3_meter"))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO py3_meter (ts, meter, p, energy, ok, note) VALUES (%s, %s, %s, %s, %s, %s)",
                ROWS)
        # Extended protocol, text results.
        rows = conn.execute(
            "SELECT ts, meter, p, energy, ok, note FROM py3_meter WHERE meter = %s ORDER BY ts",
            ("m1",)).fetchall()
        want = [r for r in ROWS if r[1] == "m1"]
        check("psycopg3 text round trip", [tuple(r) for r in rows], want)
        # Binary results.
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT ts, meter, p, energy, ok, note FROM py3_meter ORDER BY meter, ts")
            got = [tuple(r) for r in cur.fetchall()]
        check("psycopg3 binary round trip", got, sorted(ROWS, key=lambda r: (r[1], r[0])))
        # Simple protocol (no parameters, several statements).
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM py3_meter; SELECT 1")
        check("psycopg3 simple multi-statement", cur.fetchone()[0], len(ROWS))
        # Aggregates against values computed here.
        got = {m: (n, round(s, 6), e) for m, n, s, e in conn.execute(
            "SELECT meter, count(*), sum(p), sum(energy) FROM py3_meter GROUP BY meter ORDER BY meter")}
        want = {m: (n, round(s, 6), e) for m, (n, s, e) in expected_per_meter().items()}
        check("psycopg3 aggregates", got, want)
        # Server-side cursor.
        with conn.transaction():
            with conn.cursor(name="py3_cur") as cur:
                cur.execute("SELECT energy FROM py3_meter ORDER BY ts")
                first = cur.fetchmany(5)
                rest = cur.fetchall()
        check("psycopg3 server-side cursor", [r[0] for r in first + rest],
              [r[3] for r in sorted(ROWS)])
        # Types: intervals, numerics, NULLs, booleans.
        row = conn.execute(
            "SELECT INTERVAL '1 hour 30 minutes', CAST(NULL AS TEXT), true, 2.5::double precision").fetchone()
        check("psycopg3 interval/null/bool/float", tuple(row),
              (dt.timedelta(hours=1, minutes=30), None, True, 2.5))
        # COPY … TO STDOUT, read as psycopg's copy object.
        with conn.cursor() as cur:
            text = b""
            with cur.copy("COPY (SELECT meter, energy FROM py3_meter ORDER BY ts) TO STDOUT") as copy:
                for chunk in copy:
                    text += bytes(chunk)
        check("psycopg3 copy to stdout", text.decode(),
              "".join(f"{r[1]}\t{r[3]}\n" for r in sorted(ROWS)))
        # COPY … FROM STDIN with psycopg's write_row (text format).
        conn.execute("DROP TABLE IF EXISTS py3_copy")
        conn.execute(ddl("py3_copy"))
        with conn.cursor() as cur:
            with cur.copy("COPY py3_copy (ts, meter, p, energy, ok, note) FROM STDIN") as copy:
                for r in ROWS:
                    copy.write_row(r)
        got = [tuple(r) for r in conn.execute(
            "SELECT ts, meter, p, energy, ok, note FROM py3_copy ORDER BY meter, ts")]
        check("psycopg3 copy from stdin", got, sorted(ROWS, key=lambda r: (r[1], r[0])))
        # The same rows in PostgreSQL's binary COPY format.
        conn.execute("DROP TABLE IF EXISTS py3_copy")
        conn.execute(ddl("py3_copy"))
        with conn.cursor() as cur:
            with cur.copy("COPY py3_copy (ts, meter, p, energy, ok, note) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["timestamptz", "text", "float8", "int8", "bool", "text"])
                for r in ROWS:
                    copy.write_row(r)
        got = [tuple(r) for r in conn.execute(
            "SELECT ts, meter, p, energy, ok, note FROM py3_copy ORDER BY meter, ts")]
        check("psycopg3 binary copy from stdin", got, sorted(ROWS, key=lambda r: (r[1], r[0])))
        version = conn.execute("SELECT version()").fetchone()[0]
        check("psycopg3 version() is PostgreSQL's format", version.startswith("PostgreSQL "), True)
        check("psycopg3 server_version", conn.info.server_version // 10000 >= 12, True)
        # wattdb's functions with server-side bound parameters answer as with literals.
        opts = '{"url": "http://127.0.0.1:9/hook"}'
        lit = conn.execute(f"SELECT create_channel('py3_lit', 'webhook', '{opts}')").fetchone()[0]
        bound = conn.execute("SELECT create_channel(%s, 'webhook', %s)", ("py3_bnd", opts)).fetchone()[0]
        check("psycopg3 admin function with bound parameters",
              bound, lit.replace("py3_lit", "py3_bnd"))
        ret = conn.execute("SELECT set_retention(%s, %s)", ("py3_copy", "4 months")).fetchone()[0]
        check("psycopg3 set_retention bound", ret,
              conn.execute("SELECT set_retention('py3_copy', '4 months')").fetchone()[0])
        # Prepared once, executed many times (psycopg prepares after 5 runs).
        answers = {conn.execute("SELECT drop_channel(%s)", (name,), prepare=True).fetchone()[0]
                   for name in ["py3_lit", "py3_bnd"]}
        check("psycopg3 prepared admin function", answers,
              {"dropped channel py3_lit", "dropped channel py3_bnd"})


def psycopg2_client(port):
    import psycopg2
    import psycopg2.extras

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="wattdb", dbname="wattdb")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS py2_meter")
    cur.execute(ddl("py2_meter"))
    psycopg2.extras.execute_values(
        cur, "INSERT INTO py2_meter (ts, meter, p, energy, ok, note) VALUES %s", ROWS)
    cur.execute("SELECT ts, meter, p, energy, ok, note FROM py2_meter WHERE meter = %s ORDER BY ts",
                ("m2",))
    check("psycopg2 round trip", cur.fetchall(), [r for r in ROWS if r[1] == "m2"])
    cur.execute("SELECT count(*), sum(energy) FROM py2_meter WHERE ts >= %s AND ts < %s",
                (BASE + dt.timedelta(hours=1), BASE + dt.timedelta(hours=2)))
    inside = [r for r in ROWS if BASE + dt.timedelta(hours=1) <= r[0] < BASE + dt.timedelta(hours=2)]
    check("psycopg2 time range", cur.fetchone(), (len(inside), sum(r[3] for r in inside)))
    conn.autocommit = False
    named = conn.cursor(name="py2_cur")
    named.itersize = 4
    named.execute("SELECT p FROM py2_meter ORDER BY ts")
    check("psycopg2 named cursor", [r[0] for r in named], [r[2] for r in sorted(ROWS)])
    named.close()
    conn.commit()
    conn.close()


def sqlalchemy_client(port):
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(f"postgresql+psycopg://wattdb@127.0.0.1:{port}/wattdb")
    with engine.connect() as c:
        c.exec_driver_sql("DROP TABLE IF EXISTS sa_meter")
        c.exec_driver_sql(ddl("sa_meter"))
        c.execute(sa.text("INSERT INTO sa_meter (ts, meter, p, energy, ok, note) "
                          "VALUES (:ts, :meter, :p, :energy, :ok, :note)"),
                  [dict(zip(("ts", "meter", "p", "energy", "ok", "note"), r)) for r in ROWS])
        c.commit()
    insp = sa.inspect(engine)
    check("sqlalchemy get_table_names", "sa_meter" in insp.get_table_names(), True)
    cols = {c["name"]: (str(c["type"]), c["nullable"]) for c in insp.get_columns("sa_meter")}
    check("sqlalchemy get_columns", cols, {
        "ts": ("TIMESTAMP", False), "meter": ("TEXT", False), "p": ("DOUBLE PRECISION", True),
        "energy": ("BIGINT", True), "ok": ("BOOLEAN", True), "note": ("TEXT", True)})
    pk = insp.get_pk_constraint("sa_meter")
    check("sqlalchemy get_pk_constraint", (pk["name"], pk["constrained_columns"]),
          ("sa_meter_pkey", ["meter", "ts"]))
    # The primary key index is not one of get_indexes' (PostgreSQL leaves it out too).
    check("sqlalchemy get_indexes", insp.get_indexes("sa_meter"), [])
    check("sqlalchemy get_unique_constraints", insp.get_unique_constraints("sa_meter"), [])
    check("sqlalchemy get_foreign_keys", insp.get_foreign_keys("sa_meter"), [])
    # Reflection of the whole table, key included.
    t = sa.Table("sa_meter", sa.MetaData(), autoload_with=engine)
    check("sqlalchemy autoload primary key", list(t.primary_key.columns.keys()), ["meter", "ts"])
    check("sqlalchemy autoload columns", list(t.columns.keys()),
          ["ts", "meter", "p", "energy", "ok", "note"])
    with engine.connect() as c:
        q = sa.select(t.c.meter, sa.func.count(), sa.func.sum(t.c.energy)).group_by(t.c.meter).order_by(t.c.meter)
        got = {m: (n, e) for m, n, e in c.execute(q)}
    want = {m: (n, e) for m, (n, s, e) in expected_per_meter().items()}
    check("sqlalchemy core select", got, want)
    df = pd.read_sql("SELECT meter, p FROM sa_meter ORDER BY ts", engine)
    check("pandas read_sql", (list(df["meter"]), [float(x) for x in df["p"]]),
          ([r[1] for r in sorted(ROWS)], [r[2] for r in sorted(ROWS)]))


def asyncpg_client(port):
    import asyncpg

    async def main():
        conn = await asyncpg.connect(host="127.0.0.1", port=port, user="wattdb", database="wattdb")
        await conn.execute("DROP TABLE IF EXISTS apg_meter")
        await conn.execute(ddl("apg_meter"))
        await conn.executemany(
            "INSERT INTO apg_meter (ts, meter, p, energy, ok, note) VALUES ($1, $2, $3, $4, $5, $6)",
            ROWS)
        rows = await conn.fetch(
            "SELECT ts, meter, p, energy, ok, note FROM apg_meter WHERE meter = $1 ORDER BY ts", "m0")
        check("asyncpg round trip", [tuple(r) for r in rows], [r for r in ROWS if r[1] == "m0"])
        total = await conn.fetchval("SELECT sum(p) FROM apg_meter WHERE ok = $1", True)
        check("asyncpg fetchval", math.isclose(total, sum(r[2] for r in ROWS if r[4])), True)
        lit = await conn.fetchval("SELECT set_retention('apg_meter', '4 months')")
        bound = await conn.fetchval("SELECT set_retention($1, $2)", "apg_meter", "4 months")
        check("asyncpg admin function with bound parameters", bound, lit)
        st = await conn.prepare("SELECT set_retention($1, $2)")
        check("asyncpg prepared admin function describes its column",
              [a.name for a in st.get_attributes()], ["set_retention"])
        check("asyncpg prepared admin function", await st.fetchval("apg_meter", "none"),
              await conn.fetchval("SELECT set_retention('apg_meter', 'none')"))
        # A table function given a parameter: asyncpg prepares (Describe before Bind).
        got = await conn.fetch("SELECT value FROM generate_series(1, $1) ORDER BY 1", "3")
        check("asyncpg table function with a bound parameter", [r[0] for r in got], [1, 2, 3])
        # Arrays: asyncpg introspects their types (WITH RECURSIVE typeinfo_tree …,
        # $1::oid[]) before it can decode them.
        got = await conn.fetchrow(
            "SELECT array_agg(energy ORDER BY ts) AS e, array_agg(meter ORDER BY ts) AS m "
            "FROM apg_meter WHERE ok")
        kept = sorted(r for r in ROWS if r[4])
        check("asyncpg arrays (type introspection)", (list(got["e"]), list(got["m"])),
              ([r[3] for r in kept], [r[1] for r in kept]))
        await conn.close()
        # A pool resets a connection when it comes back (pg_advisory_unlock_all(),
        # CLOSE ALL, UNLISTEN *, RESET ALL) and hands it out again.
        pool = await asyncpg.create_pool(host="127.0.0.1", port=port, user="wattdb",
                                         database="wattdb", min_size=1, max_size=1)
        answers = []
        for meter in ["m0", "m1", "m2"]:
            async with pool.acquire() as c:
                await c.execute("SET TIME ZONE 'Asia/Shanghai'")
                answers.append(await c.fetchval(
                    "SELECT count(*) FROM apg_meter WHERE meter = $1", meter))
                answers.append(await c.fetchval("SELECT current_setting('TimeZone')"))
        await pool.close()
        check("asyncpg pool reuses a reset connection", answers,
              [x for m in ["m0", "m1", "m2"]
               for x in (sum(1 for r in ROWS if r[1] == m), "Asia/Shanghai")])

    asyncio.run(main())


def load_calls(path):
    """wattdb_calls.tsv: the setup statements and every (function, args) call."""
    setup, calls = [], []
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            if fields[0] == "@setup":
                setup.extend(fields[1:])
            else:
                calls.append((fields[0], fields[1:]))
    return setup, calls


def literal_sql(function, args):
    quoted = ", ".join("'" + a.replace("'", "''") + "'" for a in args)
    return f"SELECT {function}({quoted})"


def answer_text(value):
    """A call's one text answer, up to a time it names ("… until <time>")."""
    return str(value).split(" until ")[0] if value is not None else "<null>"


def error_text(e):
    return f"ERROR {getattr(e, 'sqlstate', None) or type(e).__name__}"


def outcome(run):
    """The answer of run(), or the SQLSTATE it failed with."""
    try:
        return answer_text(run())
    except Exception as e:  # the driver's error for a failed call
        return error_text(e)


def psycopg3_calls(literal_port, bound_port, path):
    """Every wattdb function through psycopg: with literals on one server, bound
    server-side (extended protocol, text parameters) on another set up the same way."""
    import psycopg

    setup, calls = load_calls(path)
    dsn = "host=127.0.0.1 port={} user=wattdb dbname=wattdb"
    with psycopg.connect(dsn.format(literal_port), autocommit=True) as lit, \
            psycopg.connect(dsn.format(bound_port), autocommit=True) as bnd:
        for statement in setup:
            lit.execute(statement)
            bnd.execute(statement)
        for function, args in calls:
            want = outcome(lambda: lit.execute(literal_sql(function, args)).fetchone()[0])
            placeholders = ", ".join(["%s"] * len(args))
            got = outcome(lambda: bnd.execute(f"SELECT {function}({placeholders})",
                                              args).fetchone()[0])
            check(f"psycopg3 {function}({', '.join(args)}) bound", got, want)


def asyncpg_calls(literal_port, bound_port, path):
    """Every wattdb function through asyncpg (it prepares each statement and binds)."""
    import asyncpg

    setup, calls = load_calls(path)

    async def main():
        lit = await asyncpg.connect(host="127.0.0.1", port=literal_port, user="wattdb",
                                    database="wattdb")
        bnd = await asyncpg.connect(host="127.0.0.1", port=bound_port, user="wattdb",
                                    database="wattdb")
        for statement in setup:
            await lit.execute(statement)
            await bnd.execute(statement)

        async def answer(call):
            try:
                return answer_text(await call)
            except Exception as e:  # the driver's error for a failed call
                return error_text(e)

        for function, args in calls:
            want = await answer(lit.fetchval(literal_sql(function, args)))
            placeholders = ", ".join(f"${i + 1}" for i in range(len(args)))
            got = await answer(bnd.fetchval(f"SELECT {function}({placeholders})", *args))
            check(f"asyncpg {function}({', '.join(args)}) bound", got, want)
        await lit.close()
        await bnd.close()

    asyncio.run(main())


CALLS = {"psycopg3": psycopg3_calls, "asyncpg": asyncpg_calls}

CLIENTS = {
    "psycopg3": psycopg3,
    "psycopg2": psycopg2_client,
    "sqlalchemy": sqlalchemy_client,
    "asyncpg": asyncpg_client,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--only", default=None)
    ap.add_argument("--calls", help="wattdb_calls.tsv: call every wattdb function")
    ap.add_argument("--literal-port", type=int, help="with --calls: the server for literals")
    a = ap.parse_args()
    if a.calls:
        for name in (a.only or ",".join(CALLS)).split(","):
            run(name, CALLS[name], a.literal_port, a.port, a.calls)
    else:
        for name in (a.only or ",".join(CLIENTS)).split(","):
            run(name, CLIENTS[name], a.port)
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}")
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
