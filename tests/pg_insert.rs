//! Prepared and literal `INSERT … VALUES` over the wire: the rows read back are exactly
//! the ones the test bound (a model of the table kept by the test, last write wins per
//! key), whatever the column order, omitted columns, literals mixed with parameters or
//! parameter types the client names; a bad value fails the whole statement with
//! PostgreSQL's SQLSTATE and keeps none of its rows.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Server, db_message, sqlstate};
use tokio_postgres::types::{ToSql, Type};

/// 2026-03-01 00:00:00 UTC.
const T0: u64 = 1_772_323_200;

#[derive(Debug, Clone, PartialEq)]
struct Values {
    ua: Option<f64>,
    n: Option<i64>,
    ok: Option<bool>,
    note: Option<String>,
}

type Model = BTreeMap<(String, u64), Values>;

fn at(second: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + second)
}

async fn server_with_table() -> (Server, tokio_postgres::Client) {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE t (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, ua DOUBLE PRECISION, \
         n BIGINT, ok BOOLEAN, note TEXT, PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    (server, c)
}

/// Every row of `t`, keyed as the model is.
async fn table(c: &tokio_postgres::Client) -> Model {
    c.query("SELECT pid, ts, ua, n, ok, note FROM t", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let ts: SystemTime = r.get(1);
            let second = ts.duration_since(at(0)).unwrap().as_secs();
            (
                (r.get::<_, String>(0), second),
                Values {
                    ua: r.get(2),
                    n: r.get(3),
                    ok: r.get(4),
                    note: r.get(5),
                },
            )
        })
        .collect()
}

