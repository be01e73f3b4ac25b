//! Admission, from outside through tokio-postgres: sessions beyond `--max-connections`
//! get `53300` while admins keep their reserved slots; a user's `CONNECTION LIMIT`,
//! `NOLOGIN` and `VALID UNTIL` hold (and survive a restart); `ALTER ROLE … SET
//! statement_timeout` is each of the user's sessions' default; statements that read data
//! beyond `--max-active-statements` wait their turn in arrival order, are shown waiting
//! in `pg_stat_activity` and `/metrics`, and are stopped by the queue timeout, their own
//! `statement_timeout` and a cancel request — while `SELECT 1` and the catalog answer.

mod common;

use std::time::{Duration, Instant};

use common::{Server, connect_as, db_message, first_column_text, metric, sqlstate};
use tokio_postgres::{Client, NoTls};

const ADMIN_PW: &str = "admin-pw";

/// A self-join of two generated series: seconds of CPU in any build.
const RUNAWAY: &str = "SELECT count(*) FROM generate_series(1, 200000) a \
    CROSS JOIN generate_series(1, 200000) b WHERE (a.value * 7 + b.value) % 1000003 = 5";

fn server(args: &[&str]) -> Server {
    let mut server = Server::new();
    server.password = Some(ADMIN_PW.into());
    server.extra_args = args.iter().map(|a| a.to_string()).collect();
    server.start()
}

async fn admin(server: &Server) -> Client {
    connect_as(server, "wattdb", ADMIN_PW).await.expect("admin")
}

/// `connect` is refused with `code`; returns the message.
async fn refused(server: &Server, user: &str, password: &str, code: &str) -> String {
    let e = connect_as(server, user, password)
        .await
        .err()
        .unwrap_or_else(|| panic!("{user} connected; expected {code}"));
    assert_eq!(sqlstate(&e), code, "{user}: {e:?}");
    db_message(&e)
}

