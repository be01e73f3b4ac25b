//! wattdb's functions take bound parameters wherever they take literals, as drivers that
//! bind server-side call them (tokio-postgres here; psycopg, asyncpg, pgjdbc and
//! node-postgres in tests/clients.rs, from the same list, tests/clients/wattdb_calls.tsv):
//! every registered admin function is called on one server with literals and on another,
//! set up the same way, with its arguments bound as parameters — the answers (or the
//! SQLSTATEs) are the same. `Describe` reports the function's result column and the
//! parameters' types.

mod common;

use common::{Server, sqlstate};
use tokio_postgres::types::ToSql;

/// The table every call and test here works on (`@setup` of wattdb_calls.tsv).
fn setup() -> String {
    common::wattdb_calls::load().setup.join("; ")
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
    let calls = common::wattdb_calls::load();
    literal.batch_execute(&setup()).await.unwrap();
    bound.batch_execute(&setup()).await.unwrap();
    for (function, args) in calls.calls.iter().filter(|(_, args)| !args.is_empty()) {
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
                quoted(&args[0]),
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
    // The functions without arguments, prepared; a parameter that is not there is 42P02.
    for (function, _) in calls.calls.iter().filter(|(_, args)| args.is_empty()) {
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

/// A parameter given to a table function (`last_values($1)`): its columns depend on the
/// value, so the statement is planned at Bind — answered as with the literal when the
/// client describes the portal after Bind (libpq/psycopg, pgjdbc, node-postgres),
/// refused with `0A000` when it asks for the columns before binding (tokio-postgres's
/// and asyncpg's `prepare`) unless they do not depend on the value
/// (`generate_series(1, $1)`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_functions_take_bound_parameters() {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(&setup()).await.unwrap();
    c.batch_execute(
        "INSERT INTO m VALUES ('2026-03-01T00:00:00Z', 'b', 7.5, 1, 2, 3, 'x'), \
         ('2026-03-01T00:30:00Z', 'a', 3.5, 13, 120, 7, 'y')",
    )
    .await
    .unwrap();
    let rows = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, f64)> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    // The newest row per pid, computed from the inserts above.
    let newest = vec![("a".to_string(), 3.5), ("b".to_string(), 7.5)];
    let literal = c
        .query("SELECT pid, v FROM last_values('m') ORDER BY pid", &[])
        .await
        .unwrap();
    assert_eq!(rows(literal), newest);
    // Parse, Bind, Describe portal, Execute: libpq's (psycopg's) sequence.
    let mut raw = common::raw_pg::connect(server.pg_port).await;
    let answer = |replies: Vec<common::raw_pg::Reply>| -> (Vec<String>, Vec<Vec<Option<String>>>, Option<String>) {
        let columns = replies.iter().find(|r| r.tag == b'T').map(|r| r.columns()).unwrap_or_default();
        let rows = replies.iter().filter(|r| r.tag == b'D').map(|r| r.row()).collect();
        let error = replies.iter().find(|r| r.tag == b'E').and_then(|r| r.sqlstate());
        (columns, rows, error)
    };
    let text_rows = |rows: &[(String, f64)]| -> Vec<Vec<Option<String>>> {
        rows.iter()
            .map(|(p, v)| vec![Some(p.clone()), Some(v.to_string())])
            .collect()
    };
    let (columns, got, error) = answer(
        common::raw_pg::exec_params(
            &mut raw,
            "SELECT pid, v FROM last_values($1) ORDER BY pid",
            &[Some("m")],
        )
        .await,
    );
    assert_eq!(error, None);
    assert_eq!(columns, ["pid", "v"]);
    assert_eq!(got, text_rows(&newest));
    // Other parameters of the same statement are bound the same way.
    let (_, got, error) = answer(
        common::raw_pg::exec_params(
            &mut raw,
            "SELECT pid, v FROM last_values($1) WHERE pid = $2 ORDER BY pid",
            &[Some("m"), Some("b")],
        )
        .await,
    );
    assert_eq!(error, None);
    assert_eq!(got, text_rows(&newest[1..]));
    let (_, _, unknown) = answer(
        common::raw_pg::exec_params(
            &mut raw,
            "SELECT * FROM last_values($1)",
            &[Some("no_such_table")],
        )
        .await,
    );
    let literal_unknown = c
        .query("SELECT * FROM last_values('no_such_table')", &[])
        .await
        .expect_err("no such table");
    assert_eq!(unknown, Some(sqlstate(&literal_unknown)));
    let (_, _, missing) =
        answer(common::raw_pg::exec_params(&mut raw, "SELECT * FROM last_values($1)", &[]).await);
    assert_eq!(missing.as_deref(), Some("42P02"), "a parameter not bound");
    // Planned with the parameter in place when the function allows it.
    let (_, got, error) = answer(
        common::raw_pg::exec_params(
            &mut raw,
            "SELECT count(*) FROM generate_series(1, $1::bigint)",
            &[Some("5")],
        )
        .await,
    );
    assert_eq!((got, error), (vec![vec![Some("5".to_string())]], None));
    let e = c
        .prepare("SELECT * FROM last_values($1)")
        .await
        .expect_err("columns unknown before Bind");
    assert_eq!(sqlstate(&e), "0A000", "{e:?}");
    // Columns that do not depend on the value are described before Bind
    // (tokio-postgres's prepare), and the statement answers with them.
    let st = c
        .prepare("SELECT value * 2 AS twice FROM generate_series(1, $1) ORDER BY 1")
        .await
        .unwrap();
    assert_eq!(st.columns()[0].name(), "twice");
    assert_eq!(st.columns()[0].type_(), &tokio_postgres::types::Type::INT8);
    let twice: Vec<i64> = c
        .query(&st, &[&"4"])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(twice, vec![2, 4, 6, 8]);
    // The connection goes on.
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i64>(0),
        1
    );
}

/// An Execute with a row limit answers that many rows and suspends the portal; the
/// next Execute goes on where it stopped (JDBC's `setFetchSize`, asyncpg's cursors).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_answer_in_pieces_of_their_row_limit() {
    let server = Server::new().start();
    let mut c = server.client().await;
    c.batch_execute(&setup()).await.unwrap();
    let tx = c.transaction().await.unwrap();
    let st = tx
        .prepare("SELECT value FROM generate_series(1, 12) WHERE value <= $1 ORDER BY value")
        .await
        .unwrap();
    let portal = tx.bind(&st, &[&10i64]).await.unwrap();
    let mut pieces = Vec::new();
    loop {
        let piece: Vec<i64> = tx
            .query_portal(&portal, 3)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if piece.is_empty() {
            break;
        }
        pieces.push(piece);
    }
    assert_eq!(
        pieces,
        vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]
    );
    tx.commit().await.unwrap();
}