/// A deterministic reading: NULLs here and there, keys repeating so that later
/// executions overwrite earlier rows.
fn reading(i: u64) -> ((String, u64), Values) {
    let key = (format!("m{}", i % 7), (i * 13) % 40);
    let values = Values {
        ua: (!i.is_multiple_of(5)).then_some(220.0 + i as f64 * 0.25),
        n: (!i.is_multiple_of(3)).then(|| i as i64 * 1_000_003 - 5),
        ok: (i % 4 != 1).then_some(i.is_multiple_of(2)),
        note: (i % 6 != 2).then(|| format!("note {i} ✓")),
    };
    (key, values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_multi_row_inserts_write_exactly_what_was_bound() {
    let (_server, c) = server_with_table().await;
    const ROWS: usize = 3;
    let placeholders: Vec<String> = (0..ROWS)
        .map(|r| {
            let p: Vec<String> = (1..=6).map(|k| format!("${}", r * 6 + k)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let stmt = c
        .prepare(&format!("INSERT INTO t VALUES {}", placeholders.join(", ")))
        .await
        .unwrap();
    let row_types = [
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::FLOAT8,
        Type::INT8,
        Type::BOOL,
        Type::TEXT,
    ];
    let want: Vec<Type> = row_types.iter().cycle().take(6 * ROWS).cloned().collect();
    assert_eq!(stmt.params(), want);
    let mut model = Model::new();
    for execution in 0..40u64 {
        let rows: Vec<_> = (0..ROWS as u64)
            .map(|r| reading(execution * ROWS as u64 + r))
            .collect();
        // Within one statement a later row with the same key wins too.
        let owned: Vec<(SystemTime, String, Values)> = rows
            .iter()
            .map(|((pid, s), v)| (at(*s), pid.clone(), v.clone()))
            .collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        for (ts, pid, v) in &owned {
            params.extend([ts as &(dyn ToSql + Sync), pid, &v.ua, &v.n, &v.ok, &v.note]);
        }
        assert_eq!(c.execute(&stmt, &params).await.unwrap(), ROWS as u64);
        model.extend(rows);
    }
    assert_eq!(table(&c).await, model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_lists_literals_and_client_named_types() {
    let (_server, c) = server_with_table().await;
    let mut model = Model::new();

    // Columns in another order, some omitted (NULL).
    c.execute(
        "INSERT INTO t (note, pid, ts) VALUES ($1, $2, $3)",
        &[&"only a note", &"a", &at(1)],
    )
    .await
    .unwrap();
    model.insert(
        ("a".into(), 1),
        Values {
            ua: None,
            n: None,
            ok: None,
            note: Some("only a note".into()),
        },
    );

    // Literals beside parameters: an integer literal into a float column, a float
    // literal into an integer column (truncated, as DataFusion casts; PostgreSQL would
    // round — README lists it among the differences), a negative number.
    c.execute(
        "INSERT INTO t (ts, pid, ua, n, ok) VALUES ($1, 'lit', 42, -7, true), ($2, $3, -0.5, 2.6, NULL)",
        &[&at(2), &at(3), &"b"],
    )
    .await
    .unwrap();
    model.insert(
        ("lit".into(), 2),
        Values {
            ua: Some(42.0),
            n: Some(-7),
            ok: Some(true),
            note: None,
        },
    );
    model.insert(
        ("b".into(), 3),
        Values {
            ua: Some(-0.5),
            n: Some(2),
            ok: None,
            note: None,
        },
    );

    // Types the client names in Parse win: an int8 into the float column, text into
    // the timestamp and integer columns.
    let stmt = c
        .prepare_typed(
            "INSERT INTO t (ts, pid, ua, n) VALUES ($1, $2, $3, $4)",
            &[Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT],
        )
        .await
        .unwrap();
    c.execute(&stmt, &[&"2026-03-01 01:00:04+01", &"c", &5i64, &"123"])
        .await
        .unwrap();
    model.insert(
        ("c".into(), 4),
        Values {
            ua: Some(5.0),
            n: Some(123),
            ok: None,
            note: None,
        },
    );

    // Over the simple protocol, literals only, several rows.
    c.batch_execute(
        "INSERT INTO t VALUES ('2026-03-01T00:00:05Z', 'd', 1.5, 10, false, 'it''s'), \
         ('2026-03-01T00:00:06Z', 'd', NULL, NULL, NULL, NULL)",
    )
    .await
    .unwrap();
    model.insert(
        ("d".into(), 5),
        Values {
            ua: Some(1.5),
            n: Some(10),
            ok: Some(false),
            note: Some("it's".into()),
        },
    );
    model.insert(
        ("d".into(), 6),
        Values {
            ua: None,
            n: None,
            ok: None,
            note: None,
        },
    );

    // An expression is planned the ordinary way and gives the same kind of row.
    c.execute(
        "INSERT INTO t (ts, pid, ua) VALUES ($1, $2, $3::double precision * 2)",
        &[&at(7), &"e", &1.25f64],
    )
    .await
    .unwrap();
    model.insert(
        ("e".into(), 7),
        Values {
            ua: Some(2.5),
            n: None,
            ok: None,
            note: None,
        },
    );

    assert_eq!(table(&c).await, model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_fails_the_whole_statement() {
    let (_server, c) = server_with_table().await;
    c.execute(
        "INSERT INTO t (ts, pid, ua) VALUES ($1, $2, $3)",
        &[&at(0), &"kept", &1.0f64],
    )
    .await
    .unwrap();
    let before = table(&c).await;

    // A NULL tag in the second row: nothing of the statement is written.
    let null_pid: Option<&str> = None;
    let e = c
        .execute(
            "INSERT INTO t (ts, pid, ua) VALUES ($1, $2, $3), ($4, $5, $6)",
            &[&at(1), &"x", &2.0f64, &at(2), &null_pid, &3.0f64],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23502", "{e}");
    assert!(db_message(&e).contains("pid"), "{e}");

    // Text that is no number, for a parameter the client typed as text.
    let stmt = c
        .prepare_typed(
            "INSERT INTO t (ts, pid, n) VALUES ($1, $2, $3), ($4, $5, $6)",
            &[
                Type::TIMESTAMPTZ,
                Type::TEXT,
                Type::TEXT,
                Type::TIMESTAMPTZ,
                Type::TEXT,
                Type::TEXT,
            ],
        )
        .await
        .unwrap();
    let e = c
        .execute(&stmt, &[&at(3), &"y", &"12", &at(4), &"y", &"twelve"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22P02", "{e}");
    assert!(db_message(&e).contains("\"n\""), "{e}");

    // A NULL timestamp literal.
    let e = c
        .batch_execute("INSERT INTO t (ts, pid) VALUES (NULL, 'z')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23502", "{e}");

    assert_eq!(table(&c).await, before);
}
