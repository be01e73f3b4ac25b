//! No single statement may stall the server: statements past the limits are refused with
//! `54001` before they are planned, whatever their shape, over the simple and the extended
//! protocol, while another client keeps getting answers; statements just under them
//! answer. Against the real binary with tokio-postgres.
//!
//! The timeouts here are hang detectors (a refusal that never comes), not speed targets;
//! the times are measured in BENCHMARKS.md.

mod common;

use std::time::Duration;

use common::{Server, db_message, first_column_text, sqlstate};

/// Fails the test instead of hanging when `f` does not finish.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 60 s"))
}

fn chain(first: &str, op: &str, item: &str, n: usize) -> String {
    let mut s = String::with_capacity(n * (op.len() + item.len()) + 16);
    s.push_str("SELECT ");
    s.push_str(first);
    for _ in 0..n {
        s.push_str(op);
        s.push_str(item);
    }
    s
}

/// The statements a reader could stall the server with, each refused with 54001.
fn too_complex() -> Vec<(&'static str, String)> {
    let ors: Vec<String> = (0..50_000).map(|i| format!("x = {i}")).collect();
    let ands: Vec<String> = (0..50_000).map(|i| format!("x <> {i}")).collect();
    let mut nested = "SELECT ".to_string();
    nested.push_str(&"(".repeat(10_000));
    nested.push('1');
    nested.push_str(&")".repeat(10_000));
    let mut functions = "SELECT ".to_string();
    functions.push_str(&"abs(".repeat(5_000));
    functions.push('1');
    functions.push_str(&")".repeat(5_000));
    let mut cases = "SELECT ".to_string();
    for _ in 0..3_000 {
        cases.push_str("CASE WHEN random() < 0.5 THEN 1 ELSE ");
    }
    cases.push('0');
    cases.push_str(&" END".repeat(3_000));
    let mut right_deep = "SELECT ".to_string();
    for _ in 0..5_000 {
        right_deep.push_str("1 + (");
    }
    right_deep.push('1');
    right_deep.push_str(&")".repeat(5_000));
    vec![
        ("left-deep +", chain("1", "+", "1", 50_000)),
        ("left-deep +, 500k", chain("1", "+", "1", 500_000)),
        ("cast chain", chain("1", "::bigint", "", 20_000)),
        (
            "long OR list",
            format!(
                "SELECT count(*) FROM generate_series(1, 3) t(x) WHERE {}",
                ors.join(" OR ")
            ),
        ),
        (
            "long AND list",
            format!(
                "SELECT count(*) FROM generate_series(1, 3) t(x) WHERE {}",
                ands.join(" AND ")
            ),
        ),
        ("nested parentheses", nested),
        ("nested functions", functions),
        ("nested CASE", cases),
        ("right-deep +", right_deep),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_past_the_limits_are_refused_before_planning() {
    let server = Server::new().start();
    let c = server.client().await;
    let other = server.client().await;
    for (shape, sql) in too_complex() {
        // Simple protocol.
        let e = within(shape, c.simple_query(&sql)).await.expect_err(shape);
        assert_eq!(sqlstate(&e), "54001", "{shape}: {}", db_message(&e));
        // Extended protocol (Parse refuses it).
        let e = within(shape, c.query(sql.as_str(), &[]))
            .await
            .expect_err(shape);
        assert_eq!(
            sqlstate(&e),
            "54001",
            "{shape} (extended): {}",
            db_message(&e)
        );
        // The connection stays usable and the server answers another client.
        assert_eq!(
            first_column_text(&c, "SELECT 1").await,
            vec!["1"],
            "{shape}"
        );
        assert_eq!(
            first_column_text(&other, "SELECT 2").await,
            vec!["2"],
            "{shape}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_under_the_limits_answer() {
    let server = Server::new().start();
    let c = server.client().await;
    // 1 + 1 + … with 450 operators (depth 452 with the SELECT, under 500).
    let sum = within("450 additions", c.simple_query(&chain("1", "+", "1", 450)))
        .await
        .unwrap();
    let value = sum.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("451"));
    // A SELECT list of PostgreSQL's 1,664 entries answers; one more is 54011.
    let items = |n: usize| {
        let v: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        format!("SELECT {}", v.join(", "))
    };
    let rows = within("1664 items", c.query(items(1664).as_str(), &[]))
        .await
        .unwrap();
    assert_eq!(rows[0].len(), 1664);
    let e = within("1665 items", c.simple_query(&items(1665)))
        .await
        .expect_err("1665 items");
    assert_eq!(sqlstate(&e), "54011", "{}", db_message(&e));
    // A call of PostgreSQL's 100 arguments answers (one of them a bound parameter, as a
    // driver sends it); one more is 54023 over either protocol; COALESCE takes any number.
    let digits = |n: usize| (0..n).map(|i| (i % 10).to_string()).collect::<Vec<_>>();
    let concat = |args: Vec<String>| format!("SELECT concat({}) AS s", args.join(", "));
    let mut hundred = digits(99);
    hundred.push("$1::text".into());
    let row = within(
        "100 arguments",
        c.query_one(concat(hundred).as_str(), &[&"z"]),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, String>(0), format!("{}z", digits(99).concat()));
    let e = within("101 arguments", c.simple_query(&concat(digits(101))))
        .await
        .expect_err("101 arguments");
    assert_eq!(sqlstate(&e), "54023", "{}", db_message(&e));
    assert_eq!(
        db_message(&e),
        "cannot pass more than 100 arguments to a function (concat)"
    );
    let mut extended = digits(100);
    extended.push("$1::text".into());
    let e = within(
        "101 arguments (extended)",
        c.query(concat(extended).as_str(), &[&"z"]),
    )
    .await
    .expect_err("101 arguments (extended)");
    assert_eq!(sqlstate(&e), "54023", "{}", db_message(&e));
    let mut nulls = vec!["NULL".to_string(); 500];
    nulls.push("7".into());
    assert_eq!(
        first_column_text(&c, &format!("SELECT coalesce({})", nulls.join(", "))).await,
        vec!["7"]
    );
    // A 100,000-item IN list: the rows of 1..200000 that are even and ≤ 200000.
    let list: Vec<String> = (1..=100_000).map(|i| (2 * i).to_string()).collect();
    let sql = format!(
        "SELECT count(*) FROM generate_series(1, 150000) t(x) WHERE x IN ({})",
        list.join(",")
    );
    assert_eq!(
        within("IN list", first_column_text(&c, &sql)).await,
        vec!["75000"]
    );
    // A 20 MB literal, simple and extended protocol.
    let big = "x".repeat(20_000_000);
    let sql = format!("SELECT length('{big}')");
    assert_eq!(
        within("20 MB literal", first_column_text(&c, &sql)).await,
        vec!["20000000"]
    );
    let row = within("20 MB literal (extended)", c.query_one(sql.as_str(), &[]))
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 20_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_settings() {
    let mut server = Server::new();
    server.extra_args = vec![
        "--max-expression-depth".into(),
        "50".into(),
        "--max-statement-nodes".into(),
        "200".into(),
        "--max-statement-bytes".into(),
        "10KB".into(),
    ];
    let server = server.start();
    let c = server.client().await;
    // Depth: 40 additions pass, 60 do not.
    assert_eq!(
        first_column_text(&c, &chain("1", "+", "1", 40)).await,
        vec!["41"]
    );
    let e = c
        .simple_query(&chain("1", "+", "1", 60))
        .await
        .expect_err("depth 62 > 50");
    assert_eq!(sqlstate(&e), "54001", "{e}");
    assert!(db_message(&e).contains("max_expression_depth"), "{e}");
    // Nodes: 150 select items pass, 250 do not.
    let items = |n: usize| {
        let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        format!("SELECT {}", items.join(","))
    };
    assert_eq!(c.simple_query(&items(150)).await.unwrap().len(), 3);
    let e = c.simple_query(&items(250)).await.expect_err("250 > 200");
    assert_eq!(sqlstate(&e), "54001", "{e}");
    assert!(db_message(&e).contains("max_statement_nodes"), "{e}");
    // Size.
    let e = c
        .simple_query(&format!("SELECT '{}'", "x".repeat(10_001)))
        .await
        .expect_err("longer than 10 KB");
    assert_eq!(sqlstate(&e), "54001", "{e}");
    assert!(db_message(&e).contains("max_statement_bytes"), "{e}");
}

/// The log is plain text when it is not a terminal (no ANSI colour escapes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_has_no_colour_escapes() {
    let server = Server::new().start();
    let c = server.client().await;
    let _ = c.simple_query("SELECT 1").await.unwrap();
    let log = server.log();
    assert!(log.contains("wattdb is serving"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape in the log: {log:?}");
}

/// A CPU-bound statement that runs for minutes if nothing stops it: a nested-loop join
/// of 200,000 × 200,000 rows with a condition almost no pair meets.
const RUNAWAY_JOIN: &str = "SELECT count(*) FROM generate_series(1, 200000) a \
     CROSS JOIN generate_series(1, 200000) b WHERE (a.value * 7 + b.value) % 1000003 = 5";

/// Other CPU-bound shapes: an aggregation, a sort and a window function over a large
/// cross join.
const RUNAWAYS: &[(&str, &str)] = &[
    ("join", RUNAWAY_JOIN),
    (
        "aggregation",
        "SELECT count(DISTINCT a.value * 100003 + b.value) FROM generate_series(1, 100000) a \
         CROSS JOIN generate_series(1, 100000) b",
    ),
    (
        "sort",
        "SELECT a.value, b.value FROM generate_series(1, 30000) a \
         CROSS JOIN generate_series(1, 30000) b ORDER BY (a.value * 31 + b.value) % 977 LIMIT 1",
    ),
    (
        "window",
        "SELECT max(r) FROM (SELECT row_number() OVER (PARTITION BY a.value % 7 \
         ORDER BY b.value) AS r FROM generate_series(1, 30000) a \
         CROSS JOIN generate_series(1, 30000) b) w",
    ),
];

/// How long a stopped statement may take to answer before the test calls it not
/// stopped: far below what any of [`RUNAWAYS`] needs to finish in a debug build.
const STOPPED_WITHIN: Duration = Duration::from_secs(30);

async fn expect_stopped(
    what: &str,
    run: impl std::future::Future<
        Output = Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>,
    >,
    message: &str,
) {
    let e = tokio::time::timeout(STOPPED_WITHIN, run)
        .await
        .unwrap_or_else(|_| panic!("{what}: not stopped within {STOPPED_WITHIN:?}"))
        .expect_err(what);
    assert_eq!(sqlstate(&e), "57014", "{what}: {e}");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.message(), message, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_and_cancel_stop_cpu_bound_statements() {
    let server = Server::new().start();
    let c = server.client().await;
    let other = server.client().await;
    c.simple_query("SET statement_timeout = '1500ms'")
        .await
        .unwrap();
    for (shape, sql) in RUNAWAYS {
        expect_stopped(
            shape,
            c.simple_query(sql),
            "canceling statement due to statement timeout",
        )
        .await;
        // Extended protocol: the timeout covers execution after Bind.
        let e = tokio::time::timeout(STOPPED_WITHIN, c.query(*sql, &[]))
            .await
            .unwrap_or_else(|_| panic!("{shape} (extended): not stopped"))
            .expect_err(shape);
        assert_eq!(sqlstate(&e), "57014", "{shape} (extended): {e}");
        // The connection stays usable.
        assert_eq!(
            first_column_text(&c, "SELECT 1").await,
            vec!["1"],
            "{shape}"
        );
    }
    // A cancel request, with no timeout set.
    c.simple_query("SET statement_timeout = 0").await.unwrap();
    for (shape, sql) in RUNAWAYS {
        let token = c.cancel_token();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            token.cancel_query(tokio_postgres::NoTls).await
        });
        expect_stopped(
            shape,
            c.simple_query(sql),
            "canceling statement due to user request",
        )
        .await;
        canceller.await.unwrap().unwrap();
        assert_eq!(
            first_column_text(&c, "SELECT 1").await,
            vec!["1"],
            "{shape}"
        );
        assert_eq!(first_column_text(&other, "SELECT 2").await, vec!["2"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_default_statement_timeout_applies_to_every_session() {
    let mut server = Server::new();
    server.extra_args = vec!["--statement-timeout".into(), "1s".into()];
    let server = server.start();
    let c = server.client().await;
    assert_eq!(
        first_column_text(&c, "SHOW statement_timeout").await,
        vec!["1000"]
    );
    expect_stopped(
        "join",
        c.simple_query(RUNAWAY_JOIN),
        "canceling statement due to statement timeout",
    )
    .await;
    // A session can lift it.
    c.simple_query("SET statement_timeout = 0").await.unwrap();
    assert_eq!(
        first_column_text(&c, "SELECT count(*) FROM generate_series(1, 1000)").await,
        vec!["1000"]
    );
}

/// While runaway statements keep every core busy, a new client connects and gets
/// answers, and MQTT devices keep getting their PUBACKs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_ingest_are_served_while_runaway_statements_run() {
    let server = Server::new().start();
    let mut runaways = Vec::new();
    for _ in 0..4 {
        let c = server.client().await;
        c.simple_query("SET statement_timeout = '40s'")
            .await
            .unwrap();
        runaways.push(tokio::spawn(async move {
            let r = c.simple_query(RUNAWAY_JOIN).await;
            (c, r)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = std::time::Instant::now();
    for i in 0..5 {
        let fresh = within("a new connection", server.client()).await;
        assert_eq!(
            within(
                "SELECT 1",
                first_column_text(&fresh, &format!("SELECT {i}"))
            )
            .await,
            vec![i.to_string()]
        );
    }
    let msgs: Vec<(String, String, ())> = (0..200)
        .map(|i| {
            let r = common::mqtt::reading(1, i);
            ("wattdb/electric".to_string(), common::mqtt::payload(&r), ())
        })
        .collect();
    let acked = within(
        "PUBACKs",
        common::mqtt::publish_qos1(
            "127.0.0.1",
            server.mqtt_port,
            "busy-queries",
            msgs,
            1,
            Duration::ZERO,
            |_| {},
        ),
    )
    .await;
    assert_eq!(acked, 200);
    eprintln!("connections and PUBACKs took {:?}", started.elapsed());
    // The runaways are still running (none finished on its own) and are cancelled.
    for r in runaways {
        if r.is_finished() {
            let (_, result) = r.await.unwrap();
            panic!("a runaway ended early: {result:?}");
        }
        r.abort();
    }
}

/// `COPY (…) TO STDOUT` and `FETCH` from a cursor run under the statement's deadline
/// and cancel token like any query: a runaway behind either is stopped with `57014`, a
/// stopped cursor is closed (its query stopped too), and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_and_cursor_fetches_are_stopped_too() {
    use futures::TryStreamExt;
    let server = Server::new().start();
    let c = server.client().await;
    c.simple_query("SET statement_timeout = '1500ms'")
        .await
        .unwrap();
    let copy = async {
        let out = c
            .copy_out(format!("COPY ({RUNAWAY_JOIN}) TO STDOUT").as_str())
            .await?;
        out.try_collect::<Vec<_>>().await
    };
    let e = tokio::time::timeout(STOPPED_WITHIN, copy)
        .await
        .expect("COPY TO: not stopped")
        .expect_err("COPY TO of a runaway");
    assert_eq!(sqlstate(&e), "57014", "COPY TO: {e}");
    assert_eq!(first_column_text(&c, "SELECT 1").await, vec!["1"]);
    // DECLARE plans and starts the query; the FETCH waits for its rows.
    c.simple_query(&format!("DECLARE runaway CURSOR FOR {RUNAWAY_JOIN}"))
        .await
        .unwrap();
    expect_stopped(
        "FETCH (timeout)",
        c.simple_query("FETCH 1 FROM runaway"),
        "canceling statement due to statement timeout",
    )
    .await;
    let gone = c
        .simple_query("FETCH 1 FROM runaway")
        .await
        .expect_err("the stopped cursor is closed");
    assert_eq!(sqlstate(&gone), "34000", "{gone}");
    // A cancel request stops a FETCH the same way.
    c.simple_query("SET statement_timeout = 0").await.unwrap();
    c.simple_query(&format!("DECLARE runaway CURSOR FOR {RUNAWAY_JOIN}"))
        .await
        .unwrap();
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    expect_stopped(
        "FETCH (cancel)",
        c.simple_query("FETCH 1 FROM runaway"),
        "canceling statement due to user request",
    )
    .await;
    canceller.await.unwrap().unwrap();
    assert_eq!(first_column_text(&c, "SELECT 1").await, vec!["1"]);
}

/// A timeout or a cancel during planning stops the planning itself — at the next of
/// the checks between the planner's rules (`wattdb_plannings_stopped_total` counts
/// them) — not only the client's wait for it.
///
/// The statement is a chain of 480 additions: a 2 KB statement, parsed and converted to
/// its first plan at once, whose analysis and optimisation (the expression naming, quadratic
/// in the depth) take seconds on a debug build — so the deadline and the cancel, set to a
/// quarter of the time it takes uninterrupted, fall inside the checked passes however
/// fast or busy the machine is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_and_a_cancel_stop_planning() {
    const TERMS: usize = 480;
    let server = Server::new().start();
    let c = server.client().await;
    let sql = format!("SELECT {}", vec!["1"; TERMS].join(" + "));
    let started = std::time::Instant::now();
    let rows = c.simple_query(&sql).await.unwrap();
    let uninterrupted = started.elapsed();
    let answer = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(answer, Some(TERMS.to_string()));
    let quarter = (uninterrupted / 4).max(Duration::from_millis(1));
    eprintln!("uninterrupted: {uninterrupted:?}; stopping after {quarter:?}");
    let stopped = || common::metric(&server, "wattdb_plannings_stopped_total");
    assert_eq!(stopped(), 0.0);
    // The client has its answer at once; the planning task stops at its next check.
    let stopped_reaches = |n: f64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while stopped() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the planning was not stopped ({} stopped)",
                stopped()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(stopped(), n);
    };
    c.simple_query(&format!(
        "SET statement_timeout = '{}ms'",
        quarter.as_millis().max(1)
    ))
    .await
    .unwrap();
    expect_stopped(
        "planning (timeout)",
        c.simple_query(&sql),
        "canceling statement due to statement timeout",
    )
    .await;
    stopped_reaches(1.0).await;
    c.simple_query("SET statement_timeout = 0").await.unwrap();
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(quarter).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    expect_stopped(
        "planning (cancel)",
        c.simple_query(&sql),
        "canceling statement due to user request",
    )
    .await;
    canceller.await.unwrap().unwrap();
    stopped_reaches(2.0).await;
}