/// Wait until `check` holds (a closed connection's session ends shortly after the
/// client goes).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_beyond_max_connections_are_refused_and_admins_keep_their_slot() {
    let server = server(&["--max-connections", "4", "--reserved-connections", "1"]);
    let boss = admin(&server).await;
    boss.batch_execute("CREATE USER r PASSWORD 'rpw'")
        .await
        .unwrap();
    // The admin holds one of the four; readers may take two more (one is kept).
    let r1 = connect_as(&server, "r", "rpw").await.unwrap();
    let r2 = connect_as(&server, "r", "rpw").await.unwrap();
    let m = refused(&server, "r", "rpw", "53300").await;
    assert!(
        m.starts_with(
            "remaining connection slots are reserved for roles with the SUPERUSER attribute"
        ),
        "{m}"
    );
    // The reserved slot is an admin's.
    let boss2 = admin(&server).await;
    let m = refused(&server, "wattdb", ADMIN_PW, "53300").await;
    assert!(m.starts_with("sorry, too many clients already"), "{m}");
    // Those that are in keep working.
    assert_eq!(first_column_text(&r1, "SELECT 1").await, vec!["1"]);
    assert_eq!(
        first_column_text(&boss2, "SELECT count(*) FROM pg_stat_activity").await,
        vec!["4"]
    );
    assert_eq!(metric(&server, "wattdb_sql_sessions_refused_total"), 2.0);
    assert_eq!(metric(&server, "wattdb_sql_sessions"), 4.0);
    // A session that ends frees its slot (with three open, the fourth is an admin's).
    drop(r2);
    drop(boss2);
    eventually("the sessions end", async || {
        metric(&server, "wattdb_sql_sessions") == 2.0
    })
    .await;
    connect_as(&server, "r", "rpw").await.unwrap();
    drop(boss);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_nologin_and_valid_until_hold_and_survive_a_restart() {
    let mut server = server(&[]);
    let boss = admin(&server).await;
    boss.batch_execute("CREATE USER meter PASSWORD 'mpw' CONNECTION LIMIT 2")
        .await
        .unwrap();
    let a = connect_as(&server, "meter", "mpw").await.unwrap();
    let _b = connect_as(&server, "meter", "mpw").await.unwrap();
    let m = refused(&server, "meter", "mpw", "53300").await;
    assert_eq!(
        m,
        "too many connections for role \"meter\" (CONNECTION LIMIT 2)"
    );
    // Someone else is not held to it, and neither is an admin.
    boss.batch_execute("CREATE USER other PASSWORD 'opw'")
        .await
        .unwrap();
    connect_as(&server, "other", "opw").await.unwrap();
    // Only an admin changes role attributes.
    for sql in [
        "ALTER USER meter CONNECTION LIMIT 10",
        "ALTER USER meter VALID UNTIL 'infinity'",
        "ALTER USER meter LOGIN",
        "ALTER ROLE meter SET statement_timeout = '1s'",
        "ALTER USER meter CREATEROLE",
    ] {
        let e = a.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
    }
    let e = boss
        .batch_execute("ALTER USER meter CREATEROLE")
        .await
        .expect_err("CREATEROLE");
    assert_eq!(sqlstate(&e), "0A000", "{e:?}");
    let e = boss
        .batch_execute("ALTER USER meter VALID UNTIL 'someday'")
        .await
        .expect_err("a bad timestamp");
    assert_eq!(sqlstate(&e), "22007", "{e:?}");
    // The catalog shows the attributes.
    let row = boss
        .query_one(
            "SELECT rolconnlimit::bigint, rolcanlogin FROM pg_roles WHERE rolname = 'meter'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, bool>(1)), (2, true));

    // Across a restart: the limit still holds.
    drop(a);
    drop(_b);
    server.stop();
    server.spawn();
    let boss = admin(&server).await;
    let _a = connect_as(&server, "meter", "mpw").await.unwrap();
    let _b = connect_as(&server, "meter", "mpw").await.unwrap();
    refused(&server, "meter", "mpw", "53300").await;
    boss.batch_execute("ALTER USER meter CONNECTION LIMIT -1")
        .await
        .unwrap();
    let _c = connect_as(&server, "meter", "mpw").await.unwrap();

    // NOLOGIN, then LOGIN again.
    boss.batch_execute("ALTER USER meter NOLOGIN")
        .await
        .unwrap();
    let m = refused(&server, "meter", "mpw", "28000").await;
    assert_eq!(m, "role \"meter\" is not permitted to log in");
    boss.batch_execute("ALTER USER meter LOGIN").await.unwrap();
    connect_as(&server, "meter", "mpw").await.unwrap();

    // An expired password fails like a wrong one; 'infinity' lifts the expiry.
    boss.batch_execute("ALTER USER meter VALID UNTIL '2001-02-03 04:05:06+00'")
        .await
        .unwrap();
    let m = refused(&server, "meter", "mpw", "28P01").await;
    assert_eq!(m, "password authentication failed for user \"meter\"");
    let until: String = boss
        .query_one(
            "SELECT CAST(rolvaliduntil AS TEXT) FROM pg_roles WHERE rolname = 'meter'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(until.starts_with("2001-02-03"), "{until}");
    boss.batch_execute("ALTER USER meter VALID UNTIL 'infinity'")
        .await
        .unwrap();
    connect_as(&server, "meter", "mpw").await.unwrap();
    boss.batch_execute("ALTER USER meter VALID UNTIL '2999-01-01'")
        .await
        .unwrap();
    connect_as(&server, "meter", "mpw").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_default_statement_timeout_applies_to_each_of_its_sessions() {
    let server = server(&[]);
    let boss = admin(&server).await;
    boss.batch_execute("CREATE USER grafana PASSWORD 'gpw'")
        .await
        .unwrap();
    let before = connect_as(&server, "grafana", "gpw").await.unwrap();
    boss.batch_execute("ALTER ROLE grafana SET statement_timeout = '1s'")
        .await
        .unwrap();
    let e = boss
        .batch_execute("ALTER ROLE grafana SET no_such_parameter = 1")
        .await
        .expect_err("an unknown parameter");
    assert_eq!(sqlstate(&e), "42704", "{e:?}");
    let e = boss
        .batch_execute("ALTER ROLE grafana SET statement_timeout = 'soon'")
        .await
        .expect_err("a bad value");
    assert_eq!(sqlstate(&e), "22023", "{e:?}");
    // A session open before keeps what it had; a new one starts with the default.
    assert_eq!(
        first_column_text(&before, "SHOW statement_timeout").await,
        vec!["0"]
    );
    let g = connect_as(&server, "grafana", "gpw").await.unwrap();
    assert_eq!(
        first_column_text(&g, "SHOW statement_timeout").await,
        vec!["1s"]
    );
    let e = g.simple_query(RUNAWAY).await.expect_err("the runaway");
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    assert_eq!(
        db_message(&e),
        "canceling statement due to statement timeout"
    );
    // SET overrides it for the session, RESET returns to the role's default.
    g.batch_execute("SET statement_timeout = 0").await.unwrap();
    assert_eq!(
        first_column_text(&g, "SHOW statement_timeout").await,
        vec!["0"]
    );
    g.batch_execute("RESET statement_timeout").await.unwrap();
    assert_eq!(
        first_column_text(&g, "SHOW statement_timeout").await,
        vec!["1s"]
    );
    let config: String = boss
        .query_one(
            "SELECT array_to_string(rolconfig, ',') FROM pg_roles WHERE rolname = 'grafana'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(config, "statement_timeout=1s");
    // Other users are not affected; RESET ALL removes the defaults.
    assert_eq!(
        first_column_text(&boss, "SHOW statement_timeout").await,
        vec!["0"]
    );
    boss.batch_execute("ALTER ROLE grafana RESET ALL")
        .await
        .unwrap();
    let g = connect_as(&server, "grafana", "gpw").await.unwrap();
    assert_eq!(
        first_column_text(&g, "SHOW statement_timeout").await,
        vec!["0"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_beyond_the_slots_wait_their_turn_and_can_be_stopped_while_waiting() {
    let server = server(&[
        "--max-active-statements",
        "1",
        "--statement-queue-timeout",
        "3s",
    ]);
    let boss = admin(&server).await;
    boss.batch_execute("CREATE USER reader PASSWORD 'pw'")
        .await
        .unwrap();
    // One runaway holds the only slot.
    let holder = admin(&server).await;
    let holder_cancel = holder.cancel_token();
    let runaway = tokio::spawn(async move { holder.simple_query(RUNAWAY).await });
    eventually("the runaway holds the slot", async || {
        metric(&server, "wattdb_statements_active") == 1.0
    })
    .await;

    // A statement that reads data waits, shown as waiting; the queue timeout ends it.
    let waiter = admin(&server).await;
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let r = waiter
            .simple_query("SELECT count(*) FROM generate_series(1, 10)")
            .await;
        (r, started.elapsed())
    });
    eventually("the statement is queued", async || {
        metric(&server, "wattdb_statements_queued") == 1.0
    })
    .await;
    let rows = boss
        .query(
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity \
             WHERE query LIKE '%generate_series(1, 10)%' AND query NOT LIKE '%pg_stat_activity%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        ("active".into(), "Admission".into(), "StatementQueue".into())
    );
    // Meanwhile statements that read no table answer at once, also on a new connection.
    let fresh = connect_as(&server, "reader", "pw").await.unwrap();
    assert_eq!(first_column_text(&fresh, "SELECT 41 + 1").await, vec!["42"]);
    assert_eq!(
        first_column_text(&fresh, "SELECT count(*) > 0 FROM pg_catalog.pg_type").await,
        vec!["t"]
    );
    // A reader sees its own query and not the others'.
    let texts = first_column_text(
        &fresh,
        "SELECT query FROM pg_stat_activity WHERE usename = 'wattdb'",
    )
    .await;
    assert!(
        texts.iter().all(|t| t == "<insufficient privilege>"),
        "{texts:?}"
    );
    let own = first_column_text(
        &fresh,
        "SELECT query FROM pg_stat_activity WHERE usename = 'reader'",
    )
    .await;
    assert_eq!(own.len(), 1);
    assert!(own[0].contains("pg_stat_activity"), "{own:?}");

    let (r, waited) = waiting.await.unwrap();
    let e = r.expect_err("the queue timeout");
    assert_eq!(sqlstate(&e), "53000", "{e:?}");
    assert!(
        db_message(&e).contains("statement_queue_timeout"),
        "{}",
        db_message(&e)
    );
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert_eq!(
        metric(&server, "wattdb_statement_queue_timeouts_total"),
        1.0
    );

    // Its own statement_timeout stops a waiting statement, and so does a cancel.
    let c = admin(&server).await;
    c.batch_execute("SET statement_timeout = '500ms'")
        .await
        .unwrap();
    let e = c
        .simple_query("SELECT count(*) FROM generate_series(1, 10)")
        .await
        .expect_err("the timeout");
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    assert_eq!(
        db_message(&e),
        "canceling statement due to statement timeout"
    );
    c.batch_execute("SET statement_timeout = 0").await.unwrap();
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await
    });
    let e = c
        .simple_query("SELECT count(*) FROM generate_series(1, 10)")
        .await
        .expect_err("the cancel");
    canceller.await.unwrap().unwrap();
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    assert_eq!(db_message(&e), "canceling statement due to user request");
    assert_eq!(metric(&server, "wattdb_statements_queued"), 0.0);

    // Three statements queued one after another run in that order once the slot is
    // free.
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut queued = Vec::new();
    for i in 0..3 {
        let c = admin(&server).await;
        let order = order.clone();
        queued.push(tokio::spawn(async move {
            let rows = first_column_text(
                &c,
                &format!("SELECT count(*) + {i} FROM generate_series(1, 1000)"),
            )
            .await;
            order.lock().unwrap().push(i);
            rows
        }));
        eventually("the next one is queued", async || {
            metric(&server, "wattdb_statements_queued") == f64::from(i + 1)
        })
        .await;
    }
    holder_cancel.cancel_query(NoTls).await.unwrap();
    let e = runaway.await.unwrap().expect_err("the cancelled runaway");
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    for (i, q) in queued.into_iter().enumerate() {
        assert_eq!(q.await.unwrap(), vec![(1000 + i).to_string()]);
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    assert!(metric(&server, "wattdb_statement_queue_wait_seconds_total") > 3.0);
}

/// A portal suspended at its row limit — a client reading a large result in pieces, as
/// pgjdbc's `setFetchSize` does — holds no execution slot while the client is away: its
/// plan gives the slot back once the rows it has made wait for the client, the next
/// statement runs meanwhile, and the portal's plan takes a slot again (in turn) when
/// the client asks for more, to the last row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_portal_keeps_no_slot() {
    const ROWS: i64 = 100_000;
    let server = server(&[
        "--max-active-statements",
        "1",
        "--statement-queue-timeout",
        "5s",
    ]);
    let mut reader = admin(&server).await;
    let other = admin(&server).await;
    let tx = reader.transaction().await.unwrap();
    let portal = tx
        .bind(
            format!("SELECT value FROM generate_series(1, {ROWS}) WHERE value > $1 ORDER BY value")
                .as_str(),
            &[&0i64],
        )
        .await
        .unwrap();
    let first = tx.query_portal(&portal, 10).await.unwrap();
    let mut values: Vec<i64> = first.iter().map(|r| r.get(0)).collect();
    assert_eq!(values, (1..=10).collect::<Vec<_>>());
    // Suspended: the plan has given its slot back.
    eventually("the suspended portal's slot is free", async || {
        metric(&server, "wattdb_statements_active") == 0.0
    })
    .await;
    // Another statement reading data runs (it would wait the 5 s queue timeout and get
    // 53000 if the portal kept the slot), and so do several more, one after another.
    for i in 0..3 {
        assert_eq!(
            first_column_text(
                &other,
                &format!("SELECT count(*) + {i} FROM generate_series(1, 1000)")
            )
            .await,
            vec![(1000 + i).to_string()]
        );
    }
    assert_eq!(
        metric(&server, "wattdb_statement_queue_timeouts_total"),
        0.0
    );
    // The portal goes on to its last row, taking a slot again to run on.
    let readmitted = metric(&server, "wattdb_statements_readmitted_total");
    let rest = tx.query_portal(&portal, 0).await.unwrap();
    values.extend(rest.iter().map(|r| r.get::<_, i64>(0)));
    assert_eq!(values, (1..=ROWS).collect::<Vec<_>>());
    assert!(metric(&server, "wattdb_statements_readmitted_total") > readmitted);
    tx.commit().await.unwrap();
    assert_eq!(metric(&server, "wattdb_statements_active"), 0.0);
}

/// A client that goes away while its statement runs: the statement stops (its slot is
/// free for the next one) long before the runaway would have finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_whose_client_went_away_stops() {
    let server = server(&["--max-active-statements", "1"]);
    let boss = admin(&server).await;
    // psql runs the runaway and is killed: its socket closes under the statement.
    let mut psql = std::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=wattdb dbname=wattdb",
            server.pg_port
        ))
        .args(["-c", RUNAWAY])
        .env("PGPASSWORD", ADMIN_PW)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    eventually("the runaway holds the slot", async || {
        metric(&server, "wattdb_statements_active") == 1.0
    })
    .await;
    psql.kill().expect("kill psql");
    psql.wait().expect("psql ended");
    eventually("the slot is free again", async || {
        metric(&server, "wattdb_statements_active") == 0.0
    })
    .await;
    assert_eq!(
        first_column_text(&boss, "SELECT count(*) FROM generate_series(1, 10)").await,
        vec!["10"]
    );
    eventually("the session is gone", async || {
        metric(&server, "wattdb_sql_sessions") == 1.0
    })
    .await;
}
