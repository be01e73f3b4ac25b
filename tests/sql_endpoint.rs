//! The SQL endpoint end to end, through tokio-postgres and psql against the real binary.

mod common;

use common::{Server, sqlstate};

use common::scenarios::CREATE_ELECTRIC as CREATE;

/// Timestamps come back as PostgreSQL prints them (text: fraction without trailing zeros,
/// the offset's minutes when not whole hours) and as the same instants in binary, in a
/// session time zone that is neither UTC nor a whole number of hours away from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_in_a_time_zone_as_text_and_binary() {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE).await.unwrap();
    // 2026-11-01 00:00:00 UTC plus 0, 1.5 s, 90 s + 123456 µs.
    let base: i64 = 1_793_491_200;
    let offsets_micros = [0_i64, 1_500_000, 90_123_456];
    for (i, off) in offsets_micros.iter().enumerate() {
        let ts = std::time::UNIX_EPOCH
            + std::time::Duration::from_micros((base * 1_000_000 + off) as u64);
        c.execute(
            "INSERT INTO electric (ts, pid, ua) VALUES ($1, 'tz', $2)",
            &[&ts, &(i as f64)],
        )
        .await
        .unwrap();
    }
    c.batch_execute("SET TIME ZONE 'Asia/Kolkata'")
        .await
        .unwrap();
    let q = "SELECT ts FROM electric WHERE pid = 'tz' ORDER BY ts";
    let text = common::first_column_text(&c, q).await;
    // Kolkata is UTC+05:30: 00:00 UTC is 05:30 local.
    assert_eq!(
        text,
        [
            "2026-11-01 05:30:00+05:30",
            "2026-11-01 05:30:01.5+05:30",
            "2026-11-01 05:31:30.123456+05:30",
        ]
    );
    let binary: Vec<std::time::SystemTime> = c
        .query(q, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<std::time::SystemTime> = offsets_micros
        .iter()
        .map(|off| {
            std::time::UNIX_EPOCH
                + std::time::Duration::from_micros((base * 1_000_000 + off) as u64)
        })
        .collect();
    assert_eq!(binary, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_parameters_and_binary_results() {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE).await.unwrap();
    // Multi-row literal insert (simple protocol).
    let n = c
        .execute(
            "INSERT INTO electric (ts, pid, ua, status, on_grid, note) VALUES \
             ('2026-11-01T00:00:00Z', 'p1', 220.5, 1, true, 'a'), \
             ('2026-11-01T00:15:00Z', 'p1', 221.5, 2, false, 'b')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Parameterised insert (extended protocol, binary parameters).
    let stmt = c
        .prepare("INSERT INTO electric (ts, pid, ua, kwh) VALUES ($1, $2, $3, $4)")
        .await
        .unwrap();
    let t0 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000);
    for i in 0..20u64 {
        let ts = t0 + std::time::Duration::from_secs(60 * i);
        let pid = format!("m{}", i % 3);
        let ua = 200.0 + i as f64;
        let kwh = i as f64 * 0.5;
        assert_eq!(c.execute(&stmt, &[&ts, &pid, &ua, &kwh]).await.unwrap(), 1);
    }
    let rows = c
        .query(
            "SELECT ts, pid, ua, status, on_grid, note FROM electric WHERE pid = $1 ORDER BY ts",
            &[&"p1"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let ua: f64 = rows[1].get(2);
    let status: i64 = rows[0].get(3);
    let on_grid: bool = rows[0].get(4);
    let note: &str = rows[1].get(5);
    assert_eq!((ua, status, on_grid, note), (221.5, 1, true, "b"));
    let ts: std::time::SystemTime = rows[0].get(0);
    assert_eq!(
        ts,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_793_491_200)
    );

    // Aggregates equal the values inserted (computed here independently).
    let row = c
        .query_one(
            "SELECT count(*), sum(ua), max(kwh) FROM electric WHERE pid LIKE 'm%'",
            &[],
        )
        .await
        .unwrap();
    let expected_sum: f64 = (0..20).map(|i| 200.0 + i as f64).sum();
    assert_eq!(row.get::<_, i64>(0), 20);
    assert_eq!(row.get::<_, f64>(1), expected_sum);
    assert_eq!(row.get::<_, f64>(2), 9.5);

    // Admin functions work through the extended protocol too (drivers prepare everything).
    // Two month partitions: the m* rows are in September 2026, the p1 rows in November.
    let flushed = c.query("SELECT flush()", &[]).await.unwrap();
    let report: &str = flushed[0].get(0);
    assert!(report.starts_with("persisted "), "{report}");
    // (The report also counts the files of the rollup tables, whatever they hold now.)
    let files = c
        .query_one(
            "SELECT count(*), CAST(sum(rows) AS BIGINT) FROM system.files \
             WHERE table_name = 'electric'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((files.get::<_, i64>(0), files.get::<_, i64>(1)), (2, 22));
    let again: i64 = c
        .query_one("SELECT count(*) FROM electric", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_are_deduplicated_across_flushes_and_buffer() {
    common::scenarios::dedup_across_flushes(Server::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_postgres_sqlstates_and_the_connection_survives() {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE).await.unwrap();
    let cases = [
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELEC 1", "42601"),
        ("SELECT no_such_column FROM electric", "42703"),
        ("SELECT no_such_function(1)", "42883"),
        (
            "INSERT INTO electric (ts, pid, ua) VALUES ('2026-11-01T00:00:00Z', 'p1', 'abc')",
            "22P02",
        ),
        ("SELECT CAST('x' AS BIGINT)", "22P02"),
        ("SELECT 1 / 0", "22012"),
        (CREATE, "42P07"),
        ("DROP TABLE no_such_table", "42P01"),
        (
            "CREATE TABLE bad (ts TIMESTAMPTZ, pid TEXT, PRIMARY KEY (pid))",
            "42P16",
        ),
        ("SHOW no_such_setting", "42704"),
    ];
    for (sql, code) in cases {
        let err = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
        // Same through the extended protocol where it applies.
        if !sql.starts_with("CREATE") && !sql.starts_with("DROP") && !sql.starts_with("SHOW") {
            let err = c.query(sql, &[]).await.expect_err(sql);
            assert_eq!(sqlstate(&err), code, "extended {sql}: {err:?}");
        }
    }
    // Drivers send these on connect.
    c.batch_execute("SET search_path = public, \"$user\"")
        .await
        .unwrap();
    c.batch_execute("SET search_path TO public").await.unwrap();
    let scs: String = c
        .query_one("SHOW standard_conforming_strings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(scs, "on");
    let v: i32 = c.query_one("SELECT 1::int", &[]).await.unwrap().get(0);
    assert_eq!(v, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_heavy_client_queries_do_not_take_the_server_down() {
    let mut server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE).await.unwrap();
    // Sent by BI tools (DBeaver-style role listing); it overflowed a 2 MiB worker stack
    // with this stack of crates and aborted the process.
    let heavy = "SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, \
        r.rolcanlogin, r.rolconnlimit, r.rolvaliduntil, \
        ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m \
              JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid) as memberof, \
        pg_catalog.shobj_description(r.oid, 'pg_authid') AS description, r.rolreplication \
        FROM pg_catalog.pg_roles r LEFT JOIN pg_catalog.pg_shdescription d ON d.objoid = r.oid \
        ORDER BY 1";
    let _ = c.simple_query(heavy).await; // may fail (unsupported), must not crash
    let deep = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
    let _ = c.simple_query(&deep).await;
    let tables = "SELECT c.relname, n.nspname FROM pg_catalog.pg_class c \
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
        WHERE c.relkind IN ('r','p','v') AND n.nspname NOT IN ('pg_catalog','information_schema') ORDER BY 2, 1";
    let rows = c.query(tables, &[]).await.unwrap();
    assert!(rows.iter().any(|r| r.get::<_, &str>(0) == "electric"));
    assert!(server.is_running(), "server died; log:\n{}", server.log());
    let fresh = server.client().await;
    let one: i64 = fresh
        .query_one("SELECT count(*) FROM electric", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_and_describes_tables() {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE).await.unwrap();
    let out = server.psql("\\dt");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("electric"), "{stdout}");
    // Like PostgreSQL: relations outside the search path only when asked for by schema
    // (psql's tab completion offers unqualified names by the same test).
    assert!(!stdout.contains("partitions"), "{stdout}");
    let out = server.psql("\\dt system.*");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("partitions"), "{stdout}");
    let completion = "SELECT c.relname, NULL::pg_catalog.text FROM pg_catalog.pg_class c \
        WHERE c.relkind IN ('r', 'p') AND (c.relname) LIKE '%' \
        AND pg_catalog.pg_table_is_visible(c.oid) AND c.relnamespace <> \
        (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'pg_catalog') \
        UNION ALL SELECT NULL::pg_catalog.text, n.nspname FROM pg_catalog.pg_namespace n \
        WHERE n.nspname LIKE '%' AND n.nspname NOT LIKE E'pg\\\\_%' LIMIT 1000";
    let mut offered: Vec<String> = c
        .query(completion, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.get::<_, Option<String>>(0)
                .or(r.get::<_, Option<String>>(1))
                .unwrap_or_default()
        })
        .collect();
    offered.sort();
    assert_eq!(offered, ["electric", "public", "rejected", "system"]);
    // `SET ti<TAB>`: the settable parameters from pg_settings.
    let set_completion = "SELECT pg_catalog.lower(name) FROM pg_catalog.pg_settings \
        WHERE context IN ('user', 'superuser') \
        AND pg_catalog.lower(name) LIKE pg_catalog.lower('ti%') LIMIT 1000";
    let offered: Vec<String> = c
        .query(set_completion, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(offered, ["timezone"]);
    let out = server.psql("\\d electric");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "timestamp with time zone",
        "double precision",
        "bigint",
        "boolean",
        "not null",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected} in:\n{stdout}"
        );
    }
    let out =
        server.psql("SELECT time_bucket('15 minutes', ts) AS b, count(*) FROM electric GROUP BY b");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // psql 15's other describe commands run and list what wattdb has.
    for (command, expected) in [
        ("\\l", "wattdb"),
        ("\\l+", "wattdb"),
        ("\\dn", "system"),
        ("\\dt+", "electric"),
        ("\\d+ electric", "double precision"),
        ("\\du", "wattdb"),
        ("\\df", "List of functions"),
        // The key as the table's primary key index (rejected's too).
        (
            "\\d electric",
            "\"electric_pkey\" PRIMARY KEY, btree (pid, ts)",
        ),
        (
            "\\d+ electric",
            "\"electric_pkey\" PRIMARY KEY, btree (pid, ts)",
        ),
        ("\\di", "electric_pkey"),
        ("\\dv", "Did not find any relations"),
    ] {
        let out = server.psql(command);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("ERROR"),
            "{command}: {stdout}{stderr}"
        );
        assert!(
            stdout.contains(expected) || stderr.contains(expected),
            "{command}: missing {expected} in {stdout}{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_uses_scram_and_refuses_wrong_passwords() {
    let mut server = Server::new();
    server.password = Some("s3cret-pw".into());
    let server = server.start();
    let c = server.client().await;
    let one: i64 = c.query_one("SELECT 1::bigint", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let bad = format!(
        "host=127.0.0.1 port={} user=wattdb dbname=wattdb password=wrong",
        server.pg_port
    );
    let err = tokio_postgres::connect(&bad, tokio_postgres::NoTls)
        .await
        .err()
        .expect("wrong password accepted");
    assert_eq!(sqlstate(&err), "28P01", "{err:?}");
    let nouser = format!(
        "host=127.0.0.1 port={} user=bob dbname=wattdb password=s3cret-pw",
        server.pg_port
    );
    let err = tokio_postgres::connect(&nouser, tokio_postgres::NoTls)
        .await
        .err()
        .expect("unknown user accepted");
    assert!(
        ["28000", "28P01"].contains(&sqlstate(&err).as_str()),
        "{err:?}"
    );
}

#[test]
fn refuses_non_loopback_without_password() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wattdb"))
        .args(["serve", "--pg-listen", "0.0.0.0:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .env_remove("WATTDB_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_endpoints() {
    let server = Server::new().start();
    let (status, body) = common::http_get(server.http_port, "/health");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");
    let c = server.client().await;
    c.batch_execute(CREATE).await.unwrap();
    c.batch_execute(
        "INSERT INTO electric (ts, pid, ua) VALUES ('2026-11-01T00:00:00Z','a',1), ('2026-11-01T00:01:00Z','a',2), ('2026-11-01T00:02:00Z','b',3)",
    )
    .await
    .unwrap();
    c.batch_execute("SELECT flush()").await.unwrap();
    let (status, body) = common::http_get(server.http_port, "/metrics");
    assert!(status.contains("200"), "{status}");
    let value = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing in:\n{body}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("wattdb_rows_written_total"), 3.0);
    assert_eq!(value("wattdb_file_rows"), 3.0);
    assert_eq!(value("wattdb_persisted_files_total"), 1.0);
    assert_eq!(
        value("wattdb_tables"),
        2.0,
        "electric and the rejected quarantine table"
    );
    assert!(value("wattdb_wal_fsyncs_total") >= 1.0);
    let (status, _) = common::http_get(server.http_port, "/nope");
    assert!(status.contains("404"), "{status}");
}

/// A simple query of several statements whose third fails: the first two ran and are
/// answered (their CommandCompletes), then the error, and the fourth does not run — as
/// PostgreSQL answers (psql sends a script's statements this way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_statement_of_several_ends_the_query_after_the_others_answers() {
    let server = Server::new().start();
    let c = server.client().await;
    let mut raw = common::raw_pg::connect(server.pg_port).await;
    let mut query =
        b"CREATE TABLE s (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, \
        PRIMARY KEY (pid, ts)); INSERT INTO s VALUES ('2026-03-01T00:00:00Z', 'a', 1); \
        SELECT * FROM no_such_table; INSERT INTO s VALUES ('2026-03-01T00:00:00Z', 'b', 2)"
            .to_vec();
    query.push(0);
    use tokio::io::AsyncWriteExt;
    raw.write_all(&common::raw_pg::message(b'Q', &query))
        .await
        .unwrap();
    let replies = common::raw_pg::until_ready(&mut raw).await;
    let tags: String = replies.iter().map(|r| r.tag as char).collect();
    assert_eq!(
        tags, "CCEZ",
        "CommandComplete ×2, ErrorResponse, ReadyForQuery"
    );
    assert_eq!(replies[2].sqlstate().as_deref(), Some("42P01"));
    let pids = common::first_column_text(&c, "SELECT pid FROM s").await;
    assert_eq!(
        pids,
        vec!["a"],
        "the statements before the error ran, the one after not"
    );
}
