//! wattdb's functions take bound parameters wherever they take literals, as drivers that
//! bind server-side call them (psycopg, asyncpg, pgjdbc, node-postgres, tokio-postgres):
//! every registered admin function is called on one server with literals and on another,
//! set up the same way, with its arguments bound as parameters — the answers (or the
//! SQLSTATEs) are the same. `Describe` reports the function's result column and the
//! parameters' types.

mod common;

use common::{Server, sqlstate};
use tokio_postgres::types::ToSql;

const SETUP: &str = "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, \
    v DOUBLE PRECISION, ep DOUBLE PRECISION, p DOUBLE PRECISION, q DOUBLE PRECISION, \
    msg TEXT, PRIMARY KEY (pid, ts)); \
    INSERT INTO m VALUES ('2026-03-01T00:00:00Z', 'a', 1.5, 10, 100, 5, 'meter offline'), \
    ('2026-03-01T00:15:00Z', 'a', 2.5, 12, 110, 6, 'meter back')";

/// Every admin function with arguments, in an order that makes each call meaningful
/// (a channel before the alarm that uses it); some calls fail on purpose.
fn calls() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("set_retention", vec!["m", "4 months"]),
        ("set_rollup_intervals", vec!["m", "15m,1d"]),
        ("set_counters", vec!["m", "ep"]),
        ("rebuild_rollups", vec!["m"]),
        (
            "set_fulltext",
            vec!["m", "msg", r#"{"analyzer": "standard"}"#],
        ),
        (
            "create_channel",
            vec!["hook", "webhook", r#"{"url": "http://127.0.0.1:9/hook"}"#],
        ),
        (
            "create_alarm",
            vec!["hot", "m", "v > 10", r#"{"channels": ["hook"]}"#],
        ),
        (
            "create_gap_alarm",
            vec!["silent", "m", "15 minutes", r#"{"channels": ["hook"]}"#],
        ),
        ("silence_alarm", vec!["silent", "pid = 'a'", "2 days"]),
        ("enable_alarm", vec!["hot", "false"]),
        ("drop_alarm", vec!["hot"]),
        ("drop_alarm", vec!["no_such_alarm"]),
        (
            "create_appliance",
            vec!["lab_oven", r#"{"watts": [2500, 3200], "pf": [0.97, 1.0]}"#],
        ),
        (
            "set_appliance_detection",
            vec![
                "m",
                r#"{"power": "p", "reactive": "q", "prohibited": ["lab_oven"], "channels": ["hook"]}"#,
            ],
        ),
        ("drop_channel", vec!["no_such_channel"]),
        ("compact", vec!["m"]),
        ("compact", vec!["no_such_table"]),
        ("restore_partition", vec!["m", "2026-03"]),
        ("set_retention", vec!["m", "not a duration"]),
    ]
}

fn quoted(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "''"))
}

/// The call's one-row text answer (up to a time it names: `… until <time>`), or its
/// SQLSTATE.
fn outcome(r: Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>) -> String {
    match r {
        Ok(rows) => rows
            .first()
            .map(|row| row.get::<_, Option<String>>(0).unwrap_or_default())
            .map(|text| match text.find(" until ") {
                Some(i) => text[..i].to_string(),
                None => text,
            })
            .unwrap_or_else(|| "<no row>".into()),
        Err(e) => format!("ERROR {}", sqlstate(&e)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_function_takes_bound_parameters() {
    let literal_server = Server::new().start();
    let bound_server = Server::new().start();
    let literal = literal_server.client().await;
    let bound = bound_server.client().await;
    literal.batch_execute(SETUP).await.unwrap();
    bound.batch_execute(SETUP).await.unwrap();
    for (function, args) in calls() {
        let with_literals = format!(
            "SELECT {function}({})",
            args.iter()
                .map(|a| quoted(a))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let with_params = format!(
            "SELECT {function}({})",
            (1..=args.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let expected = outcome(literal.query(with_literals.as_str(), &[]).await);
        // Prepared once (Parse + Describe), executed with the values bound.
        let statement = bound.prepare(&with_params).await;
        let got = match statement {
            Ok(st) => {
                assert_eq!(st.columns().len(), 1, "{with_params}: one result column");
                assert_eq!(st.columns()[0].name(), function, "{with_params}");
                assert_eq!(st.params().len(), args.len(), "{with_params}: parameters");
                let values: Vec<&(dyn ToSql + Sync)> =
                    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
                outcome(bound.query(&st, &values).await)
            }
            Err(e) => format!("ERROR {}", sqlstate(&e)),
        };
        assert_eq!(got, expected, "{with_params} vs {with_literals}");
        // Mixed: the first argument written, the others bound.
        if args.len() > 1 {
            let mixed = format!(
                "SELECT {function}({}, {})",
                quoted(args[0]),
                (2..=args.len())
                    .map(|i| format!("${}::text", i - 1))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let values: Vec<&(dyn ToSql + Sync)> =
                args[1..].iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            // Called on the literal server again: same state as before this call's
            // first run, so the answer is the one of calling it twice.
            let again = outcome(literal.query(with_literals.as_str(), &[]).await);
            let mixed_answer = outcome(bound.query(mixed.as_str(), &values).await);
            assert_eq!(mixed_answer, again, "{mixed}");
        }
    }
    // flush() and run_retention() take none; a parameter that is not there is 42P02.
    for function in ["flush", "run_retention"] {
        let st = bound
            .prepare(&format!("SELECT {function}()"))
            .await
            .unwrap();
        assert_eq!(st.columns()[0].name(), function);
        assert!(bound.query(&st, &[]).await.is_ok(), "{function}");
    }
    let e = bound
        .simple_query("SELECT set_retention($1, '4 months')")
        .await
        .expect_err("no parameters over the simple protocol");
    assert_eq!(sqlstate(&e), "42P02", "{e:?}");
}
