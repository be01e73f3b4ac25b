//! Sessions of the SQL endpoint are independent, as in PostgreSQL: `SET` (time zone,
//! engine options, custom parameters) changes only its own connection; `SHOW`,
//! `current_setting`, `set_config` and `RESET` read and write the session's values, and
//! SQL `PREPARE`d statements are the session's;
//! SQL cursors stream a query in pieces, in text and binary; transaction statements and
//! savepoints are accepted the way drivers use them. Against the real binary with
//! tokio-postgres (simple and extended protocol).

mod common;

use common::scenarios::CREATE_ELECTRIC as CREATE;
use common::{Server, first_column_text, sqlstate};

/// 2026-03-01 00:00:00 UTC.
const T0: u64 = 1_772_323_200;

async fn with_rows(c: &tokio_postgres::Client, n: u64) {
    c.batch_execute(CREATE).await.unwrap();
    for i in 0..n {
        let ts = std::time::UNIX_EPOCH + std::time::Duration::from_secs(T0 + 60 * i);
        c.execute(
            "INSERT INTO electric (ts, pid, ua, status) VALUES ($1, 'm1', $2, $3)",
            &[&ts, &(i as f64 + 0.5), &(i as i64)],
        )
        .await
        .unwrap();
    }
}

async fn show(c: &tokio_postgres::Client, name: &str) -> String {
    first_column_text(c, &format!("SHOW {name}"))
        .await
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_time_zone_changes_only_its_own_session() {
    let server = Server::new().start();
    let a = server.client().await;
    let b = server.client().await;
    with_rows(&a, 1).await;
    a.batch_execute("SET TIME ZONE 'asia/shanghai'")
        .await
        .unwrap();
    assert_eq!(show(&a, "TimeZone").await, "Asia/Shanghai");
    assert_eq!(show(&b, "timezone").await, "UTC");
    // The same instant, printed in each session's zone (Shanghai is UTC+8, no DST).
    let q = "SELECT ts FROM electric";
    assert_eq!(first_column_text(&a, q).await, ["2026-03-01 08:00:00+08"]);
    assert_eq!(first_column_text(&b, q).await, ["2026-03-01 00:00:00+00"]);
    // Binary results are instants: the same in both sessions.
    let ta: std::time::SystemTime = a.query_one(q, &[]).await.unwrap().get(0);
    let tb: std::time::SystemTime = b.query_one(q, &[]).await.unwrap().get(0);
    assert_eq!(ta, tb);
    assert_eq!(
        ta,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(T0)
    );
    // `SET timezone = …` is the same parameter; numbers are hours from UTC.
    b.batch_execute("SET timezone = -5").await.unwrap();
    assert_eq!(first_column_text(&b, q).await, ["2026-02-28 19:00:00-05"]);
    assert_eq!(show(&a, "TimeZone").await, "Asia/Shanghai");
    // RESET goes back to the default.
    a.batch_execute("RESET ALL").await.unwrap();
    assert_eq!(first_column_text(&a, q).await, ["2026-03-01 00:00:00+00"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_checked_and_read_back_per_session() {
    let server = Server::new().start();
    let a = server.client().await;
    let b = server.client().await;
    // What PostgreSQL answers for these, and wattdb's engine options.
    for (sql, code) in [
        ("SET no_such_parameter = 1", "42704"),
        ("SET TIME ZONE 'Mars/Olympus_Mons'", "22023"),
        ("SET server_version = '9.6'", "55P02"),
        ("SET statement_timeout = '5 parsecs'", "22023"),
        ("SET wattdb.rollup_rewrite = 'sometimes'", "22023"),
        ("SET wattdb.no_such_option = 1", "22023"),
        ("SHOW no_such_parameter", "42704"),
        ("SELECT current_setting('no_such_parameter')", "42704"),
    ] {
        let e = a.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
    }
    a.batch_execute(
        "SET application_name = 'meter-export'; SET statement_timeout = '5s'; \
         SET wattdb.rollup_rewrite = false; SET myapp.tenant = 'b7'",
    )
    .await
    .unwrap();
    assert_eq!(show(&a, "application_name").await, "meter-export");
    assert_eq!(show(&b, "application_name").await, "");
    assert_eq!(show(&a, "statement_timeout").await, "5s");
    assert_eq!(show(&b, "statement_timeout").await, "0");
    assert_eq!(show(&a, "wattdb.rollup_rewrite").await, "false");
    assert_eq!(show(&b, "wattdb.rollup_rewrite").await, "true");
    let setting = |name: &str| format!("SELECT current_setting('{name}')");
    assert_eq!(
        first_column_text(&a, &setting("myapp.tenant")).await,
        ["b7"]
    );
    assert_eq!(
        first_column_text(&b, "SELECT current_setting('myapp.tenant', true)").await,
        Vec::<String>::new(),
        "missing_ok gives NULL (no text)"
    );
    assert_eq!(
        first_column_text(&a, &setting("server_version_num")).await,
        ["150000"]
    );
    // set_config changes the setting and returns the value (asyncpg resets this way).
    assert_eq!(
        first_column_text(&b, "SELECT set_config('TimeZone', 'Europe/Berlin', false)").await,
        ["Europe/Berlin"]
    );
    assert_eq!(show(&b, "TimeZone").await, "Europe/Berlin");
    assert_eq!(show(&a, "TimeZone").await, "UTC");
    // Over the extended protocol too.
    let row = a
        .query_one("SELECT current_setting($1)", &[&"application_name"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "meter-export");
    // SQL-level prepared statements belong to their session.
    a.batch_execute("PREPARE plus_one(BIGINT) AS SELECT $1 + 1")
        .await
        .unwrap();
    assert_eq!(first_column_text(&a, "EXECUTE plus_one(41)").await, ["42"]);
    assert!(b.batch_execute("EXECUTE plus_one(41)").await.is_err());
    // version() in PostgreSQL's format, which drivers parse.
    let v = first_column_text(&a, "SELECT version()").await.join("");
    assert!(v.starts_with("PostgreSQL 15.0 (wattdb "), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_stream_a_query_in_pieces() {
    let server = Server::new().start();
    let c = server.client().await;
    with_rows(&c, 10).await;
    c.batch_execute("BEGIN; DECLARE cur CURSOR FOR SELECT status FROM electric ORDER BY ts")
        .await
        .unwrap();
    let fetch = |sql: &'static str| {
        let c = &c;
        async move {
            c.query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<_>>()
        }
    };
    // Extended protocol (binary results): Describe gives the cursor's columns.
    assert_eq!(fetch("FETCH 3 FROM cur").await, [0, 1, 2]);
    assert_eq!(fetch("FETCH NEXT FROM cur").await, [3]);
    // Simple protocol (text).
    assert_eq!(
        first_column_text(&c, "FETCH FORWARD 4 FROM cur").await,
        ["4", "5", "6", "7"]
    );
    assert_eq!(fetch("FETCH ALL FROM cur").await, [8, 9]);
    assert_eq!(fetch("FETCH ALL FROM cur").await, Vec::<i64>::new());
    c.batch_execute("CLOSE cur; COMMIT").await.unwrap();
    let e = c.query("FETCH 1 FROM cur", &[]).await.expect_err("closed");
    assert_eq!(sqlstate(&e), "34000");
    c.batch_execute("DECLARE twice CURSOR FOR SELECT 1")
        .await
        .unwrap();
    let e = c
        .batch_execute("DECLARE twice CURSOR FOR SELECT 1")
        .await
        .expect_err("duplicate");
    assert_eq!(sqlstate(&e), "42P03");
    let e = c
        .batch_execute("DECLARE back SCROLL CURSOR FOR SELECT 1")
        .await
        .expect_err("scroll");
    assert_eq!(sqlstate(&e), "0A000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_and_failed_blocks_behave_like_postgres() {
    let server = Server::new().start();
    let c = server.client().await;
    with_rows(&c, 2).await;
    c.batch_execute("BEGIN; SAVEPOINT s1").await.unwrap();
    let e = c
        .batch_execute("SELECT no_such_column FROM electric")
        .await
        .expect_err("bad column");
    assert_eq!(sqlstate(&e), "42703");
    // Inside a failed block everything but ROLLBACK is refused…
    let e = c.batch_execute("SELECT 1").await.expect_err("failed block");
    assert_eq!(sqlstate(&e), "25P02");
    // …and rolling back to the savepoint makes the block usable again.
    c.batch_execute("ROLLBACK TO SAVEPOINT s1").await.unwrap();
    assert_eq!(
        first_column_text(&c, "SELECT count(*) FROM electric").await,
        ["2"]
    );
    c.batch_execute("RELEASE SAVEPOINT s1; COMMIT")
        .await
        .unwrap();
    // A failed block ended by COMMIT is rolled back, and the session goes on.
    c.batch_execute("BEGIN").await.unwrap();
    let _ = c.batch_execute("SELECT no_such_column FROM electric").await;
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(first_column_text(&c, "SELECT 1").await, ["1"]);
    // DEALLOCATE (psycopg resets its prepared statements with it).
    c.batch_execute("DEALLOCATE ALL").await.unwrap();
}

/// What connection pools and drivers send besides queries: asyncpg's pool reset
/// (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`), psycopg's
/// `pg_prepared_xacts`, DBeaver's `pg_available_extensions`, SQLAlchemy's `LIKE …
/// ESCAPE '/'` (with the pattern literal and bound); `LISTEN`/`NOTIFY` get `0A000`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_pools_and_drivers_send_is_answered() {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute("SET statement_timeout = '5s'")
        .await
        .unwrap();
    c.batch_execute("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL")
        .await
        .unwrap();
    assert_eq!(show(&c, "statement_timeout").await, "0");
    c.batch_execute("UNLISTEN some_channel").await.unwrap();
    for sql in ["LISTEN alarms", "NOTIFY alarms, 'x'"] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "0A000", "{sql}: {e:?}");
    }
    for relation in [
        "pg_prepared_xacts",
        "pg_catalog.pg_available_extensions",
        "pg_available_extension_versions",
    ] {
        assert_eq!(
            first_column_text(&c, &format!("SELECT count(*) FROM {relation}")).await,
            vec!["0"],
            "{relation}"
        );
    }
    let row = c
        .query_one(
            "SELECT gid, owner FROM pg_prepared_xacts UNION ALL SELECT 'none', 'none'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "none");
    // LIKE with another escape character: `/_` is a literal underscore, `//` a slash.
    let cases = [
        ("pg_type", "pg/_%", true),
        ("pgxtype", "pg/_%", false),
        ("a/b", "a//b", true),
        ("50%", "50/%", true),
        ("500", "50/%", false),
        ("C:\\x", "C:\\x", true),
    ];
    for (text, pattern, want) in cases {
        let literal = format!(
            "SELECT '{}' LIKE '{}' ESCAPE '/'",
            text.replace('\'', "''"),
            pattern
        );
        assert_eq!(
            first_column_text(&c, &literal).await,
            vec![if want { "t" } else { "f" }],
            "{literal}"
        );
        let bound: bool = c
            .query_one(
                "SELECT $1::text LIKE $2::text ESCAPE '/'",
                &[&text, &pattern],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(bound, want, "{text} LIKE {pattern} (bound)");
        let not: bool = c
            .query_one(
                "SELECT $1::text NOT ILIKE $2::text ESCAPE '/'",
                &[&text.to_uppercase(), &pattern],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(not, !want, "{text} NOT ILIKE {pattern} (bound)");
    }
    let e = c
        .batch_execute("SELECT 'x' LIKE 'x/' ESCAPE '/'")
        .await
        .expect_err("a pattern ending with the escape character");
    assert_eq!(sqlstate(&e), "22025", "{e:?}");
}
